"""Picks the TTS engine: the configured chain (default: CosyVoice2, then Piper, then espeak-ng).

Each sentence goes to the first engine of the chain that loads and speaks its language
(`engine_for`); `get_tts_engine()` without a language is the first that loads (warm-up, status).
"""

import logging
import threading
from collections.abc import Iterator

from django.conf import settings

from .base import TTSEngine, TTSError, language_code

logger = logging.getLogger(__name__)

ALIASES = {"espeak": "espeak-ng"}

_engines: dict[str, TTSEngine] = {}
_failures: dict[str, TTSError] = {}  # engines that could not load in this process, with why
_lock = threading.Lock()


def canonical_name(name: str) -> str:
    name = (name or "").strip().lower()
    return ALIASES.get(name, name)


def _build(name: str) -> TTSEngine:
    if name == "cosyvoice2":
        from .cosyvoice2 import CosyVoice2Engine

        return CosyVoice2Engine.from_settings()
    if name == "piper":
        from .piper import PiperEngine

        return PiperEngine(settings.PIPER_VOICES, legacy_path=settings.PIPER_VOICE_PATH)
    if name == "espeak-ng":
        from .espeak import EspeakEngine

        return EspeakEngine(settings.ESPEAK_VOICES)
    if name == "silence":
        from .silence import SilenceEngine

        return SilenceEngine()
    raise TTSError(f"Unknown TTS engine {name!r}.", code="tts_engine_unknown")


def _load(key: str) -> TTSEngine:
    """The engine `key`, built once; a failure is remembered so a broken engine is not retried per call."""
    if key in _engines:
        return _engines[key]
    with _lock:
        if key in _engines:
            return _engines[key]
        if key in _failures:
            raise _failures[key]
        try:
            engine = _build(key)
        except TTSError as exc:
            error = exc
        except ImportError as exc:  # an optional engine's code or dependencies are not installed
            error = TTSError(f"{key} is not installed ({exc}).", code="tts_engine_missing")
        except Exception as exc:  # a corrupt model file, a CUDA error...: the next engine may still work
            logger.exception("TTS engine %s failed to load", key)
            error = TTSError(f"{key} failed to load: {exc}", code="tts_engine_failed")
        else:
            _engines[key] = engine
            logger.info("TTS engine loaded: %s (%s)", engine.name, engine.default_voice_name())
            return engine
        _failures[key] = error
        raise error


def _loaded_chain(errors: list[str]) -> Iterator[TTSEngine]:
    """Each engine of VOICE_TTS_ENGINES that loads, in order; why the others do not goes to `errors`."""
    for candidate in settings.VOICE_TTS_ENGINES:
        key = canonical_name(candidate)
        if not key:
            continue
        try:
            engine = _load(key)
        except TTSError as exc:
            errors.append(f"{key}: {exc}")
            logger.info("TTS engine %s unavailable: %s", key, exc)
            continue
        yield engine


def _none_available(errors: list[str]) -> TTSError:
    return TTSError(
        "No TTS engine is available: " + ("; ".join(errors) or "none configured."), code="tts_engine_missing"
    )


def get_tts_engine(name: str | None = None) -> TTSEngine:
    """The named engine, or the first of VOICE_TTS_ENGINES that loads. Loaded once per process.

    A named engine that cannot load raises its own error (code `tts_engine_unknown`,
    `tts_engine_missing` or `tts_engine_failed`); the chain raises `tts_engine_missing` when none loads.
    """
    if name:
        return _load(canonical_name(name))
    default = _engines.get("default")
    if default is not None:
        return default
    errors: list[str] = []
    for engine in _loaded_chain(errors):
        _engines["default"] = engine
        return engine
    raise _none_available(errors)


def engine_for(language: str, name: str | None = None) -> TTSEngine | None:
    """The engine that speaks `language`: the named one, or the first of VOICE_TTS_ENGINES that loads
    and speaks it. None when none does (the sentence is shown, not spoken by a wrong-language voice).

    Raises TTSError when the named engine, or every engine of the chain, cannot load at all.
    """
    if name:
        engine = _load(canonical_name(name))
        return engine if engine.speaks(language) else None
    default = _engines.get("default")  # the chain's first engine, once known (or one a test pins)
    if default is not None and default.speaks(language):
        return default
    errors: list[str] = []
    loaded = default is not None
    for engine in _loaded_chain(errors):
        loaded = True
        if engine.speaks(language):
            return engine
    if not loaded:
        raise _none_available(errors)
    return None


def configured_languages() -> list[str]:
    """The languages this site expects to speak: its interface languages and its recognition languages."""
    codes = [language_code(code) for code, _name in settings.LANGUAGES] + [
        language_code(code) for code in settings.VOSK_MODELS
    ]
    return list(dict.fromkeys(code for code in codes if code))


def mark_failed(engine: TTSEngine, error: Exception) -> None:
    """An engine that loaded but then failed (e.g. CosyVoice2's lazy model load at warm-up): drop
    it, so the chain goes on to the next engine for this process."""
    with _lock:
        for key, loaded in list(_engines.items()):
            if loaded is engine:
                del _engines[key]
        key = canonical_name(engine.name)
        _failures[key] = (
            error
            if isinstance(error, TTSError)
            else TTSError(f"{key} failed to load: {error}", code="tts_engine_failed")
        )


def reset() -> None:
    """Forget loaded engines and failures (tests; a worker would rather restart)."""
    with _lock:
        _engines.clear()
        _failures.clear()
