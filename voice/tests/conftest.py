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


@pytest.fixture
def cosyvoice_default(model_dir, tmp_path, monkeypatch):
    """CosyVoice2 over the stand-in of upstream's class (cosyvoice_standin.py), with a default voice, as
    the engine every language gets in this process: (engine, stand-in class)."""
    from voice.tests.cosyvoice_standin import CosyVoice2StandIn
    from voice.tts.cosyvoice2.tests.helpers import engine_for

    from .samples import tone, wav

    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(wav([tone(2.0, 24000)], 24000))
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin, default_prompt_wav=str(prompt), default_prompt_text="This is how I sound.")
    monkeypatch.setitem(registry._engines, "default", engine)
    return engine, standin
