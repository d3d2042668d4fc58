"""download_models --piper / --vosk LANG / --defaults against a local HTTP server of the test's own,
laid out as the public hosts are (piper-voices' folders and voices.json, Vosk's zips and model-list.json)."""

import hashlib
import io
import json
import shutil
import socket
from pathlib import Path

import pytest
from django.core.management import CommandError

from voice.asr.registry import model_choice
from voice.management.downloads import Progress
from voice.tts.piper import PiperEngine, bundled_voice_path, configured_voices

from .test_commands import file_server, run, vosk_zip  # noqa: F401 - the fixture and helpers of the Vosk tests

JOE = "en_US-joe-medium"
JOE_DIR = "en/en_US/joe/medium"


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def publish_voice(folder: Path, voice: str, layout: str, model: bytes, config: bytes, *, listed_model=None) -> None:
    """A voice as huggingface.co/rhasspy/piper-voices has it: its files and its voices.json entry."""
    (folder / layout).mkdir(parents=True, exist_ok=True)
    (folder / layout / f"{voice}.onnx").write_bytes(model)
    (folder / layout / f"{voice}.onnx.json").write_bytes(config)
    listed_model = model if listed_model is None else listed_model
    catalogue_path = folder / "voices.json"
    catalogue = json.loads(catalogue_path.read_text()) if catalogue_path.exists() else {}
    family = voice.split("_", 1)[0]
    catalogue[voice] = {
        "key": voice,
        "language": {"code": voice.split("-", 1)[0], "family": family},
        "files": {
            f"{layout}/{voice}.onnx": {"size_bytes": len(listed_model), "md5_digest": md5(listed_model)},
            f"{layout}/{voice}.onnx.json": {"size_bytes": len(config), "md5_digest": md5(config)},
        },
    }
    catalogue_path.write_text(json.dumps(catalogue))


def publish_vosk(folder: Path, name: str) -> bytes:
    data = vosk_zip(folder / f"{name}.zip", top=name)
    listing_path = folder / "model-list.json"
    listing = json.loads(listing_path.read_text()) if listing_path.exists() else []
    listing.append({"name": name, "lang": "en-us", "size": len(data), "md5": md5(data), "type": "small"})
    listing_path.write_text(json.dumps(listing))
    return data


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def models(settings, tmp_path):
    """MODELS_DIR in the test's folder, with the default model names of zh and en."""
    folder = tmp_path / "models"
    settings.MODELS_DIR = folder
    settings.VOSK_MODELS = {
        "zh": str(folder / "vosk-model-small-cn-0.22"),
        "en": str(folder / "vosk-model-small-en-us-0.15"),
    }
    settings.PIPER_VOICES = {"zh": "zh_CN-huayan-medium", "en": JOE}
    return folder


def test_a_piper_voice_download_resumes_is_verified_and_speaks(file_server, models, settings):  # noqa: F811
    folder, base, ranges = file_server
    settings.PIPER_VOICES_URL = base
    joe = bundled_voice_path()
    model, config = joe.read_bytes(), Path(f"{joe}.json").read_bytes()
    publish_voice(folder, JOE, JOE_DIR, model, config)
    (models / "piper").mkdir(parents=True)
    (models / "piper" / f"{JOE}.onnx.download.part").write_bytes(model[:1_000_000])  # an interrupted attempt
    out = run("download_models", "--piper", JOE)
    assert ranges == [None, None, "bytes=1000000-"]  # voices.json, the config, the model from where it stopped
    assert "(resuming at 1000000 bytes)" in out and f"Piper voice ready: {models / 'piper' / JOE}.onnx" in out
    assert sorted(p.name for p in (models / "piper").iterdir()) == [f"{JOE}.onnx", f"{JOE}.onnx.json"]
    # The Piper engine's own lookup finds the downloaded voice (not the bundled one) and speaks with it.
    assert configured_voices({"en": JOE})["en"] == models / "piper" / f"{JOE}.onnx"
    engine = PiperEngine({"en": JOE})
    assert engine.default_voice_name("en") == JOE and engine.languages == {"en"}
    assert sum(len(chunk) for chunk in engine.stream("Hello.", language="en")) > 8000


