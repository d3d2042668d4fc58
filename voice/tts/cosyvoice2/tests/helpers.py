"""What the CosyVoice2 adapter's tests share (the stand-in is voice/tests/cosyvoice_standin.py)."""

import numpy as np

from voice.tests.cosyvoice_standin import SAMPLES_PER_TOKEN, CosyVoice2StandIn
from voice.tts.cosyvoice2 import CosyVoice2Engine

SENTENCE = "Hello there, this is a test."  # one sentence: 112 stand-in tokens, three streamed chunks
FIRST_HOP_SAMPLES = 25 * SAMPLES_PER_TOKEN


def no_cuda():
    return False


def with_cuda():
    return True


def engine_for(model_dir, standin=None, **kwargs):
    kwargs.setdefault("cuda_available", no_cuda)
    return CosyVoice2Engine(model_dir, cosyvoice_cls=standin or CosyVoice2StandIn.fresh(), **kwargs)


def pcm_of(chunk) -> bytes:
    return np.rint(np.clip(np.asarray(chunk, dtype=np.float32).reshape(-1), -1, 1) * 32767).astype("<i2").tobytes()
