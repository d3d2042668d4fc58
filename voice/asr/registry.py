import threading

from django.conf import settings
from django.utils.module_loading import import_string

from .base import ASREngine

ENGINES = {"vosk": "voice.asr.vosk.VoskEngine"}

_engine: ASREngine | None = None
_lock = threading.Lock()


def build_asr_engine(name: str | None = None) -> ASREngine:
    name = name or settings.VOICE_ASR_ENGINE
    cls = import_string(ENGINES[name])
    # VOSK_DITHER: the noise added before feature extraction, deterministic (see voice/asr/vosk.py).
    return cls(
        settings.VOSK_MODEL_PATH,
        pool_size=settings.VOSK_RECOGNIZER_POOL,
        max_grammar_recognizers=settings.VOSK_GRAMMAR_RECOGNIZERS,
        dither=getattr(settings, "VOSK_DITHER", 1.0),
    )


def get_asr_engine() -> ASREngine:
    """This process's ASR engine, loaded once (one model per worker process)."""
    global _engine
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = build_asr_engine()
    return _engine
