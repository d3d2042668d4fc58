"""Which memories go into a request: all of them while they fit the budget, else the most relevant
to the recent messages, then the most recently confirmed.

Relevance is the overlap of terms: character bigrams of Chinese (and Japanese, Korean) text, which
needs no word segmenter and matches "上海" in "女儿在上海读大学", plus lower-cased words of other
scripts. Pure functions, no database: a user's memories are a few hundred at most; their terms are
kept per text (`memory_terms`), so scoring 200 of them takes about a millisecond, and the first
time about 4 ms (`manage.py benchmark --memory`, devtools/benchmarks/memory.py).
"""

import functools
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_RUNS = re.compile(rf"([{_CJK}]+)|([^\W_]+)", re.UNICODE)  # (a CJK run, "") or ("", a word)
RECENCY_HALF_LIFE_DAYS = 30.0
RECENCY_WEIGHT = 0.2  # a fresh memory of no relevance still beats an old one of none


def terms(text: str) -> set[str]:
    """Character bigrams of CJK runs (a lone character stands for itself), lower-cased words otherwise."""
    found: set[str] = set()
    for run, word in _RUNS.findall(text.lower()):
        if len(run) > 1:
            found.update(map(str.__add__, run, run[1:]))  # each character with the next
        else:
            found.add(run or word)
    return found


@functools.lru_cache(maxsize=16384)
def memory_terms(text: str) -> frozenset[str]:
    """A memory's terms, kept: the same memories are scored on every turn of their user."""
    return frozenset(terms(text))


@dataclass(frozen=True)
class Candidate:
    id: int
    text: str
    confirmed_at: datetime


def relevance(memory_terms: frozenset[str] | set[str], context_terms: set[str]) -> float:
    """The share of the memory's terms the context mentions (0..1)."""
    if not memory_terms:
        return 0.0
    return len(memory_terms & context_terms) / len(memory_terms)


def recall(memories: Sequence[Candidate], recent: Iterable[str], *, budget: int, now: datetime) -> list[Candidate]:
    """The memories to send, in the order they were given (oldest first), within `budget` characters
    (each memory counts its text plus one for its line break)."""
    if sum(len(m.text) + 1 for m in memories) <= budget:
        return list(memories)
    context = terms(" ".join(recent))

    def score(memory: Candidate) -> float:
        age_days = max((now - memory.confirmed_at).total_seconds(), 0.0) / 86400
        recency = math.exp(-age_days * math.log(2) / RECENCY_HALF_LIFE_DAYS)
        return relevance(memory_terms(memory.text), context) + RECENCY_WEIGHT * recency

    chosen: set[int] = set()
    used = 0
    for memory in sorted(memories, key=score, reverse=True):
        cost = len(memory.text) + 1
        if used + cost <= budget:
            chosen.add(memory.id)
            used += cost
    return [m for m in memories if m.id in chosen]
