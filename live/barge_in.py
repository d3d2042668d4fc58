"""Barge-in that tells an interruption from a cough (hands-free).

User speech while a reply plays first *pauses* the reply (`reply_paused`: the client pauses its
playback, the server sends no more audio). The pause becomes an interruption when the speech
lasts BARGE_IN_MIN_SPEECH_MS or the recogniser hears BARGE_IN_MIN_WORDS words; otherwise, when
the utterance ends with no words (a cough, a "hm", a door), the reply resumes where it paused
(`reply_resumed`), nothing lost. Words that occur in the reply's own text are its echo leaking
through the microphone (the browser cancels most of it): they do not count, so the server-side
rule does not defeat echo cancellation.
"""

import re
from dataclasses import dataclass

from django.conf import settings

_TAG = re.compile(r"\[[^\]]*\]")  # Vosk's bracketed tokens ([9], [noise]) are no words
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def words_of(text: str) -> list[str]:
    return [w for w in _TAG.sub(" ", text).split() if _NOT_WORD.sub("", w)]


def _squeezed(text: str) -> str:
    return _NOT_WORD.sub("", _TAG.sub("", text)).lower()


def is_echo(heard: str, reply_text: str) -> bool:
    """The words heard all occur, in order and together, in the reply's text (its own sound)."""
    heard_s = _squeezed(heard)
    return bool(heard_s) and heard_s in _squeezed(reply_text)


@dataclass(frozen=True)
class BargeInRule:
    min_speech_ms: int  # 0: any speech interrupts at once (no pause first)
    min_words: int  # 0: words do not count

    @classmethod
    def from_settings(cls) -> "BargeInRule":
        return cls(min_speech_ms=settings.BARGE_IN_MIN_SPEECH_MS, min_words=settings.BARGE_IN_MIN_WORDS)

    @property
    def pauses_first(self) -> bool:
        return self.min_speech_ms > 0

    def long_enough(self, speech_ms: int) -> bool:
        return speech_ms >= self.min_speech_ms

    def words_interrupt(self, heard: str, reply_text: str) -> bool:
        if self.min_words <= 0:
            return False
        return len(words_of(heard)) >= self.min_words and not is_echo(heard, reply_text)
