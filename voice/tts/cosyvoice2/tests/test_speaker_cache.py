"""Speaker prompts (speaker_cache.py) through the engine and the stand-in: registered once, kept in spk2info.pt,
replaced by a new version; the older API's 16 kHz prompt; the default voice."""

import pickle

import numpy as np
import pytest

from voice.tests.cosyvoice_standin import (
    CosyVoice2StandIn,
    CosyVoice2TensorPromptStandIn,
)
from voice.tts import cosyvoice2 as cv
from voice.tts.base import TTSError, VoiceRef
from voice.tts.cosyvoice2 import CosyVoice2Engine

from .helpers import SENTENCE, engine_for, no_cuda


# --- registration, persistence, versions --------------------------------------------------------------
def test_speaker_registered_once_and_persisted(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    voice = make_voice()
    list(engine.stream(SENTENCE, voice))
    list(engine.stream(SENTENCE, voice))

    (added,) = standin.calls.add_zero_shot_spk
    assert added["zero_shot_spk_id"] == "mm-spk-7-v1"
    assert added["prompt"] == voice.audio_path  # current API: a path
    assert added["prompt_text"] == "This is how I sound when I read aloud."  # normalised as upstream does
    assert standin.calls.save_spkinfo == 1
    saved = pickle.loads((model_dir / "spk2info.pt").read_bytes())  # noqa: S301 - written by the stand-in
    assert list(saved) == ["mm-spk-7-v1"]
    assert [c["zero_shot_spk_id"] for c in standin.calls.inference] == ["mm-spk-7-v1"] * 2


def test_new_engine_on_same_model_dir_reuses_saved_speakers(model_dir, make_voice):
    voice = make_voice()
    first = CosyVoice2StandIn.fresh()
    list(engine_for(model_dir, first).stream(SENTENCE, voice))
    assert len(first.calls.add_zero_shot_spk) == 1

    restarted = CosyVoice2StandIn.fresh()  # a worker restart: new process, new model object
    engine = engine_for(model_dir, restarted)
    chunks = list(engine.stream(SENTENCE, voice))
    assert chunks
    assert restarted.calls.add_zero_shot_spk == [] and restarted.calls.save_spkinfo == 0
    assert restarted.calls.init[0]["model_dir"] == str(model_dir)
    assert restarted.calls.inference[0]["zero_shot_spk_id"] == "mm-spk-7-v1"


def test_changed_version_registers_again_and_drops_the_old_entry(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    list(engine.stream(SENTENCE, make_voice(version="v1")))
    list(engine.stream(SENTENCE, make_voice(version="v2")))
    list(engine.stream(SENTENCE, make_voice(speaker_id=8, version="v1")))

    assert [a["zero_shot_spk_id"] for a in standin.calls.add_zero_shot_spk] == [
        "mm-spk-7-v1",
        "mm-spk-7-v2",
        "mm-spk-8-v1",
    ]
    assert standin.calls.save_spkinfo == 3
    saved = pickle.loads((model_dir / "spk2info.pt").read_bytes())  # noqa: S301 - written by the stand-in
    assert sorted(saved) == ["mm-spk-7-v2", "mm-spk-8-v1"]


def test_speaker_cache_id_is_stable_and_safe():
    voice = VoiceRef(3, "A", "text", "/x.wav", "ab/c d")
    assert cv.speaker_cache_id(voice) == "mm-spk-3-ab_c_d"
    assert cv.speaker_cache_id(voice) == cv.speaker_cache_id(VoiceRef(3, "B", "other", "/y.wav", "ab/c d"))


def test_older_api_gets_a_16k_float_prompt(model_dir, make_voice):
    standin = CosyVoice2TensorPromptStandIn.fresh()
    engine = engine_for(model_dir, standin)
    voice = make_voice(seconds=2.0, rate=24000)
    chunks = list(engine.stream(SENTENCE, voice))

    (added,) = standin.calls.add_zero_shot_spk
    prompt = added["prompt"]
    assert isinstance(prompt, np.ndarray)  # torch is absent here; a torch tensor where it is installed
    assert prompt.dtype == np.float32 and prompt.shape == (1, 32000)
    assert 0.35 < np.abs(prompt).max() <= 0.41  # the 0.4 tone, resampled 24 kHz -> 16 kHz
    assert standin.calls.inference[0]["zero_shot_spk_id"] == "mm-spk-7-v1"
    assert standin.calls.inference[0]["chunk_tokens"] == [25, 25, 25, 25, 12]  # no hop growth in that generation
    assert len(chunks) == 5


def test_missing_speaker_audio_is_a_clear_error(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE, make_voice(write=False, name="Grandpa")))
    assert excinfo.value.code == "speaker_audio_missing"
    assert "Grandpa" in str(excinfo.value) and "missing" in str(excinfo.value)
    assert standin.calls.add_zero_shot_spk == [] and standin.calls.inference == []
    list(engine.stream(SENTENCE, make_voice()))  # the lock was released
    assert len(standin.calls.inference) == 1


def test_prompt_that_upstream_refuses_is_speaker_audio_invalid(model_dir, make_voice):
    engine = engine_for(model_dir)
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE, make_voice(rate=8000)))
    assert excinfo.value.code == "speaker_audio_invalid"


# --- no speaker: default prompt -----------------------------------------------------------------------
def test_no_speaker_and_no_default_prompt(model_dir):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE))
    assert excinfo.value.code == "no_speaker"
    assert "COSYVOICE_DEFAULT_PROMPT_WAV" in str(excinfo.value)
    assert engine.voice_info(None).clones is False


def test_default_prompt_from_settings(settings, model_dir, tmp_path, wav_bytes):
    default_wav = tmp_path / "default.wav"
    default_wav.write_bytes(wav_bytes(3.0, 24000))
    settings.COSYVOICE_MODEL_DIR = str(model_dir)
    settings.COSYVOICE_DEFAULT_PROMPT_WAV = str(default_wav)
    settings.COSYVOICE_DEFAULT_PROMPT_TEXT = "Hello, this is the default voice of the mirror."
    standin = CosyVoice2StandIn.fresh()
    engine = CosyVoice2Engine.from_settings(cosyvoice_cls=standin, cuda_available=no_cuda)

    assert list(engine.stream(SENTENCE)) and list(engine.stream(SENTENCE))
    (added,) = standin.calls.add_zero_shot_spk
    assert added["zero_shot_spk_id"].startswith("mm-default-")
    assert added["prompt"] == str(default_wav.resolve())
    assert added["prompt_text"] == settings.COSYVOICE_DEFAULT_PROMPT_TEXT
    assert engine.default_voice_name() == "default prompt (default)"


def test_default_prompt_without_transcript(model_dir, tmp_path, wav_bytes):
    default_wav = tmp_path / "default.wav"
    default_wav.write_bytes(wav_bytes(1.0, 24000))
    engine = engine_for(model_dir, default_prompt_wav=str(default_wav))
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE))
    assert excinfo.value.code == "no_speaker" and "COSYVOICE_DEFAULT_PROMPT_TEXT" in str(excinfo.value)
