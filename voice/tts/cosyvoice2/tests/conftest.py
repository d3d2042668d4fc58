import pytest

from voice.tests.conftest import model_dir  # noqa: F401 - the fixture, one for voice/tests and these tests
from voice.tts.base import VoiceRef


@pytest.fixture
def make_voice(tmp_path, wav_bytes):
    def make(speaker_id=7, version="v1", seconds=2.0, rate=24000, name="Grandma", write=True):
        audio = tmp_path / f"speaker-{speaker_id}-{version}.wav"
        if write:
            audio.write_bytes(wav_bytes(seconds, rate))
        return VoiceRef(
            speaker_id=speaker_id,
            name=name,
            prompt_text="This is how I sound  when I read aloud.",
            audio_path=str(audio),
            version=version,
        )

    return make


@pytest.fixture
def model_dir_v3(tmp_path):
    """A directory with the file names Fun-CosyVoice3-0.5B-2512 has (empty placeholders); no TorchScript."""
    from voice.tts.cosyvoice2.model_dir import COSYVOICE3

    path = tmp_path / "Fun-CosyVoice3-0.5B"
    path.mkdir()
    for name in COSYVOICE3.files:
        if name == "CosyVoice-BlankEN":
            (path / name).mkdir()
        else:
            (path / name).write_bytes(b"")
    (path / "flow.decoder.estimator.fp32.onnx").write_bytes(b"")
    return path
