"""Speech recognition engines. `get_asr_engine()` returns this process's engine (one model each)."""

from .base import ASREngine, ASRError, ASRStream
from .registry import get_asr_engine

__all__ = ["ASREngine", "ASRError", "ASRStream", "get_asr_engine"]
