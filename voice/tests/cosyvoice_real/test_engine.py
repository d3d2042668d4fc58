"""CosyVoice2Engine over the real upstream classes and a tiny random-weight model, on the CPU."""

import numpy as np
import pytest

from voice.tests.cosyvoice_standin import IGNORE_STOPPED_LLM_JOB, LLMGate
from voice.tts import cosyvoice2 as cv
from voice.tts.cosyvoice2 import CosyVoice2Engine, stopping

from .conftest import import_upstream

upstream = import_upstream()
pytestmark = [pytest.mark.cosyvoice_real, pytest.mark.filterwarnings(IGNORE_STOPPED_LLM_JOB)]

SAMPLES_PER_TOKEN = 960  # 24000 Hz / 25 speech tokens a second
TOKENS_PER_TEXT_TOKEN = 20  # the tiny LLM never ends early: max_token_text_ratio x text tokens


def text_tokens(model, sentence) -> int:
    """How many text tokens upstream's frontend makes of a sentence (after its own normalisation)."""
    frontend = model.frontend
    pieces = frontend.text_normalize(sentence, split=True, text_frontend=True)
    return sum(len(frontend.tokenizer.encode(piece, allowed_special=frontend.allowed_special)) for piece in pieces)


def test_the_installed_class_is_read_for_its_prompt_form(real_engine):
    """The older upstream API (prompt_speech_16k) is what the PyPI copy has; the engine picked it from the class."""
    model = real_engine._model
    assert isinstance(model, upstream.CosyVoice2)
    import inspect

    names = inspect.signature(upstream.CosyVoice2.add_zero_shot_spk).parameters
    expected = cv.PROMPT_TENSOR_16K if "prompt_speech_16k" in names else cv.PROMPT_PATH
    assert real_engine._prompt_form == expected == cv.prompt_form(model)
    assert real_engine.sample_rate == model.sample_rate == 24000


def test_zero_shot_stream_is_pcm16_in_order_at_the_model_rate(real_engine, make_voice, spy_model):
    spy = spy_model(real_engine._model)
    voice = make_voice(speaker_id=11)
    text = "Hello there. How are you today?"
    chunks = list(real_engine.stream(text, voice))

    sentences = cv.split_sentences(text)
    assert sentences == ["Hello there.", "How are you today?"]
    assert len(spy.calls) == 2  # one upstream call per sentence
    speech = [tensor for call in spy.calls for tensor in call["speech"]]
    assert all(len(call["speech"]) > 1 for call in spy.calls)  # streamed: several chunks per call
    # Every chunk is the model's float tensor as PCM16 little-endian, in the order upstream yielded them.
    assert chunks == [cv.speech_to_pcm16(tensor) for tensor in speech]
    for chunk, tensor in zip(chunks, speech, strict=True):
        assert tensor.dtype.is_floating_point and tensor.ndim == 2 and tensor.shape[0] == 1
        samples = np.frombuffer(chunk, dtype="<i2")
        assert len(samples) == tensor.shape[1]
        expected = np.clip(tensor.numpy().reshape(-1), -1, 1) * 32767
        assert np.abs(samples - expected).max() <= 0.5
    # The audio is exactly as long as the speech tokens the model made (20 per text token here).
    model = real_engine._model
    for call, sentence in zip(spy.calls, sentences, strict=True):
        total = sum(tensor.shape[1] for tensor in call["speech"])
        assert total == TOKENS_PER_TEXT_TOKEN * text_tokens(model, sentence) * SAMPLES_PER_TOKEN
        # First chunk: one hop of 25 tokens (a 2 s prompt needs no padding), less the vocoder's cache.
        assert call["speech"][0].shape[1] == 25 * SAMPLES_PER_TOKEN - model.model.source_cache_len


def test_the_older_api_gets_the_prompt_at_16k(real_engine, make_voice):
    """A 2 s clip gives upstream 50 speech tokens and 100 mel frames: the prompt went in at 16 kHz."""
    voice = make_voice(speaker_id=12, seconds=2.0, rate=24000)
    list(real_engine.stream("Good morning.", voice))
    entry = real_engine._model.frontend.spk2info[cv.speaker_cache_id(voice)]
    assert entry["llm_prompt_speech_token"].shape == (1, 50)
    assert entry["prompt_speech_feat"].shape == (1, 100, 80)
    assert entry["llm_embedding"].shape == (1, 192)


def count_calls(monkeypatch, cls, name, counter):
    original = getattr(cls, name)

    def counted(*args, **kwargs):
        counter[name] = counter.get(name, 0) + 1
        return original(*args, **kwargs)

    monkeypatch.setattr(cls, name, counted)


