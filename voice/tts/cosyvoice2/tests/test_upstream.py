"""The upstream code (upstream.py): chunk conversion, the prompt form, the CUDA probe, importing the official
package (or refusing another one), registering with vLLM."""

import importlib
import sys

import numpy as np
import pytest

from voice.tests.cosyvoice_standin import (
    CosyVoice2StandIn,
    CosyVoice2TensorPromptStandIn,
    FakeTensor,
)
from voice.tts import cosyvoice2 as cv
from voice.tts.base import TTSError
from voice.tts.cosyvoice2 import CosyVoice2Engine, upstream

from .helpers import SENTENCE, no_cuda, with_cuda


# --- data in upstream's forms, torch ------------------------------------------------------------------
def test_chunk_conversion_clips_rounds_and_is_little_endian():
    pcm = cv.speech_to_pcm16(np.array([[0.0, 0.5, -0.5, 1.0, -1.0, 1.5, -2.0, np.nan]], dtype=np.float32))
    assert np.frombuffer(pcm, dtype="<i2").tolist() == [0, 16384, -16384, 32767, -32767, 32767, -32767, 0]
    assert pcm[2:4] == (16384).to_bytes(2, "little", signed=True)
    assert cv.speech_to_pcm16(FakeTensor(np.array([[0.25]], dtype=np.float64))) == (8192).to_bytes(2, "little")


def test_prompt_form_detection():
    assert cv.prompt_form(CosyVoice2StandIn.__new__(CosyVoice2StandIn)) == cv.PROMPT_PATH
    assert cv.prompt_form(CosyVoice2TensorPromptStandIn.__new__(CosyVoice2TensorPromptStandIn)) == cv.PROMPT_TENSOR_16K


def test_cuda_probe_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    assert cv.torch_cuda_available() is False


# --- the package --------------------------------------------------------------------------------------
@pytest.fixture
def clean_cosyvoice_modules(monkeypatch):
    for name in [n for n in sys.modules if n == "cosyvoice" or n.startswith(("cosyvoice.", "matcha"))]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [n for n in sys.modules if n == "cosyvoice" or n.startswith(("cosyvoice.", "matcha"))]:
        del sys.modules[name]


def test_missing_package_is_tts_engine_missing(settings, model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "cosyvoice", None)
    settings.COSYVOICE_MODEL_DIR = str(model_dir)
    with pytest.raises(TTSError) as excinfo:
        CosyVoice2Engine.from_settings()
    assert excinfo.value.code == "tts_engine_missing"
    assert "FunAudioLLM/CosyVoice" in str(excinfo.value)


def test_wrong_cosyvoice_package_is_tts_engine_missing(tmp_path, model_dir, monkeypatch, clean_cosyvoice_modules):
    fake = tmp_path / "site" / "cosyvoice"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("def tts(text):\n    return b''\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(TTSError) as excinfo:
        CosyVoice2Engine(model_dir)
    assert excinfo.value.code == "tts_engine_missing"
    assert "not the official" in str(excinfo.value)


def test_official_layout_without_the_api_or_matcha(tmp_path, model_dir, monkeypatch, clean_cosyvoice_modules):
    site = tmp_path / "site"
    (site / "cosyvoice" / "cli").mkdir(parents=True)
    (site / "cosyvoice" / "__init__.py").write_text("")
    (site / "cosyvoice" / "cli" / "__init__.py").write_text("")
    module = site / "cosyvoice" / "cli" / "cosyvoice.py"
    module.write_text("class CosyVoice2:\n    def inference_zero_shot(self):\n        pass\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(TTSError) as excinfo:
        CosyVoice2Engine(model_dir)
    assert excinfo.value.code == "tts_engine_missing" and "add_zero_shot_spk" in str(excinfo.value)

    for name in [n for n in sys.modules if n.startswith("cosyvoice")]:
        del sys.modules[name]
    module.write_text(
        "from voice.tests.cosyvoice_standin import Calls, CosyVoice2StandIn\n\n\n"
        "class CosyVoice2(CosyVoice2StandIn):\n"
        "    calls = Calls()\n"
    )
    monkeypatch.setitem(sys.modules, "matcha", None)
    with pytest.raises(TTSError) as excinfo:
        CosyVoice2Engine(model_dir)
    assert excinfo.value.code == "tts_engine_missing" and "Matcha-TTS" in str(excinfo.value)

    (site / "matcha").mkdir()
    (site / "matcha" / "__init__.py").write_text("")
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, "matcha")
    engine = CosyVoice2Engine(model_dir, cuda_available=no_cuda)  # the official layout imports
    assert engine.name == "cosyvoice2" and engine.clones_voices and engine.sample_rate == 24000
    assert engine._cls.__module__ == "cosyvoice.cli.cosyvoice"


def test_load_vllm_registers_the_llm_with_vllm_first(tmp_path, model_dir, monkeypatch, make_voice):
    site = tmp_path / "site"
    for package in ("cosyvoice", "cosyvoice/cli", "cosyvoice/vllm", "matcha", "vllm"):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
    (site / "cosyvoice" / "cli" / "cosyvoice.py").write_text(
        "from voice.tests.cosyvoice_standin import Calls, CosyVoice2StandIn\n\n\n"
        "class CosyVoice2(CosyVoice2StandIn):\n"
        "    calls = Calls()\n"
    )
    (site / "cosyvoice" / "vllm" / "cosyvoice2.py").write_text("class CosyVoice2ForCausalLM:\n    pass\n")
    (site / "vllm" / "__init__.py").write_text(
        "class ModelRegistry:\n"
        "    registered = {}\n\n"
        "    @classmethod\n"
        "    def register_model(cls, name, model):\n"
        "        cls.registered[name] = model\n"
    )
    names = ("cosyvoice", "matcha", "vllm")
    for name in [n for n in sys.modules if n.split(".")[0] in names]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(upstream, "_vllm_registered", False)
    try:
        engine = CosyVoice2Engine(model_dir, load_vllm=True, cuda_available=with_cuda)
        assert engine.options["load_vllm"] is True
        list(engine.stream(SENTENCE, make_voice()))
        registry = sys.modules["vllm"].ModelRegistry.registered
        assert registry["CosyVoice2ForCausalLM"].__module__ == "cosyvoice.vllm.cosyvoice2"
        assert engine._cls.calls.init[0]["load_vllm"] is True
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in names]:
            del sys.modules[name]
