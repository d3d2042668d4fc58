"""CosyVoice2Engine against a stand-in that honours the official CosyVoice2 API (voice/tests/cosyvoice_standin.py):
streaming, sentences, the token_hop_len guard, loading, warm-up and options."""

import threading

import numpy as np
import pytest

from voice.tests.cosyvoice_standin import (
    IGNORE_STOPPED_LLM_JOB,
    SAMPLES_PER_TOKEN,
    CosyVoice2NoVllmStandIn,
    CosyVoice2StandIn,
    FakeTensor,
    LLMGate,
)
from voice.tts import cosyvoice2 as cv
from voice.tts.base import TTSError
from voice.tts.cosyvoice2 import CosyVoice2Engine, stopping
from voice.tts.cosyvoice2 import engine as engine_module

from .helpers import FIRST_HOP_SAMPLES, SENTENCE, engine_for, no_cuda, pcm_of, with_cuda

pytestmark = pytest.mark.filterwarnings(IGNORE_STOPPED_LLM_JOB)


def upstream_state(engine) -> dict:
    """What the model holds per request (upstream's dicts), by dict name."""
    inner = engine._model.model
    return {name: dict(getattr(inner, name)) for name in ("tts_speech_token_dict", "llm_end_dict", "hift_cache_dict")}


def assert_upstream_idle(engine, standin):
    """Nothing left of any request: the stops done, every LLM thread ended, no state kept."""
    assert engine.settle(timeout=30)
    for call in standin.calls.inference:
        call["llm_thread"].join(timeout=30)
        assert not call["llm_thread"].is_alive()
    assert upstream_state(engine) == {"tts_speech_token_dict": {}, "llm_end_dict": {}, "hift_cache_dict": {}}
    assert standin.calls.active == 0


