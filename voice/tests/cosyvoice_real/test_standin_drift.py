"""The stand-in of voice/tests/cosyvoice_standin.py against the real upstream class, so drift fails a test.

The stand-in imitates the current upstream generation (ace7c47f: prompts are paths, `prompt_wav`);
its `CosyVoice2TensorPromptStandIn` imitates the older one (before 622a3a1: 16 kHz tensors,
`prompt_speech_16k`). The installed copy is compared with the stand-in of its own generation
parameter by parameter, and with the other one everywhere but the prompt parameter.
"""

import inspect
import threading

import numpy as np
import pytest

from voice.tests import cosyvoice_standin as standin
from voice.tts.cosyvoice2 import stopping

from .conftest import import_upstream

upstream = import_upstream()
pytestmark = [pytest.mark.cosyvoice_real, pytest.mark.filterwarnings(standin.IGNORE_STOPPED_LLM_JOB)]

CURRENT, OLDER = "prompt_wav", "prompt_speech_16k"
METHODS = ("inference_zero_shot", "add_zero_shot_spk", "save_spkinfo", "list_available_spks")
# What the PyPI copy (cosyvoice2-fr-infer) adds to the constructor; nothing the engine passes.
PYPI_CONSTRUCTOR_EXTRAS = ("setting", "llm_run_id", "flow_run_id", "hifigan_run_id", "final")


def parameters(function):
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def real_generation():
    names = inspect.signature(upstream.CosyVoice2.inference_zero_shot).parameters
    assert (CURRENT in names) != (OLDER in names), f"neither or both prompt forms: {list(names)}"
    return CURRENT if CURRENT in names else OLDER


def test_the_stand_in_of_the_installed_generation_has_the_same_signatures():
    same = standin.CosyVoice2StandIn if real_generation() == CURRENT else standin.CosyVoice2TensorPromptStandIn
    for name in METHODS:
        assert callable(getattr(upstream.CosyVoice2, name)), name
        assert parameters(getattr(same, name)) == parameters(getattr(upstream.CosyVoice2, name)), name


def test_the_other_generation_differs_only_in_the_prompt_parameter():
    generation = real_generation()
    other, other_name = (
        (standin.CosyVoice2TensorPromptStandIn, OLDER)
        if generation == CURRENT
        else (standin.CosyVoice2StandIn, CURRENT)
    )
    for name in ("inference_zero_shot", "add_zero_shot_spk"):
        real = parameters(getattr(upstream.CosyVoice2, name))
        imitation = parameters(getattr(other, name))
        renamed = [(generation if n == other_name else n, kind, default) for n, kind, default in imitation]
        assert renamed == real, name
        assert [n for n, _, _ in imitation].index(other_name) == [n for n, _, _ in real].index(generation)


def test_the_constructor_takes_what_the_stand_in_takes():
    real = parameters(upstream.CosyVoice2.__init__)
    imitation = parameters(standin.CosyVoice2StandIn.__init__)
    assert real[: len(imitation)] == imitation
    assert [n for n, _, _ in real[len(imitation) :]] == list(PYPI_CONSTRUCTOR_EXTRAS)
    no_vllm = parameters(standin.CosyVoice2NoVllmStandIn.__init__)
    assert [p for p in real[: len(imitation)] if p[0] != "load_vllm"] == no_vllm


def test_the_frontend_and_model_attributes_the_engine_uses(real_engine):
    from cosyvoice.cli.frontend import CosyVoiceFrontEnd

    model = real_engine._model
    assert parameters(standin.StandInFrontEnd.text_normalize) == parameters(CosyVoiceFrontEnd.text_normalize)
    assert isinstance(model.frontend.spk2info, dict)
    assert model.sample_rate == standin.SAMPLE_RATE
    assert model.model.flow.input_frame_rate == standin.TOKEN_RATE
    assert model.model.flow.pre_lookahead_len == standin.PRE_LOOKAHEAD_LEN
    stand_in_model = standin.StandInModel(standin.Calls(), grows_hop_len=installed_standin().grows_hop_len)
    assert model.model.token_hop_len == stand_in_model.token_hop_len
    # The hop growth (token_max_hop_len, stream_scale_factor) came with the current generation; the
    # older one has neither, nor has the stand-in of that generation. Where both have them, they agree.
    for attribute in ("token_max_hop_len", "stream_scale_factor"):
        assert hasattr(model.model, attribute) == hasattr(stand_in_model, attribute), attribute
        if hasattr(model.model, attribute):
            assert getattr(model.model, attribute) == getattr(stand_in_model, attribute), attribute
    if real_generation() == OLDER:
        assert not hasattr(model.model, "stream_scale_factor")


