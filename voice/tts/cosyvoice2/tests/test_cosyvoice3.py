"""CosyVoice3 folders: told apart from CosyVoice2 by their yaml, driven through upstream's CosyVoice3 class
(the stand-in `CosyVoice3StandIn` follows it: no load_jit, cosyvoice3.yaml, an LLM that refuses prompts
without <|endofprompt|>), with its prompt prefix, the token_hop_len guard and the early-close cleanup."""

import importlib
import logging
import re
import sys

import numpy as np
import pytest

from voice.tests.cosyvoice_standin import (
    IGNORE_STOPPED_LLM_JOB,
    SAMPLES_PER_TOKEN,
    CosyVoice2StandIn,
    CosyVoice3StandIn,
    LLMGate,
)
from voice.tts.base import TTSError
from voice.tts.cosyvoice2 import COSYVOICE3_PROMPT_PREFIX, CosyVoice2Engine, stopping

from .helpers import FIRST_HOP_SAMPLES, SENTENCE, engine_for, pcm_of, with_cuda

pytestmark = pytest.mark.filterwarnings(IGNORE_STOPPED_LLM_JOB)

TRANSCRIPT = "This is how I sound  when I read aloud."  # make_voice's


def v3_engine(model_dir, standin=None, **kwargs):
    return engine_for(model_dir, standin or CosyVoice3StandIn.fresh(), **kwargs)


# --- the folder ---------------------------------------------------------------------------------------
def test_a_cosyvoice3_folder_is_accepted_and_reported(model_dir_v3):
    engine = v3_engine(model_dir_v3)
    info = engine.describe()
    assert info["model"] == "CosyVoice3" and info["model_id"] == "FunAudioLLM/Fun-CosyVoice3-0.5B-2512"
    assert info["engine"] == "cosyvoice2" and info["sample_rate"] == 24000 and info["loaded"] is False
    assert {"de", "fr", "ru"} <= set(info["languages"]) and {"zh", "en", "yue"} <= set(info["languages"])


def test_a_cosyvoice2_folder_is_still_cosyvoice2(model_dir):
    info = engine_for(model_dir).describe()
    assert info["model"] == "CosyVoice2" and info["model_id"] == "iic/CosyVoice2-0.5B"
    assert "de" not in info["languages"]


def test_a_folder_with_neither_yaml_is_tts_model_missing(model_dir_v3):
    (model_dir_v3 / "cosyvoice3.yaml").unlink()
    with pytest.raises(TTSError) as excinfo:
        v3_engine(model_dir_v3)
    assert excinfo.value.code == "tts_model_missing"
    message = str(excinfo.value)
    assert "neither cosyvoice2.yaml nor cosyvoice3.yaml" in message and str(model_dir_v3) in message
    assert "first CosyVoice" not in message
    (model_dir_v3 / "cosyvoice.yaml").write_bytes(b"")  # CosyVoice-300M's
    with pytest.raises(TTSError, match=r"cosyvoice\.yaml is the first CosyVoice") as excinfo:
        v3_engine(model_dir_v3)
    assert excinfo.value.code == "tts_model_missing"


def test_an_incomplete_cosyvoice3_folder_names_its_own_files(model_dir_v3):
    (model_dir_v3 / "speech_tokenizer_v3.onnx").unlink()
    with pytest.raises(TTSError) as excinfo:
        v3_engine(model_dir_v3)
    assert excinfo.value.code == "tts_model_missing"
    assert "CosyVoice3 model" in str(excinfo.value) and "speech_tokenizer_v3.onnx" in str(excinfo.value)
    assert "speech_tokenizer_v2.onnx" not in str(excinfo.value)


# --- choosing the upstream class ----------------------------------------------------------------------
@pytest.fixture
def official_layout(tmp_path, monkeypatch):
    """An importable `cosyvoice.cli.cosyvoice` (with Matcha-TTS beside it) whose classes are stand-ins."""
    site = tmp_path / "site"
    for package in ("cosyvoice", "cosyvoice/cli", "matcha"):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
    names = ("cosyvoice", "matcha")
    for name in [n for n in sys.modules if n.split(".")[0] in names]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(site))

    def write(*classes):
        source = "from voice.tests.cosyvoice_standin import Calls, CosyVoice2StandIn, CosyVoice3StandIn\n"
        for name in classes:
            source += f"\n\nclass {name}({name}StandIn):\n    calls = Calls()\n"
        (site / "cosyvoice" / "cli" / "cosyvoice.py").write_text(source)
        for name in [n for n in sys.modules if n.startswith("cosyvoice")]:
            del sys.modules[name]
        importlib.invalidate_caches()

    yield write
    for name in [n for n in sys.modules if n.split(".")[0] in names]:
        del sys.modules[name]


