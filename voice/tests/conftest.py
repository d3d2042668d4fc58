import pytest

from voice.tts import registry
from voice.tts.cosyvoice2.model_dir import REQUIRED_MODEL_FILES


@pytest.fixture
def model_dir(tmp_path):
    """A directory with the file names CosyVoice2-0.5B has (empty placeholders)."""
    path = tmp_path / "CosyVoice2-0.5B"
    path.mkdir()
    for name in REQUIRED_MODEL_FILES:
        if name == "CosyVoice-BlankEN":
            (path / name).mkdir()
        else:
            (path / name).write_bytes(b"")
    (path / "flow.decoder.estimator.fp32.onnx").write_bytes(b"")
    (path / "flow.encoder.fp16.zip").write_bytes(b"")
    (path / "flow.encoder.fp32.zip").write_bytes(b"")
    return path


@pytest.fixture
def in_process(settings):
    settings.VOICE_JOBS_IN_PROCESS = True


@pytest.fixture
def via_worker(settings, celery_worker_process):
    settings.VOICE_JOBS_IN_PROCESS = False
    return celery_worker_process


@pytest.fixture
def piper_default(monkeypatch):
    """Whatever the chain would pick on this host, these tests speak with Piper."""
    monkeypatch.setitem(registry._engines, "default", registry.get_tts_engine("piper"))