# --- behaviour: the same calls through the real class and the stand-in -------------------------------
TEXT = "Hello there."  # 3 text tokens: 60 speech tokens from the tiny model; the stand-in is told 60


def installed_standin():
    return standin.CosyVoice2StandIn if real_generation() == CURRENT else standin.CosyVoice2TensorPromptStandIn


@pytest.fixture
def pair(real_engine, make_voice, tmp_path):
    """The real CosyVoice2 and a stand-in of the installed generation, each with a 2 s speaker registered
    (50 prompt tokens: no padding) and making as many speech tokens for TEXT; yields (real, standin)."""
    from .test_engine import TOKENS_PER_TEXT_TOKEN, text_tokens

    voice = make_voice(speaker_id=71)
    model = real_engine._model
    speech_tokens = TOKENS_PER_TEXT_TOKEN * text_tokens(model, TEXT)
    model_dir = tmp_path / "standin"
    model_dir.mkdir()
    (model_dir / "cosyvoice2.yaml").write_text("")
    imitation = installed_standin().fresh(speech_tokens=speech_tokens)(str(model_dir))
    prompt = voice.audio_path if real_generation() == CURRENT else np.zeros((1, 32000), dtype=np.float32)
    imitation.add_zero_shot_spk("This is how I sound.", prompt, "s")
    with real_engine._lock:  # nothing else of the session's engine runs meanwhile
        real_engine._reset_hop_len(model)
        yield (model, real_engine._speaker_id(model, voice)), (imitation, "s")
        real_engine._reset_hop_len(model)


def per_request_dicts(cosy) -> dict:
    return {name: value for name, value in vars(cosy.model).items() if isinstance(value, dict)}


def describe_entry(value):
    """One request's entry in a per-request dict, as far as both can be compared."""
    if isinstance(value, list):
        return ("tokens", len(value))
    if isinstance(value, dict):
        return ("cache", sorted(value))
    return value


def in_samples(items, cache_len):
    """Chunk lengths with upstream's vocoder overlap given back (it holds `cache_len` samples of each
    chunk back and yields them with the next one; the stand-in does not imitate that)."""
    lengths = [item["tts_speech"].shape[1] for item in items]
    if len(lengths) > 1:
        lengths[0] += cache_len
        lengths[-1] -= cache_len
    return lengths


def start_stream(cosy, spk_id, monkeypatch):
    """Open a stream and take its first item, its LLM held meanwhile (so its thread is surely running):
    the stream, that item, the new request ids, their llm threads and the gate."""
    gate = standin.LLMGate(cosy.model, hold_after=25 + 3, monkeypatch=monkeypatch)
    before = stopping.request_ids(cosy)
    outputs = cosy.inference_zero_shot(TEXT, "", "", zero_shot_spk_id=spk_id, stream=True)
    first = next(outputs)
    ids = stopping.request_ids(cosy) - before
    return outputs, first, ids, stopping.llm_threads(ids), gate


def observe_full_stream(cosy, spk_id, cache_len, monkeypatch) -> dict:
    outputs, first, ids, threads, gate = start_stream(cosy, spk_id, monkeypatch)
    gate.open()
    items = [first, *outputs]
    return {
        "keys": [sorted(item) for item in items],
        "shapes": [(item["tts_speech"].ndim, item["tts_speech"].shape[0]) for item in items],
        "samples": in_samples(items, cache_len),
        "requests": len(ids),
        "llm threads": [thread.name.rsplit(" ", 1)[-1] for thread in threads],  # found as the engine finds them
        "llm threads alive at the end": [thread.is_alive() for thread in threads],
        "left behind": {name: len(entries) for name, entries in per_request_dicts(cosy).items()},
    }


def observe_early_close(cosy, spk_id, monkeypatch) -> dict:
    """Close after the first chunk, straight on the class (no adapter): what upstream leaves behind."""
    outputs, _first, ids, threads, gate = start_stream(cosy, spk_id, monkeypatch)
    outputs.close()
    gate.open()
    for thread in threads:
        thread.join(timeout=60)  # it runs on to the end of the sentence by itself
    left = {
        name: [describe_entry(entries[request_id]) for request_id in sorted(ids) if request_id in entries]
        for name, entries in per_request_dicts(cosy).items()
    }
    observed = {
        "requests": len(ids),
        "llm threads": [thread.name.rsplit(" ", 1)[-1] for thread in threads],
        "llm threads alive after join": [thread.is_alive() for thread in threads],
        "left behind": left,
    }
    stopping.release(cosy.model, ids)  # what the engine does after the stop; the model is shared
    observed["after release"] = {name: len(entries) for name, entries in per_request_dicts(cosy).items()}
    return observed