def test_the_folder_s_yaml_picks_the_upstream_class(official_layout, model_dir, model_dir_v3, make_voice):
    official_layout("CosyVoice2", "CosyVoice3")
    v3 = CosyVoice2Engine(model_dir_v3, cuda_available=lambda: False)
    v2 = CosyVoice2Engine(model_dir, cuda_available=lambda: False)
    assert v3._cls.__name__ == "CosyVoice3" and v3._cls.__module__ == "cosyvoice.cli.cosyvoice"
    assert v2._cls.__name__ == "CosyVoice2"
    assert len(list(v3.stream(SENTENCE, make_voice()))) == 3
    assert v3._cls.calls.init and not v2._cls.calls.init  # only the engine that spoke loaded


def test_code_without_cosyvoice3_refuses_a_cosyvoice3_folder(official_layout, model_dir, model_dir_v3):
    official_layout("CosyVoice2")  # upstream before bfa835a (2025-12-08), like the PyPI copies
    with pytest.raises(TTSError) as excinfo:
        CosyVoice2Engine(model_dir_v3, cuda_available=lambda: False)
    assert excinfo.value.code == "tts_engine_missing"
    assert "no CosyVoice3 class" in str(excinfo.value) and "bfa835a" in str(excinfo.value)
    assert CosyVoice2Engine(model_dir, cuda_available=lambda: False)._cls.__name__ == "CosyVoice2"


# --- what CosyVoice3 needs ----------------------------------------------------------------------------
def test_the_prompt_prefix_reaches_the_frontend(model_dir_v3, make_voice):
    standin = CosyVoice3StandIn.fresh()
    engine = v3_engine(model_dir_v3, standin)
    chunks = list(engine.stream(SENTENCE, make_voice()))
    model = engine._model
    expected = COSYVOICE3_PROMPT_PREFIX + TRANSCRIPT.strip()
    assert COSYVOICE3_PROMPT_PREFIX == "You are a helpful assistant.<|endofprompt|>"
    # given as it is: upstream's text_normalize skips its text frontend for `<|...|>` (spaces not folded)
    assert model.frontend.zero_shot_prompt_texts == [expected]
    assert [c["prompt_text"] for c in standin.calls.add_zero_shot_spk] == [expected]
    assert model.frontend.spk2info["mm-spk-7-v1"]["prompt_text"] == expected
    assert len(chunks) == 3  # the LLM accepted it


def test_a_transcript_with_its_own_instruction_keeps_it(model_dir_v3, make_voice):
    standin = CosyVoice3StandIn.fresh()
    engine = v3_engine(model_dir_v3, standin)
    voice = make_voice()
    own = "You are a helpful assistant. Please speak slowly.<|endofprompt|>Hello there."
    voice = type(voice)(**{**voice.__dict__, "prompt_text": own})
    list(engine.stream(SENTENCE, voice))
    assert engine._model.frontend.zero_shot_prompt_texts == [own]


