"""The ASR interface: 16 kHz mono PCM16 in, partial results while audio flows, a final on demand."""

import re
from abc import ABC, abstractmethod

SAMPLE_RATE = 16000
# Phrase lists (a recogniser grammar), wherever they come from (POST /api/recognize, the voice
# WebSocket's `phrases`, a job reaching an engine): at most this many phrases of at most this many
# characters. They bound the cost of building a grammar and the memory of a recogniser built on one.
MAX_PHRASES = 100
MAX_PHRASE_CHARS = 100

_BRACKETED = re.compile(r"\[[^\]]*\]|<[^>]*>")
# A space between two CJK characters is an artefact of Chinese models (words are space-separated).
_CJK = r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff]"  # kana and CJK ideographs (not Hangul: Korean uses spaces)
_CJK_SPACE = re.compile(rf"(?<={_CJK})\s+(?={_CJK})")


class ASRError(Exception):
    def __init__(self, message, code="asr_error"):
        super().__init__(message)
        self.code = code


def phrases_problem(phrases: list[str]) -> str | None:
    """How a list of phrases exceeds the caps (counted stripped, blanks left out, as the recogniser
    uses them), as the end of a sentence that starts with "phrases " ("must hold at most 100
    phrases."); None when it is within them."""
    phrases = [phrase.strip() for phrase in phrases if phrase.strip()]
    if len(phrases) > MAX_PHRASES:
        return f"must hold at most {MAX_PHRASES} phrases."
    if any(len(phrase) > MAX_PHRASE_CHARS for phrase in phrases):
        return f"must each be at most {MAX_PHRASE_CHARS} characters long."
    return None


def clean_transcript(text: str) -> str:
    """Drop bracketed non-word tokens ([noise], [9], <unk>) and the spaces between CJK characters."""
    text = _BRACKETED.sub(" ", text or "")
    text = " ".join(text.split())
    return _CJK_SPACE.sub("", text)


class ASRStream(ABC):
    """One utterance being recognised. Not thread-safe: feed it from one thread."""

    @abstractmethod
    def accept(self, pcm: bytes) -> str | None:
        """Feed PCM16 audio; returns the new partial transcript when it changed, else None."""

    @abstractmethod
    def finish(self) -> str:
        """The final transcript of everything fed so far; the stream cannot be fed afterwards."""

    @abstractmethod
    def close(self) -> None:
        """Give resources back (a warm recogniser goes back to its pool)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ASREngine(ABC):
    name: str = ""
    sample_rate: int = SAMPLE_RATE
    language: str = ""  # the language its model recognises (set by voice.asr.registry)

    @abstractmethod
    def open_stream(self, phrases: list[str] | None = None) -> ASRStream:
        """A stream for one utterance; `phrases` restricts recognition to those words."""

    def describe(self) -> dict:
        return {"engine": self.name, "sample_rate": self.sample_rate, "language": self.language}

    def transcribe(self, pcm: bytes, phrases: list[str] | None = None, chunk_bytes: int = 8000) -> str:
        """Recognise a whole buffer (streams it through the same path as live audio)."""
        with self.open_stream(phrases) as stream:
            for start in range(0, len(pcm), chunk_bytes):
                stream.accept(pcm[start : start + chunk_bytes])
            return stream.finish()

    def warm_up(self) -> None:
        """Make the first real utterance as fast as later ones."""
        self.transcribe(b"\0\0" * (self.sample_rate // 2))  # half a second of silence
