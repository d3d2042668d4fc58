"""The warm recogniser pool against a hostile phrase-list client (the real Vosk model).

Phrase lists come from users: one client can cycle through any number of distinct lists. That must
not cost anyone else: the plain recognisers stay warm (a new one is ~10x slower on its first
utterance) and the grammar recognisers kept for the lists stay within a fixed number (each holds up
to a few MB once used).
"""

import functools
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings

from devtools import samples
from voice.asr.base import MAX_PHRASE_CHARS, MAX_PHRASES, ASRError
from voice.asr.registry import get_asr_engine
from voice.audio import decode_audio

CHUNK = 3200  # 100 ms


@functools.cache
def pcm(name: str) -> bytes:
    return decode_audio(samples.path(name).read_bytes(), sample_rate=16000).pcm


@pytest.fixture
def engine():
    return get_asr_engine()  # the process's engine, as the jobs use it


def decode(stream, audio: bytes) -> str:
    for start in range(0, len(audio), CHUNK):
        stream.accept(audio[start : start + CHUNK])
    return stream.finish()


def grammar_recognizers(engine) -> int:
    return sum(len(pool) for key, pool in engine._pool.items() if key is not None)


def hostile_lists(count: int):
    """Distinct phrase lists (a vocabulary word and a different number each: distinct grammars)."""
    for i in range(count):
        yield ["안녕하세요", f"말{i}", "오늘"]


def test_cycling_phrase_lists_leaves_plain_recognition_warm_and_grammar_memory_bounded(engine):
    assert settings.VOSK_GRAMMAR_RECOGNIZERS < 40  # the bound the engine was built with, below what is cycled
    with engine.open_stream() as plain:
        expected = decode(plain, pcm("hello.wav"))  # this recogniser has decoded speech: warm
        warm = plain._rec
    plain_pool = list(engine._pool[None])
    assert warm in plain_pool

    # The hostile client: many distinct lists, each as pool_size concurrent utterances (several
    # sockets), so that each list would fill a pool of its own.
    audio = pcm("thanks.wav")[:16000]  # half a second of speech (16-bit samples at 16 kHz)
    with ThreadPoolExecutor(max_workers=engine.pool_size) as threads:
        for phrases in hostile_lists(40):
            streams = [engine.open_stream(phrases) for _ in range(engine.pool_size)]
            try:
                list(threads.map(decode, streams, [audio] * len(streams)))
            finally:
                for stream in streams:
                    stream.close()

    assert grammar_recognizers(engine) <= settings.VOSK_GRAMMAR_RECOGNIZERS
    assert sum(1 for key in engine._pool if key is not None) <= engine.max_grammars
    # Another user's plain utterance: the same warm recogniser, and the same transcript as before.
    assert engine._pool[None] == plain_pool
    with engine.open_stream() as other:
        assert other._rec is warm
        assert decode(other, pcm("hello.wav")) == expected


def test_the_most_recent_phrase_lists_keep_their_warm_recognisers(engine):
    lists = list(hostile_lists(settings.VOSK_GRAMMAR_RECOGNIZERS + 5))
    for phrases in lists:
        with engine.open_stream(phrases) as stream:
            decode(stream, pcm("thanks.wav")[:16000])
    kept = [key for key in engine._pool if key is not None]
    assert kept and len(kept) <= settings.VOSK_GRAMMAR_RECOGNIZERS
    # The newest lists are the ones kept, in the order they were last used: the oldest went first.
    assert kept == [json.dumps(phrases, ensure_ascii=False) for phrases in lists[-len(kept) :]]
    with engine.open_stream(lists[-2]) as stream:
        second_newest = stream._rec
    with engine.open_stream(lists[-2]) as again:
        assert again._rec is second_newest  # reused, not rebuilt
    assert grammar_recognizers(engine) <= settings.VOSK_GRAMMAR_RECOGNIZERS


@pytest.mark.parametrize(
    "phrases",
    [[f"말{i}" for i in range(MAX_PHRASES + 1)], ["말" * (MAX_PHRASE_CHARS + 1)]],
    ids=["too-many", "too-long"],
)
def test_the_engine_refuses_phrase_lists_over_the_caps(engine, phrases):
    with pytest.raises(ASRError) as caught:
        engine.open_stream(phrases)
    assert caught.value.code == "invalid_phrases"
    assert "phrases must" in str(caught.value)


def test_phrase_lists_at_the_caps_are_accepted(engine):
    phrases = [f"{i:03d}" + "말" * (MAX_PHRASE_CHARS - 3) for i in range(MAX_PHRASES)]
    with engine.open_stream([" " + p + " " for p in phrases]) as stream:  # stripped: within the caps
        assert decode(stream, pcm("thanks.wav")[:16000]) == ""  # no word of the list is in the vocabulary