# --- streaming and sentences --------------------------------------------------------------------------
def test_stream_yields_one_pcm16_chunk_per_tts_speech_item(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    chunks = list(engine.stream(SENTENCE, make_voice()))

    (call,) = standin.calls.inference
    assert call["stream"] is True and call["tts_text"] == SENTENCE
    assert call["prompt_text"] == "" and call["prompt_wav"] == ""
    assert call["zero_shot_spk_id"] == "mm-spk-7-v1"
    assert len(chunks) == len(call["chunks"]) == 3
    assert chunks == [pcm_of(c) for c in call["chunks"]]
    assert engine.sample_rate == 24000
    for chunk, source in zip(chunks, call["chunks"], strict=True):
        samples = np.frombuffer(chunk, dtype="<i2")
        assert len(samples) == source.shape[1]
        assert np.abs(samples.astype(np.int32) - source.reshape(-1) * 32767).max() <= 0.5
    assert sum(len(c) for c in chunks) // 2 == sum(call["chunk_tokens"]) * SAMPLES_PER_TOKEN


def test_torch_like_tensors_and_clipping_through_the_engine(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh(tensor_type=FakeTensor, amplitude=1.5)
    chunks = list(engine_for(model_dir, standin).stream(SENTENCE, make_voice()))
    samples = np.frombuffer(b"".join(chunks), dtype="<i2")
    assert len(chunks) == len(standin.calls.inference[0]["chunks"])
    assert samples.max() == 32767 and samples.min() == -32767


def test_split_sentences():
    assert cv.split_sentences("Good morning to you. How did you sleep last night? Fine.") == [
        "Good morning to you.",
        "How did you sleep last night? Fine.",
    ]
    assert cv.split_sentences("Hi. Nice to see you again!") == ["Hi. Nice to see you again!"]
    assert cv.split_sentences("It costs 3.50 dollars today.\nSee you soon") == [
        "It costs 3.50 dollars today.",
        "See you soon",
    ]
    assert cv.split_sentences("今天天气很好，阳光明媚。我们一起去公园散步吧，好不好？对。") == [
        "今天天气很好，阳光明媚。",
        "我们一起去公园散步吧，好不好？对。",
    ]
    assert cv.split_sentences("   ") == []


def test_several_sentences_make_several_calls(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    text = "Good morning to you. How did you sleep last night? Fine."
    chunks = list(engine.stream(text, make_voice()))
    assert [c["tts_text"] for c in standin.calls.inference] == [
        "Good morning to you.",
        "How did you sleep last night? Fine.",
    ]
    assert len(chunks) == sum(len(c["chunks"]) for c in standin.calls.inference)
    assert len(standin.calls.add_zero_shot_spk) == 1


def test_empty_text_loads_nothing(model_dir):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    assert list(engine.stream("  ")) == []
    assert standin.calls.init == [] and not engine.loaded


# --- the token_hop_len guard and serialisation --------------------------------------------------------
def test_standin_reproduces_the_upstream_hop_len_bug(model_dir, make_voice):
    """Without the guard, the first chunk grows from call to call (what the engine must prevent)."""
    standin = CosyVoice2StandIn.fresh()
    model = standin(str(model_dir))
    model.add_zero_shot_spk("prompt", make_voice().audio_path, "s")
    firsts = []
    for _ in range(3):
        items = list(model.inference_zero_shot(SENTENCE, "", "", "s", stream=True))  # consumed to the end
        firsts.append(items[0]["tts_speech"].shape[1])
    # 25 tokens first; from the second call on the hop is 100 (+ prompt padding) and this sentence
    # (112 tokens) is no longer streamed at all: it comes as one chunk.
    assert firsts == [FIRST_HOP_SAMPLES, 112 * SAMPLES_PER_TOKEN, 112 * SAMPLES_PER_TOKEN]


def test_first_chunk_size_constant_over_calls(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    voice = make_voice()
    first_sizes = []
    for _ in range(4):
        chunks = list(engine.stream(SENTENCE, voice))
        first_sizes.append(len(chunks[0]) // 2)
    assert first_sizes == [FIRST_HOP_SAMPLES] * 4
    assert [c["hop_len_at_start"] for c in standin.calls.inference] == [25] * 4
    assert [c["chunk_tokens"][:2] for c in standin.calls.inference] == [[25, 50]] * 4  # growth within a call
    model = engine._model
    assert model.model.token_hop_len == 25  # set back after the call too


def test_concurrent_streams_never_run_inference_at_once(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    voices = [make_voice(speaker_id=i) for i in range(4)]
    results, errors = {}, []

    def speak(voice):
        try:
            results[voice.speaker_id] = list(engine.stream(f"{SENTENCE} And then, a second sentence.", voice))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=speak, args=(v,)) for v in voices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and len(results) == 4
    assert standin.calls.max_active == 1
    assert len(standin.calls.init) == 1  # loaded once
    assert len(standin.calls.inference) == 8
    assert all(c["hop_len_at_start"] == 25 for c in standin.calls.inference)
    assert {len(r[0]) // 2 for r in results.values()} == {FIRST_HOP_SAMPLES}


def test_closing_a_stream_early_releases_the_model(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    voice = make_voice()
    stream = engine.stream(SENTENCE, voice)
    assert len(next(stream)) // 2 == FIRST_HOP_SAMPLES
    stream.close()
    assert standin.calls.closed_early == 1
    assert engine._lock.acquire(timeout=10), "the closed stream still holds the engine's lock"
    engine._lock.release()
    chunks = list(engine.stream(SENTENCE, voice))
    assert len(chunks[0]) // 2 == FIRST_HOP_SAMPLES
    assert_upstream_idle(engine, standin)


def test_closing_a_stream_early_stops_upstream_and_releases_its_state(model_dir, make_voice, monkeypatch):
    """A barge-in: upstream's LLM thread stops at its next token, its entries go, the next call waits for it."""
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    engine._ensure_loaded()
    gate = LLMGate(engine._model.model, hold_after=25 + 3, monkeypatch=monkeypatch)  # the first hop's tokens
    voice = make_voice()
    stream = engine.stream(SENTENCE, voice)
    assert len(next(stream)) // 2 == FIRST_HOP_SAMPLES
    stream.close()  # the LLM is still running (held at its 28th of 112 tokens)
    assert standin.calls.closed_early == 1 and gate.jobs[0]["thread"].is_alive()
    wait = stopping.UpstreamStop.wait

    def wait_releasing(stop, timeout=None):
        gate.released.set()  # the held LLM makes its next token once the next call waits for the stop
        return wait(stop, timeout)

    monkeypatch.setattr(stopping.UpstreamStop, "wait", wait_releasing)

    chunks = list(engine.stream(SENTENCE, voice))  # straight after the barge-in
    assert gate.overlapped == [False]  # the cut request's LLM had ended before the next one began
    assert gate.jobs[0]["tokens"] == 28 + 1 and not gate.jobs[0]["ended"]  # stopped at its next token
    assert standin.calls.max_active == 1
    assert len(chunks) == 3 and len(chunks[0]) // 2 == FIRST_HOP_SAMPLES
    assert_upstream_idle(engine, standin)


def test_synthesis_failure_is_tts_failed(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh(fail_inference=True)
    engine = engine_for(model_dir, standin)
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE, make_voice()))
    assert excinfo.value.code == "tts_failed" and "out of memory" in str(excinfo.value)
    assert_upstream_idle(engine, standin)  # a failed stream is stopped like a closed one


# --- lazy loading and warm-up -------------------------------------------------------------------------
def test_model_loads_lazily_once_across_threads(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh(init_delay=0.05)
    engine = engine_for(model_dir, standin)
    assert standin.calls.init == [] and not engine.loaded
    voice = make_voice()
    threads = [threading.Thread(target=lambda: list(engine.stream(SENTENCE, voice))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(standin.calls.init) == 1 and engine.loaded
    assert len(standin.calls.add_zero_shot_spk) == 1 and len(standin.calls.inference) == 4


def test_load_failure_is_reported(model_dir, make_voice):
    (model_dir / "cosyvoice2.yaml").unlink()
    engine_kwargs = {"cosyvoice_cls": CosyVoice2StandIn.fresh(), "cuda_available": no_cuda}
    with pytest.raises(TTSError) as excinfo:
        CosyVoice2Engine(model_dir, **engine_kwargs)
    assert excinfo.value.code == "tts_model_missing" and "cosyvoice2.yaml" in str(excinfo.value)

    (model_dir / "cosyvoice2.yaml").write_bytes(b"")
    engine = CosyVoice2Engine(model_dir, **engine_kwargs)
    (model_dir / "cosyvoice2.yaml").unlink()  # gone between construction and first use
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE, make_voice()))
    assert excinfo.value.code == "tts_load_failed"


def test_warm_up_loads_and_synthesises_with_default_prompt(model_dir, tmp_path, wav_bytes):
    default_wav = tmp_path / "default.wav"
    default_wav.write_bytes(wav_bytes(2.0, 24000))
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(
        model_dir, standin, warmup=True, default_prompt_wav=str(default_wav), default_prompt_text="Hello there."
    )
    engine.warm_up()
    assert len(standin.calls.init) == 1
    assert [c["tts_text"] for c in standin.calls.inference] == [cv.WARMUP_TEXT]


def test_warm_up_without_default_prompt_only_loads(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin, warmup=True)
    engine.warm_up()
    assert len(standin.calls.init) == 1 and standin.calls.inference == []
    engine.warm_up(make_voice())  # with a speaker it synthesises
    assert len(standin.calls.inference) == 1


def test_warm_up_disabled_stays_lazy(model_dir):
    standin = CosyVoice2StandIn.fresh()
    engine_for(model_dir, standin, warmup=False).warm_up()
    assert standin.calls.init == []


# --- options ------------------------------------------------------------------------------------------
@pytest.fixture
def cosyvoice_settings(settings, model_dir):
    settings.COSYVOICE_MODEL_DIR = str(model_dir)
    settings.COSYVOICE_LOAD_TRT = True
    settings.COSYVOICE_LOAD_JIT = True
    settings.COSYVOICE_FP16 = True
    settings.COSYVOICE_LOAD_VLLM = True
    settings.COSYVOICE_TRT_CONCURRENT = 3
    settings.COSYVOICE_WARMUP = False
    return settings


def test_options_with_cuda(cosyvoice_settings, model_dir, make_voice, monkeypatch):
    monkeypatch.setattr(engine_module, "vllm_available", lambda: True)
    standin = CosyVoice2StandIn.fresh()
    engine = CosyVoice2Engine.from_settings(cosyvoice_cls=standin, cuda_available=with_cuda)
    list(engine.stream(SENTENCE, make_voice()))
    assert standin.calls.init == [
        {
            "model_dir": str(model_dir),
            "load_jit": True,
            "load_trt": True,
            "load_vllm": True,
            "fp16": True,
            "trt_concurrent": 3,
        }
    ]
    assert engine.warmup is False and engine.describe()["cuda"] is True


def test_options_without_cuda(cosyvoice_settings, model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = CosyVoice2Engine.from_settings(cosyvoice_cls=standin, cuda_available=no_cuda)
    list(engine.stream(SENTENCE, make_voice()))
    assert standin.calls.init == [
        {
            "model_dir": str(model_dir),
            "load_jit": False,
            "load_trt": False,
            "load_vllm": False,
            "fp16": False,
            "trt_concurrent": 3,
        }
    ]


def test_load_vllm_off_without_vllm(cosyvoice_settings, monkeypatch):
    monkeypatch.setattr(engine_module, "vllm_available", lambda: False)
    engine = CosyVoice2Engine.from_settings(cosyvoice_cls=CosyVoice2StandIn.fresh(), cuda_available=with_cuda)
    assert engine.options["load_vllm"] is False and engine.options["load_trt"] is True


def test_load_vllm_only_where_the_class_accepts_it(cosyvoice_settings, model_dir, make_voice, monkeypatch):
    monkeypatch.setattr(engine_module, "vllm_available", lambda: True)
    standin = CosyVoice2NoVllmStandIn.fresh()
    engine = CosyVoice2Engine.from_settings(cosyvoice_cls=standin, cuda_available=with_cuda)
    list(engine.stream(SENTENCE, make_voice()))
    assert "load_vllm" not in standin.calls.init[0]
    assert standin.calls.init[0]["load_trt"] is True and standin.calls.init[0]["trt_concurrent"] == 3


def test_model_dir_is_passed_absolute(model_dir, monkeypatch, make_voice):
    monkeypatch.chdir(model_dir.parent)
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir.name, standin)
    list(engine.stream(SENTENCE, make_voice()))
    assert standin.calls.init[0]["model_dir"] == str(model_dir)


def test_describe(model_dir):
    engine = engine_for(model_dir)
    info = engine.describe()
    assert info["engine"] == "cosyvoice2" and info["sample_rate"] == 24000 and info["clones_voices"] is True
    assert info["loaded"] is False and info["upstream_commit"] == cv.UPSTREAM_COMMIT
