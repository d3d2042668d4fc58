"""Speech synthesis engines. `get_tts_engine()` returns this process's engine, per the fallback chain."""

from .base import TTSEngine, TTSError, VoiceInfo, VoiceRef
from .registry import get_tts_engine

__all__ = ["TTSEngine", "TTSError", "VoiceInfo", "VoiceRef", "get_tts_engine"]