def test_the_yielded_structure_is_the_same(pair):
    import torch

    (real, real_spk), (imitation, imitation_spk) = pair
    real_items = list(real.inference_zero_shot(TEXT, "", "", zero_shot_spk_id=real_spk, stream=True))
    imitated_items = list(imitation.inference_zero_shot(TEXT, "", "", zero_shot_spk_id=imitation_spk, stream=True))
    for item in real_items:
        speech = item["tts_speech"]
        assert isinstance(speech, torch.Tensor) and speech.dtype == torch.float32 and speech.device.type == "cpu"
    for item in imitated_items:
        assert item["tts_speech"].dtype == np.float32
    # Both open with a hop of 25 tokens of 960 samples; upstream keeps the vocoder's overlap back.
    hop = 25 * standin.SAMPLES_PER_TOKEN
    assert imitated_items[0]["tts_speech"].shape[1] == hop
    assert real_items[0]["tts_speech"].shape[1] + real.model.source_cache_len == hop


def test_a_full_stream_behaves_the_same(pair, monkeypatch):
    """Same items, same hop schedule, one request with one llm_job thread, nothing left behind."""
    (real, real_spk), (imitation, imitation_spk) = pair
    observed_real = observe_full_stream(real, real_spk, real.model.source_cache_len, monkeypatch)
    observed_imitation = observe_full_stream(imitation, imitation_spk, 0, monkeypatch)
    assert observed_real == observed_imitation
    assert observed_real["keys"][0] == ["tts_speech"] and len(observed_real["samples"]) > 1
    assert observed_real["llm threads"] == ["(llm_job)"] and observed_real["llm threads alive at the end"] == [False]
    assert set(observed_real["left behind"]) == {"tts_speech_token_dict", "llm_end_dict", "hift_cache_dict"}
    assert set(observed_real["left behind"].values()) == {0}


def test_an_early_closed_stream_leaves_the_same_state_behind(pair, monkeypatch):
    """Closed after its first chunk, both leave one entry per dict (all the tokens, the LLM's end, the
    vocoder cache) and a thread that ran on to the end: what the engine's stopping (stopping.py) undoes."""
    (real, real_spk), (imitation, imitation_spk) = pair
    observed_real = observe_early_close(real, real_spk, monkeypatch)
    observed_imitation = observe_early_close(imitation, imitation_spk, monkeypatch)
    assert observed_real == observed_imitation
    assert observed_real["llm threads"] == ["(llm_job)"]
    assert observed_real["left behind"]["llm_end_dict"] == [True]
    assert observed_real["left behind"]["tts_speech_token_dict"] == [("tokens", 60)]
    assert observed_real["left behind"]["hift_cache_dict"] == [("cache", ["mel", "source", "speech"])]
    assert set(observed_real["after release"].values()) == {0}


def test_through_the_engine_both_stream_and_stop_alike(real_engine, make_voice, model_dir):
    """The adapter over either: the same PCM chunk schedule, and after an early close nothing left."""
    from voice.tts.cosyvoice2 import CosyVoice2Engine

    from .test_engine import TOKENS_PER_TEXT_TOKEN, text_tokens

    voice = make_voice(speaker_id=72)
    speech_tokens = TOKENS_PER_TEXT_TOKEN * text_tokens(real_engine._model, TEXT)
    imitation = installed_standin().fresh(speech_tokens=speech_tokens)
    engine = CosyVoice2Engine(model_dir, cosyvoice_cls=imitation, cuda_available=lambda: False, warmup=False)
    cache_len = real_engine._model.model.source_cache_len

    def samples(chunks, cache):
        return in_samples([{"tts_speech": np.zeros((1, len(chunk) // 2))} for chunk in chunks], cache)

    assert samples(list(real_engine.stream(TEXT, voice)), cache_len) == samples(list(engine.stream(TEXT, voice)), 0)
    for each in (real_engine, engine):
        stream = each.stream(TEXT, voice)
        next(stream)
        stream.close()
        assert each.settle(timeout=60)
        assert {name: len(entries) for name, entries in per_request_dicts(each._model).items()} == {
            "tts_speech_token_dict": 0,
            "llm_end_dict": 0,
            "hift_cache_dict": 0,
        }
    llm_threads = [t for t in threading.enumerate() if t.name.endswith("(llm_job)")]
    for thread in llm_threads:
        thread.join(timeout=60)
    assert [t.name for t in llm_threads if t.is_alive()] == []