def test_speaker_registered_once_saved_and_reused_by_a_new_engine(tiny_model_dir, make_voice, monkeypatch):
    import torch
    from cosyvoice.cli.frontend import CosyVoiceFrontEnd

    counter = {}
    for name in ("_extract_speech_token", "_extract_spk_embedding", "_extract_speech_feat"):
        count_calls(monkeypatch, CosyVoiceFrontEnd, name, counter)
    count_calls(monkeypatch, upstream.CosyVoice2, "add_zero_shot_spk", counter)
    count_calls(monkeypatch, upstream.CosyVoice2, "save_spkinfo", counter)
    voice = make_voice(speaker_id=21)
    spk_id = cv.speaker_cache_id(voice)

    first = CosyVoice2Engine(tiny_model_dir, warmup=False)
    assert list(first.stream("Hello there.", voice))
    assert list(first.stream("Good morning.", voice))
    front_end_calls = {"_extract_speech_token": 1, "_extract_spk_embedding": 1, "_extract_speech_feat": 1}
    assert counter == {**front_end_calls, "add_zero_shot_spk": 1, "save_spkinfo": 1}
    saved = torch.load(tiny_model_dir / "spk2info.pt", map_location="cpu")
    assert spk_id in saved and saved[spk_id]["llm_prompt_speech_token"].shape == (1, 50)

    restarted = CosyVoice2Engine(tiny_model_dir, warmup=False)  # a worker restart: a new model object
    assert list(restarted.stream("Hello there.", voice))
    assert restarted._model is not first._model
    assert spk_id in restarted._model.frontend.spk2info
    # Nothing of the prompt was computed again: the same counts as after the first engine.
    assert counter == {**front_end_calls, "add_zero_shot_spk": 1, "save_spkinfo": 1}
    assert torch.equal(restarted._model.frontend.spk2info[spk_id]["llm_embedding"], saved[spk_id]["llm_embedding"])


def test_a_new_version_of_a_speaker_replaces_the_old_entry(real_engine, make_voice):
    import torch

    list(real_engine.stream("Hello there.", make_voice(speaker_id=31, version="v1")))
    list(real_engine.stream("Hello there.", make_voice(speaker_id=31, version="v2", seconds=3.0)))
    saved = torch.load(real_engine.model_dir / "spk2info.pt", map_location="cpu")
    assert "mm-spk-31-v2" in saved and "mm-spk-31-v1" not in saved
    assert saved["mm-spk-31-v2"]["llm_prompt_speech_token"].shape == (1, 75)


def test_closing_a_stream_early_stops_upstream_and_releases_its_state(real_engine, make_voice, monkeypatch):
    """A barge-in on the real CosyVoice2Model: its llm_job thread stops at its next token, the request's
    entries in tts_speech_token_dict, llm_end_dict and hift_cache_dict go, and the next call waits for it."""
    import threading

    inner = real_engine._model.model
    voice = make_voice(speaker_id=41)
    gate = LLMGate(inner, hold_after=25 + 3, monkeypatch=monkeypatch)  # the tokens of the first hop
    wait = stopping.UpstreamStop.wait

    def wait_releasing(stop, timeout=None):
        gate.released.set()  # the held LLM makes its next token once the next call waits for the stop
        return wait(stop, timeout)

    monkeypatch.setattr(stopping.UpstreamStop, "wait", wait_releasing)
    stream = real_engine.stream("Hello there.", voice)  # 60 speech tokens
    assert len(next(stream)) // 2 == 25 * SAMPLES_PER_TOKEN - inner.source_cache_len
    stream.close()
    assert gate.jobs[0]["thread"].is_alive()  # upstream's LLM thread outlives the closed generator

    chunks = list(real_engine.stream("Hello there.", voice))  # straight after the barge-in
    assert gate.overlapped == [False]  # the cut request's LLM had ended before the next one's began
    assert gate.jobs[0]["tokens"] == 28 + 1 and not gate.jobs[0]["ended"]  # stopped at its next token (of 60)
    assert len(chunks) == 3  # the next request is whole: hops of 25, 25, then 10 tokens

    assert real_engine.settle(timeout=60)
    for job in gate.jobs:
        job["thread"].join(timeout=60)
    assert [t.name for t in threading.enumerate() if t.name.endswith("(llm_job)")] == []
    assert inner.tts_speech_token_dict == {} and inner.llm_end_dict == {} and inner.hift_cache_dict == {}


def test_the_network_guard_is_on():
    import socket

    from . import netguard

    with pytest.raises(OSError, match="refused by the test guard"):
        socket.create_connection(("203.0.113.7", 443), timeout=1)
    assert len(netguard.refused) == 1
    netguard.refused.clear()
