"""download_models --cosyvoice3 and the model-folder check behind it and voice_status (modelfiles.py).

Like --cosyvoice, the download itself is modelscope's `snapshot_download`, which talks ModelScope's own API;
no local server of the test imitates that API. Instead a `modelscope` package written by the test (on
sys.path, as test_upstream.py writes an official `cosyvoice` layout) copies a published folder from disk:
so what is tested is the command's side (model id, destination, the hint, the refusal without modelscope,
a refused download) and the check of the downloaded folder that follows it."""

import sys

import pytest
from django.core.management import CommandError

from voice.management.modelfiles import COSYVOICE3_REQUIRED, COSYVOICE_REQUIRED, cosyvoice_files
from voice.tts.cosyvoice2.model_dir import COSYVOICE3

from .test_commands import run


def fill(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name == "CosyVoice-BlankEN":
            (folder / name).mkdir()
        else:
            (folder / name).write_bytes(b"")
    return folder


def test_cosyvoice3_without_modelscope_says_what_and_where(settings, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "modelscope", None)  # import modelscope -> ImportError
    settings.COSYVOICE3_MODEL_DIR = str(tmp_path / "v3")
    with pytest.raises(CommandError) as excinfo:
        run("download_models", "--cosyvoice3")
    message = str(excinfo.value)
    assert "modelscope is not installed" in message
    assert "FunAudioLLM/Fun-CosyVoice3-0.5B-2512" in message and str(tmp_path / "v3") in message
    with pytest.raises(CommandError) as excinfo:
        run("download_models", "--cosyvoice")
    assert "iic/CosyVoice2-0.5B" in str(excinfo.value)


def test_the_setting_names_a_folder_of_its_own(settings):
    assert settings.COSYVOICE3_MODEL_DIR.endswith("Fun-CosyVoice3-0.5B")
    assert settings.COSYVOICE3_MODEL_DIR != settings.COSYVOICE_MODEL_DIR


def test_the_files_check_tells_the_models_apart(tmp_path):
    v3 = fill(tmp_path / "v3", COSYVOICE3_REQUIRED)
    assert list(COSYVOICE3.files) == COSYVOICE3_REQUIRED
    assert "speech_tokenizer_v3.onnx" in COSYVOICE3_REQUIRED and "cosyvoice3.yaml" in COSYVOICE3_REQUIRED
    files = cosyvoice_files(v3)
    assert files["model"] == "CosyVoice3" and files["missing"] == []
    assert set(files["present"]) == set(COSYVOICE3_REQUIRED)
    (v3 / "speech_tokenizer_v3.onnx").unlink()
    assert cosyvoice_files(v3)["missing"] == ["speech_tokenizer_v3.onnx"]

    v2 = fill(tmp_path / "v2", COSYVOICE_REQUIRED)
    assert cosyvoice_files(v2)["model"] == "CosyVoice2" and cosyvoice_files(v2)["missing"] == []

    empty = fill(tmp_path / "empty", [])
    files = cosyvoice_files(empty)
    assert files["model"] is None and "cosyvoice2.yaml" in files["missing"]
    # what download_models --cosyvoice3 checks after the download: CosyVoice3's list, yaml or not
    assert "cosyvoice3.yaml" in cosyvoice_files(empty, COSYVOICE3)["missing"]
    assert cosyvoice_files(tmp_path / "nowhere")["model"] is None


def test_voice_status_reports_which_model_the_folder_holds(settings, tmp_path):
    settings.COSYVOICE_MODEL_DIR = str(fill(tmp_path / "v3", COSYVOICE3_REQUIRED))
    settings.VOICE_TTS_ENGINES = ["espeak-ng"]
    out = run("voice_status", "--timeout", "0.1")
    assert f"CosyVoice2 model: {tmp_path / 'v3'} (CosyVoice3; missing: nothing)" in out


@pytest.fixture
def modelscope_from(tmp_path, monkeypatch):
    """An importable `modelscope` package written by the test, whose snapshot_download copies the
    published folder of a model id from disk into local_dir (no ModelScope reached): publish(model_id, names)."""
    site, published = tmp_path / "site", tmp_path / "published"
    (site / "modelscope").mkdir(parents=True)
    (site / "modelscope" / "__init__.py").write_text(
        "import shutil\n"
        "from pathlib import Path\n\n"
        "asked = []\n\n\n"
        "def snapshot_download(model_id, local_dir=None):\n"
        "    asked.append((model_id, local_dir))\n"
        f"    source = Path({str(published)!r}) / model_id\n"
        "    if not source.is_dir():\n"
        "        raise ValueError(f'The model: {model_id} does not exist')\n"
        "    shutil.copytree(source, local_dir, dirs_exist_ok=True)\n"
        "    return local_dir\n"
    )
    monkeypatch.delitem(sys.modules, "modelscope", raising=False)
    monkeypatch.syspath_prepend(str(site))

    def publish(model_id, names):
        fill(published / model_id, names)

    yield publish
    sys.modules.pop("modelscope", None)


def test_cosyvoice3_download_lands_in_its_folder_and_is_checked(settings, tmp_path, modelscope_from):
    settings.COSYVOICE3_MODEL_DIR = str(tmp_path / "models" / "Fun-CosyVoice3-0.5B")
    settings.COSYVOICE_MODEL_DIR = str(tmp_path / "models" / "CosyVoice2-0.5B")
    modelscope_from("FunAudioLLM/Fun-CosyVoice3-0.5B-2512", [*COSYVOICE3_REQUIRED, "llm.rl.pt"])
    out = run("download_models", "--cosyvoice3")
    import modelscope

    assert modelscope.asked == [("FunAudioLLM/Fun-CosyVoice3-0.5B-2512", settings.COSYVOICE3_MODEL_DIR)]
    assert "CosyVoice3 model ready" in out
    assert f"Set COSYVOICE_MODEL_DIR to {settings.COSYVOICE3_MODEL_DIR} to use it." in out
    assert cosyvoice_files(tmp_path / "models" / "Fun-CosyVoice3-0.5B")["model"] == "CosyVoice3"

    settings.COSYVOICE_MODEL_DIR = settings.COSYVOICE3_MODEL_DIR  # already the engine's folder: no hint
    assert "Set COSYVOICE_MODEL_DIR" not in run("download_models", "--cosyvoice3")


def test_an_incomplete_cosyvoice3_download_names_what_is_missing(settings, tmp_path, modelscope_from):
    settings.COSYVOICE3_MODEL_DIR = str(tmp_path / "v3")
    modelscope_from(
        "FunAudioLLM/Fun-CosyVoice3-0.5B-2512", [n for n in COSYVOICE3_REQUIRED if n != "speech_tokenizer_v3.onnx"]
    )
    with pytest.raises(CommandError, match=r"incomplete: speech_tokenizer_v3\.onnx missing"):
        run("download_models", "--cosyvoice3")


def test_an_unknown_model_is_a_clear_error(settings, tmp_path, modelscope_from):
    settings.COSYVOICE3_MODEL_DIR = str(tmp_path / "v3")
    settings.COSYVOICE_MODEL_DIR = str(tmp_path / "v2")
    modelscope_from("iic/CosyVoice2-0.5B", COSYVOICE_REQUIRED)  # only CosyVoice2 is published there
    with pytest.raises(CommandError, match="ModelScope cannot be reached or refused the download"):
        run("download_models", "--cosyvoice3")
    out = run("download_models", "--cosyvoice")
    assert "CosyVoice2 model ready" in out and "Set COSYVOICE_MODEL_DIR" not in out
    assert cosyvoice_files(tmp_path / "v2")["model"] == "CosyVoice2" and not (tmp_path / "v3").exists()
