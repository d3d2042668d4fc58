import pytest

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
