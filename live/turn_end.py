"""End of turn in hands-free mode: when has the user finished speaking?

Two rules (TURN_DETECTION):

* ``silence``: VAD_SILENCE_MS of quiet after speech ends the utterance (the VAD alone).
* ``smart_turn``: at each pause of TURN_PAUSE_MS an end-of-turn model (Smart Turn v3.2,
  voice/turn/) hears the utterance's last 8 s and says whether it sounds finished; yes ends the
  utterance there, no lets listening go on until it says yes at a later pause, or until
  TURN_MAX_SILENCE_MS of quiet ends it anyway (the VAD's silence limit is set to that).

The model is blocking (~20-50 ms on one core): it runs in a small thread pool of its own, never on
the event loop, and its answer only counts if the pause it judged is still going on when it comes.
When the model is not installed the silence rule is used, with one warning.
"""

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from magicmirror import metrics

logger = logging.getLogger(__name__)

SMART_TURN = "smart_turn"
SILENCE = "silence"

# Two calls at once at most: one core each at SMART_TURN_THREADS=1; more pauses than that queue briefly.
_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="turn-end")
_missing_logged = False


class EndOfTurnModel(Protocol):
    def probability(self, pcm16k: bytes) -> float:
        """Probability that the speech ending this 16 kHz PCM16 audio is a finished turn (blocking)."""
        ...


def shared_model() -> EndOfTurnModel | None:
    """The process's Smart Turn model, or None (with one warning) when it is not installed."""
    global _missing_logged
    from voice.turn import smart_turn

    try:
        return smart_turn.shared(threads=settings.SMART_TURN_THREADS)
    except smart_turn.ModelMissing as exc:
        if not _missing_logged:
            _missing_logged = True
            logger.warning("End of turn falls back to the silence rule: %s", exc)
        return None


@dataclass(frozen=True)
class TurnEndPolicy:
    """How a hands-free utterance ends; `model` None means the silence rule alone."""

    model: EndOfTurnModel | None
    pause_ms: int
    silence_ms: int  # the VAD's silence that ends an utterance whatever the model says
    threshold: float

    @classmethod
    def from_settings(cls, model: EndOfTurnModel | None = None) -> "TurnEndPolicy":
        if settings.TURN_DETECTION not in (SMART_TURN, SILENCE):
            raise ValueError(f"TURN_DETECTION must be {SMART_TURN!r} or {SILENCE!r}, not {settings.TURN_DETECTION!r}")
        if settings.TURN_DETECTION == SMART_TURN and model is None:
            model = shared_model()
        if settings.TURN_DETECTION == SILENCE or model is None:
            return cls(model=None, pause_ms=settings.TURN_PAUSE_MS, silence_ms=settings.VAD_SILENCE_MS, threshold=1.0)
        return cls(
            model=model,
            pause_ms=settings.TURN_PAUSE_MS,
            silence_ms=settings.TURN_MAX_SILENCE_MS,
            threshold=settings.SMART_TURN_THRESHOLD,
        )

    @property
    def silence_reason(self) -> str:
        """What ended an utterance when the VAD's silence did."""
        return "silence_limit" if self.model is not None else "silence_rule"


async def judge(model: EndOfTurnModel, pcm16k: bytes) -> float:
    """The model's probability for this audio, computed in the pool (the event loop goes on)."""
    started = time.perf_counter()
    probability = await asyncio.get_running_loop().run_in_executor(_executor, model.probability, pcm16k)
    metrics.observe_turn_model(time.perf_counter() - started)
    return probability
