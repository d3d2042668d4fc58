"""The stand-in of voice/tests/cosyvoice_standin.py against the real upstream class, so drift fails a test.

The stand-in imitates the current upstream generation (ace7c47f: prompts are paths, `prompt_wav`);
its `CosyVoice2TensorPromptStandIn` imitates the older one (before 622a3a1: 16 kHz tensors,
`prompt_speech_16k`). The installed copy is compared with the stand-in of its own generation
parameter by parameter, and with the other one everywhere but the prompt parameter.
"""

import inspect

import numpy as np
import pytest

from voice.tests import cosyvoice_standin as standin

from .conftest import import_upstream

upstream = import_upstream()
pytestmark = pytest.mark.cosyvoice_real

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
    stand_in_model = standin.StandInModel()
    assert model.model.token_hop_len == stand_in_model.token_hop_len
    # The hop growth of the current generation (token_max_hop_len, stream_scale_factor) is the stand-in's
    # only: the older generation has neither; where the installed code has them, they must agree.
    for attribute in ("token_max_hop_len", "stream_scale_factor"):
        if real_generation() == OLDER:
            assert not hasattr(model.model, attribute), attribute
        else:
            assert getattr(model.model, attribute) == getattr(stand_in_model, attribute), attribute


def test_the_yielded_structure_is_the_same(real_engine, make_voice, tmp_path):
    import torch

    voice = make_voice(speaker_id=71)
    model = real_engine._model
    with real_engine._lock:
        spk_id = real_engine._speaker_id(model, voice)
        real_items = list(model.inference_zero_shot("Hello there.", "", "", zero_shot_spk_id=spk_id, stream=True))
        real_engine._reset_hop_len(model)
    model_dir = tmp_path / "standin"
    model_dir.mkdir()
    (model_dir / "cosyvoice2.yaml").write_text("")
    imitation = standin.CosyVoice2StandIn.fresh()(str(model_dir))
    imitation.add_zero_shot_spk("This is how I sound.", voice.audio_path, "s")
    imitated_items = list(imitation.inference_zero_shot("Hello there.", "", "", zero_shot_spk_id="s", stream=True))

    assert len(real_items) > 1 and len(imitated_items) > 1
    for items in (real_items, imitated_items):
        assert all(isinstance(item, dict) and set(item) == {"tts_speech"} for item in items)
    for item in real_items:
        speech = item["tts_speech"]
        assert isinstance(speech, torch.Tensor) and speech.dtype == torch.float32 and speech.device.type == "cpu"
        assert speech.ndim == 2 and speech.shape[0] == 1
    for item in imitated_items:
        speech = item["tts_speech"]
        assert speech.dtype == np.float32 and speech.ndim == 2 and speech.shape[0] == 1
    # Both open with a hop of 25 tokens of 960 samples; upstream keeps the vocoder's overlap back (it comes
    # with the next chunk), which the stand-in does not imitate.
    hop = 25 * standin.SAMPLES_PER_TOKEN
    assert imitated_items[0]["tts_speech"].shape[1] == hop
    assert real_items[0]["tts_speech"].shape[1] + model.model.source_cache_len == hop