def test_a_corrupt_piper_voice_is_rejected(file_server, models, settings):  # noqa: F811
    folder, base, _ = file_server
    settings.PIPER_VOICES_URL = base
    config = json.dumps({"language": {"code": "zh_CN"}, "espeak": {"voice": "cmn"}}).encode()
    good = b"\x08\x01" * 4000
    publish_voice(folder, "zh_CN-test-medium", "zh/zh_CN/test/medium", good[:-1] + b"\0", config, listed_model=good)
    with pytest.raises(CommandError, match=r"zh_CN-test-medium\.onnx\.download is corrupt: its MD5 is"):
        run("download_models", "--piper", "zh_CN-test-medium")
    assert not any(p.name.endswith(".onnx") for p in (models / "piper").iterdir())  # nothing the engine would load
    with pytest.raises(CommandError, match="is not in the Piper voice list"):
        run("download_models", "--piper", "zh_CN-absent-medium")
    with pytest.raises(CommandError, match="is not a Piper voice name"):
        run("download_models", "--piper", "huayan")


def test_the_english_vosk_model_by_language_checked_against_the_model_list(file_server, models, settings):  # noqa: F811
    folder, base, _ = file_server
    settings.VOSK_MODELS_URL = base
    data = publish_vosk(folder, "vosk-model-small-en-us-0.15")
    assert model_choice("en").fallback
    out = run("download_models", "--vosk", "en")
    assert f"Vosk model ready: {models / 'vosk-model-small-en-us-0.15'}" in out
    assert model_choice("en").as_dict() == {
        "language": "en",
        "recognises": "en",
        "model": "vosk-model-small-en-us-0.15",
        "fallback": False,
    }
    # A zip that is not what the list says (one byte changed on the way) is refused and removed.
    shutil.rmtree(models / "vosk-model-small-en-us-0.15")
    (folder / "vosk-model-small-en-us-0.15.zip").write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    with pytest.raises(CommandError, match="corrupt: its MD5 is"):
        run("download_models", "--vosk", "en")
    assert sorted(p.name for p in models.iterdir()) == []


def test_defaults_offline_say_in_one_line_what_is_missing_and_succeed(models, settings):
    port = closed_port()
    settings.VOSK_MODELS_URL = f"http://127.0.0.1:{port}/vosk"
    settings.PIPER_VOICES_URL = f"http://127.0.0.1:{port}/piper"
    out = run("download_models", "--defaults", "--if-reachable")
    assert out.count("\n") == 1, out
    assert out.startswith(f"Models not downloaded (127.0.0.1:{port} cannot be reached)")
    for name in ("Vosk zh vosk-model-small-cn-0.22", "Vosk en vosk-model-small-en-us-0.15", "zh_CN-huayan-medium"):
        assert name in out
    assert JOE not in out  # the bundled English voice is here already
    assert out.rstrip().endswith("get them later with: manage.py download_models --defaults")
    with pytest.raises(CommandError, match="cannot be reached"):  # asked for explicitly, it is an error
        run("download_models", "--defaults")


def test_defaults_fetch_what_is_missing_once(file_server, models, settings):  # noqa: F811
    folder, base, ranges = file_server
    settings.VOSK_MODELS_URL = f"{base}/vosk"
    settings.PIPER_VOICES_URL = f"{base}/piper"
    (folder / "vosk").mkdir()
    (folder / "piper").mkdir()
    for name in ("vosk-model-small-cn-0.22", "vosk-model-small-en-us-0.15"):
        publish_vosk(folder / "vosk", name)
    config = json.dumps({"language": {"code": "zh_CN"}, "espeak": {"voice": "cmn"}}).encode()
    publish_voice(folder / "piper", "zh_CN-huayan-medium", "zh/zh_CN/huayan/medium", b"onnx" * 3000, config)
    out = run("download_models", "--defaults", "--if-reachable")
    assert "Vosk model ready" in out and "Piper voice ready" in out
    assert not model_choice("zh").fallback and not model_choice("en").fallback
    assert configured_voices()["zh"] == models / "piper" / "zh_CN-huayan-medium.onnx"
    fetched = len(ranges)
    assert run("download_models", "--defaults", "--if-reachable") == ""  # all there: no request, no output
    assert len(ranges) == fetched


def test_the_progress_bar_redraws_in_place_on_a_terminal():
    stream = io.StringIO()
    bar = Progress(stream, "voice.onnx", 2_000_000, interactive=True)
    bar.update(1_000_000)
    bar.finish(2_000_000)
    assert stream.getvalue() == (
        "\r  voice.onnx [###############               ]  50% 1.0/2.0 MB"
        "\r  voice.onnx [##############################] 100% 2.0/2.0 MB\n"
    )
    log = io.StringIO()
    quiet = Progress(log, "voice.onnx", 2_000_000, interactive=False)
    quiet.update(1_000_000)
    quiet.finish(2_000_000)
    assert log.getvalue() == "  voice.onnx [##############################] 100% 2.0/2.0 MB\n"  # one line in a log