def test_cosyvoice2_prompts_get_no_prefix(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    list(engine.stream(SENTENCE, make_voice()))
    (prompt,) = engine._model.frontend.zero_shot_prompt_texts
    assert "<|endofprompt|>" not in prompt and prompt == " ".join(TRANSCRIPT.split())


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_stand_in_refuses_a_prompt_without_the_prefix_as_upstream(model_dir_v3, make_voice):
    """Upstream's CosyVoice3LM asserts <|endofprompt|> (and its stream then waits forever): what the prefix
    prevents. The stand-in raises instead of hanging."""
    model = CosyVoice3StandIn.fresh()(str(model_dir_v3))
    model.add_zero_shot_spk(TRANSCRIPT, make_voice().audio_path, "plain")
    with pytest.raises(RuntimeError, match=re.escape("<|endofprompt|> not detected in CosyVoice3")):
        list(model.inference_zero_shot(SENTENCE, "", "", "plain", stream=True))
    (call,) = model.calls.inference
    call["llm_thread"].join(timeout=30)  # its exception is reported within this test
    assert not call["llm_thread"].is_alive()


def test_the_engine_streams_cosyvoice3_audio_with_the_hop_len_guard(model_dir_v3, make_voice):
    standin = CosyVoice3StandIn.fresh()
    engine = v3_engine(model_dir_v3, standin)
    voice = make_voice()
    firsts = []
    for _ in range(4):
        chunks = list(engine.stream(SENTENCE, voice))
        firsts.append(len(chunks[0]) // 2)
        call = standin.calls.inference[-1]
        assert chunks == [pcm_of(c) for c in call["chunks"]] and len(chunks) == 3
        assert sum(len(c) for c in chunks) // 2 == 112 * SAMPLES_PER_TOKEN
        samples = np.frombuffer(chunks[0], dtype="<i2")
        assert np.abs(samples).max() > 0
    assert firsts == [FIRST_HOP_SAMPLES] * 4
    assert [c["hop_len_at_start"] for c in standin.calls.inference] == [25] * 4
    assert len(standin.calls.add_zero_shot_spk) == 1 and standin.calls.save_spkinfo == 1
    assert engine._model.model.token_hop_len == 25


def test_the_stand_in_grows_the_hop_as_upstream_without_the_guard(model_dir_v3, make_voice):
    model = CosyVoice3StandIn.fresh()(str(model_dir_v3))
    model.add_zero_shot_spk(COSYVOICE3_PROMPT_PREFIX + TRANSCRIPT, make_voice().audio_path, "s")
    firsts = []
    for _ in range(2):
        items = list(model.inference_zero_shot(SENTENCE, "", "", "s", stream=True))  # consumed to the end
        firsts.append(items[0]["tts_speech"].shape[1])
    assert firsts == [FIRST_HOP_SAMPLES, 112 * SAMPLES_PER_TOKEN]  # CosyVoice3Model inherits the bug


def test_closing_a_cosyvoice3_stream_early_stops_upstream(model_dir_v3, make_voice, monkeypatch):
    standin = CosyVoice3StandIn.fresh()
    engine = v3_engine(model_dir_v3, standin)
    engine._ensure_loaded()
    gate = LLMGate(engine._model.model, hold_after=25 + 3, monkeypatch=monkeypatch)
    voice = make_voice()
    stream = engine.stream(SENTENCE, voice)
    assert len(next(stream)) // 2 == FIRST_HOP_SAMPLES
    inner = engine._model.model
    (cache,) = inner.hift_cache_dict.values()
    assert set(cache) == {"mel", "speech_offset"}  # CosyVoice3Model's vocoder cache
    stream.close()
    assert standin.calls.closed_early == 1 and gate.jobs[0]["thread"].is_alive()
    wait = stopping.UpstreamStop.wait

    def wait_releasing(stop, timeout=None):
        gate.released.set()
        return wait(stop, timeout)

    monkeypatch.setattr(stopping.UpstreamStop, "wait", wait_releasing)
    chunks = list(engine.stream(SENTENCE, voice))
    assert gate.overlapped == [False]
    assert gate.jobs[0]["tokens"] == 28 + 1 and not gate.jobs[0]["ended"]
    assert len(chunks) == 3 and len(chunks[0]) // 2 == FIRST_HOP_SAMPLES
    assert engine.settle(timeout=30)
    for call in standin.calls.inference:
        call["llm_thread"].join(timeout=30)
        assert not call["llm_thread"].is_alive()
    assert inner.tts_speech_token_dict == {} and inner.llm_end_dict == {} and inner.hift_cache_dict == {}


# --- options ------------------------------------------------------------------------------------------
def test_cosyvoice3_gets_no_load_jit_and_its_fp16_tensorrt_note(model_dir_v3, make_voice, caplog):
    standin = CosyVoice3StandIn.fresh()
    with caplog.at_level(logging.INFO, logger="voice.tts.cosyvoice2"):
        engine = v3_engine(
            model_dir_v3, standin, load_jit=True, load_trt=True, fp16=True, trt_concurrent=2, cuda_available=with_cuda
        )
    assert engine.options == {"load_trt": True, "load_vllm": False, "fp16": True, "trt_concurrent": 2}
    list(engine.stream(SENTENCE, make_voice()))
    assert standin.calls.init == [
        {"model_dir": str(model_dir_v3), "load_trt": True, "load_vllm": False, "fp16": True, "trt_concurrent": 2}
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert any("COSYVOICE_LOAD_JIT is ignored: CosyVoice3 has no load_jit" in m for m in messages)
    assert any("DiT fp16 engine" in m for m in messages)
    assert not any("does not accept" in m for m in messages)


def test_cosyvoice3_in_fp32_has_no_fp16_note(model_dir_v3, caplog):
    with caplog.at_level(logging.INFO, logger="voice.tts.cosyvoice2"):
        engine = v3_engine(model_dir_v3, load_trt=True, fp16=False, cuda_available=with_cuda)
    assert engine.options["load_trt"] is True and engine.options["fp16"] is False
    assert not any("DiT fp16 engine" in r.getMessage() for r in caplog.records)
    (model_dir_v3 / "flow.decoder.estimator.fp32.onnx").unlink()
    with pytest.raises(TTSError, match=re.escape("estimator.fp32.mygpu.plan or flow.decoder.estimator.fp32.onnx")):
        v3_engine(model_dir_v3, load_trt=True, fp16=False, cuda_available=with_cuda)
