"""Picks the TTS engine: the configured chain (default: CosyVoice2, then Piper, then espeak-ng)."""

import logging
import threading

from django.conf import settings

from .base import TTSEngine, TTSError

logger = logging.getLogger(__name__)

_engines: dict[str, TTSEngine] = {}
_lock = threading.Lock()


def _build(name: str) -> TTSEngine:
    if name == "cosyvoice2":
        from .cosyvoice2 import CosyVoice2Engine

        return CosyVoice2Engine.from_settings()
    if name == "piper":
        from .piper import PiperEngine

        return PiperEngine(settings.PIPER_VOICE_PATH or None)
    if name in ("espeak", "espeak-ng"):
        from .espeak import EspeakEngine

        return EspeakEngine(settings.ESPEAK_VOICE)
    raise TTSError(f"Unknown TTS engine {name!r}.", code="tts_engine_unknown")


def get_tts_engine(name: str | None = None) -> TTSEngine:
    """The named engine, or the first of VOICE_TTS_ENGINES that loads. Loaded once per process."""
    if not name and "default" in _engines:
        return _engines["default"]
    names = [name] if name else list(settings.VOICE_TTS_ENGINES)
    errors = []
    for candidate in names:
        key = "espeak-ng" if candidate == "espeak" else candidate
        if key in _engines:
            return _engines[key]
        with _lock:
            if key in _engines:
                return _engines[key]
            try:
                engine = _build(key)
            except TTSError as exc:
                errors.append(f"{key}: {exc}")
                logger.info("TTS engine %s unavailable: %s", key, exc)
                continue
            _engines[key] = engine
            if not name:
                _engines["default"] = engine
            logger.info("TTS engine in use: %s (%s)", engine.name, engine.default_voice_name())
            return engine
    raise TTSError("No TTS engine is available: " + "; ".join(errors), code="tts_engine_missing")
