"""Speaking a sentence while its text is written (`stream_text`): upstream's bi-streaming through the stand-in
(voice/tests/cosyvoice_standin.py, which takes a generator `tts_text` as upstream does), the fallbacks
(vLLM, an upstream without it, engines without it) and the chunking and normalising of text_stream.py."""

import threading
from collections.abc import Generator
from contextlib import closing

import pytest

from voice.tests.cosyvoice_standin import (
    IGNORE_STOPPED_LLM_JOB,
    SAMPLES_PER_TOKEN,
    CosyVoice2StandIn,
    StandInLLM,
    StandInModel,
)
from voice.text import word_cut_point as cut_point
from voice.tts import TTSError, get_tts_engine
from voice.tts.cosyvoice2 import engine as engine_module
from voice.tts.cosyvoice2 import stopping
from voice.tts.cosyvoice2.text_stream import TextFeed
from voice.tts.espeak import EspeakEngine
from voice.tts.silence import SilenceEngine

from .helpers import FIRST_HOP_SAMPLES, engine_for, with_cuda

pytestmark = pytest.mark.filterwarnings(IGNORE_STOPPED_LLM_JOB)

# Written by an LLM in pieces that cut words; the stand-in's first hop (28 tokens) needs 10 text characters.
PIECES = ["Hello the", "re, this is ", "a test", " of speaking", " as it is written."]
SENTENCE = "".join(PIECES)
WAIT = 30.0  # seconds, a bound only: every test releases its pieces itself


class Pieces:
    """An LLM writing a sentence: yields its pieces, and waits for `release` before the piece `hold_at`."""

    def __init__(self, pieces=PIECES, hold_at=None, error=None):
        self.pieces, self.hold_at, self.error = list(pieces), hold_at, error
        self.release = threading.Event()
        self.waiting = threading.Event()  # it is waiting for `release`
        self.given = 0

    def __iter__(self):
        for index, piece in enumerate(self.pieces):
            if index == self.hold_at:
                self.waiting.set()
                assert self.release.wait(WAIT), "the test never released its pieces"
            self.given += 1
            yield piece
        if self.error is not None:
            raise self.error


def upstream_idle(engine, standin) -> None:
    """Nothing left of any request: the stops done, every LLM thread ended, no state kept."""
    assert engine.settle(timeout=WAIT)
    for call in standin.calls.inference:
        call["llm_thread"].join(timeout=WAIT)
        assert not call["llm_thread"].is_alive()
    inner = engine._model.model
    assert (inner.tts_speech_token_dict, inner.llm_end_dict, inner.hift_cache_dict) == ({}, {}, {})
    assert standin.calls.active == 0


def text_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "cosyvoice2-text"]


# --- bi-streaming through the stand-in ----------------------------------------------------------------
def test_speech_starts_before_the_last_piece_is_written(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    assert engine.takes_text_stream
    pieces = Pieces(hold_at=len(PIECES) - 1)
    stream = engine.stream_text(pieces, make_voice(), "en")
    first = next(stream)  # the last piece is not written yet: the LLM waits for it
    assert pieces.waiting.is_set() and pieces.given == len(PIECES) - 1
    assert len(first) // 2 == FIRST_HOP_SAMPLES
    pieces.release.set()
    rest = list(stream)
    assert rest
    [call] = standin.calls.inference  # one call for the sentence, its text a generator
    assert isinstance(call["tts_text"], Generator) and call["stream"] is True
    taken = standin.calls.text_pieces  # what upstream's frontend took from the generator, in order
    assert "".join(t["piece"] for t in taken) == SENTENCE
    assert taken[0]["chunks_before"] == 0 and taken[-1]["chunks_before"] >= 1  # the last came after speech
    # Whole words only, each through upstream's text_normalize (which skips a generator itself).
    given = engine._model.frontend.normalized  # every text given to text_normalize, in order
    normalised = [text for text in given[given.index(call["tts_text"]) + 1 :] if text]
    assert normalised == ["Hello ", "there, this is ", "a ", "test of ", "speaking as it is ", "written."]
    assert [t["piece"] for t in taken] == [
        "Hello",
        " there, this is",
        " a",
        " test of",
        " speaking as it is",
        " written.",
    ]
    upstream_idle(engine, standin)


def test_pieces_are_normalised_as_stream_normalises_a_sentence(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    list(engine.stream_text(["Hello   there,", "  this  is a", " test."], make_voice()))
    # The stand-in's text_normalize folds spaces (upstream's spells out numbers too): as stream's text.
    assert "".join(t["piece"] for t in standin.calls.text_pieces) == "Hello there, this is a test."


def test_closing_mid_sentence_leaves_no_request_state_and_no_llm_thread(model_dir, make_voice):
    """A barge-in while the LLM still writes: upstream's LLM thread, waiting for text, stops at once."""
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    pieces = Pieces(hold_at=3)
    voice = make_voice()
    stream = engine.stream_text(pieces, voice)
    assert len(next(stream)) // 2 == FIRST_HOP_SAMPLES
    stream.close()
    assert standin.calls.closed_early == 1
    upstream_idle(engine, standin)  # while the caller's pieces are still held
    assert pieces.given == 3
    pieces.release.set()
    for thread in text_threads():
        thread.join(timeout=WAIT)
    assert not text_threads()
    assert pieces.given == 4  # the piece being written was the last one taken
    # The next sentence straight after: never two requests inside the model at once.
    assert list(engine.stream_text(Pieces(), voice))
    assert standin.calls.max_active == 1
    upstream_idle(engine, standin)


def test_the_callers_error_is_raised_and_upstream_stopped(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    with pytest.raises(ValueError, match="the LLM failed"):
        list(engine.stream_text(Pieces(error=ValueError("the LLM failed")), make_voice()))
    upstream_idle(engine, standin)


def test_blank_pieces_say_nothing(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    assert list(engine.stream_text(["", "  ", "\n"], make_voice())) == []
    assert standin.calls.inference == []


def test_a_decode_that_never_ends_after_the_text_is_capped(model_dir, make_voice, caplog):
    """Upstream's decode after a text generator stops only at an end-of-speech token; a model that never
    writes one (random weights) is stopped at 20 speech tokens per text token, as upstream's whole-text
    inference is, and its speech ends as at a normal end: the request's state gone, no LLM thread left."""
    standin = CosyVoice2StandIn.fresh(endless_final_decode=True)
    engine = engine_for(model_dir, standin)
    limit = stopping.MAX_TOKEN_TEXT_RATIO * len(SENTENCE)  # the stand-in's text tokens are its characters
    chunks = []
    with closing(engine.stream_text(Pieces(), make_voice(), "en")) as stream:
        for chunk in stream:
            chunks.append(chunk)
            assert sum(len(chunk) for chunk in chunks) // 2 <= limit * SAMPLES_PER_TOKEN, "not capped"
    [call] = standin.calls.inference
    assert sum(call["chunk_tokens"]) == limit
    assert sum(len(chunk) for chunk in chunks) // 2 == limit * SAMPLES_PER_TOKEN
    assert "reached its cap" in caplog.text
    upstream_idle(engine, standin)
    # The next sentence starts afresh: its cap is its own.
    assert list(engine.stream_text(["Hi there."], make_voice(), "en"))
    assert sum(standin.calls.inference[-1]["chunk_tokens"]) == stopping.MAX_TOKEN_TEXT_RATIO * len("Hi there.")
    upstream_idle(engine, standin)


def test_a_decode_that_ends_by_itself_is_not_cut(model_dir, make_voice, caplog):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    assert list(engine.stream_text(Pieces(), make_voice(), "en"))
    [call] = standin.calls.inference
    assert 0 < sum(call["chunk_tokens"]) < stopping.MAX_TOKEN_TEXT_RATIO * len(SENTENCE)
    assert "reached its cap" not in caplog.text
    upstream_idle(engine, standin)


def test_the_hop_len_guard_holds_across_generator_calls(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()  # it grows the shared hop length, as upstream does
    engine = engine_for(model_dir, standin)
    voice = make_voice()
    first_chunks = []
    for speak in ("text", "sentence", "text", "text"):
        chunks = list(engine.stream_text(Pieces(), voice) if speak == "text" else engine.stream(SENTENCE, voice))
        assert len(chunks) >= 2
        first_chunks.append(len(chunks[0]) // 2)
    assert [call["hop_len_at_start"] for call in standin.calls.inference] == [25] * 4
    assert max(len(call["chunk_tokens"]) for call in standin.calls.inference) >= 3  # it did grow within calls
    assert first_chunks == [FIRST_HOP_SAMPLES] * 4
    assert engine._model.model.token_hop_len == 25


def test_concurrent_sentences_take_turns(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    results, errors = {}, []

    def speak(speaker_id):
        try:
            results[speaker_id] = list(engine.stream_text(Pieces(), make_voice(speaker_id=speaker_id)))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=speak, args=(i,)) for i in (1, 2, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not errors and len(results) == 3
    assert standin.calls.max_active == 1
    assert {len(chunks[0]) // 2 for chunks in results.values()} == {FIRST_HOP_SAMPLES}
    upstream_idle(engine, standin)


# --- the fallbacks: the sentence first, then per sentence ---------------------------------------------
def test_with_vllm_the_sentence_is_awaited_then_spoken(model_dir, make_voice, monkeypatch):
    monkeypatch.setattr(engine_module, "vllm_available", lambda: True)
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin, load_vllm=True, cuda_available=with_cuda)
    assert engine.options["load_vllm"] is True and not engine.takes_text_stream
    chunks = list(engine.stream_text(Pieces(), make_voice()))
    assert chunks
    assert [call["tts_text"] for call in standin.calls.inference] == [SENTENCE]
    assert standin.calls.text_pieces == [] and standin.calls.llm_errors == {}
    assert hasattr(engine._model.model.llm, "vllm")  # the stand-in loaded "vLLM", as upstream's load_vllm


class OlderLLM(StandInLLM):
    inference_bistream = None  # an upstream copy without bi-streaming


class OlderModel(StandInModel):
    llm_class = OlderLLM


def test_an_upstream_without_bistreaming_gets_the_sentence(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh(model_class=OlderModel)
    engine = engine_for(model_dir, standin)
    assert engine.takes_text_stream  # not known before loading
    assert list(engine.stream_text(Pieces(), make_voice()))
    assert not engine.takes_text_stream  # the loaded model says so
    assert [call["tts_text"] for call in standin.calls.inference] == [SENTENCE]


def test_a_loaded_model_with_vllm_gets_the_sentence(model_dir, make_voice):
    """vLLM found on the model itself (whatever the options say): upstream's llm_job would assert."""
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    engine._ensure_loaded()
    engine._model.model.llm.vllm = object()
    assert not engine.takes_text_stream
    assert list(engine.stream_text(Pieces(), make_voice()))
    assert [call["tts_text"] for call in standin.calls.inference] == [SENTENCE]
    assert standin.calls.llm_errors == {}


@pytest.mark.parametrize("name", ["silence", "espeak", "piper"])
def test_engines_without_text_streams_join_the_pieces(name, monkeypatch):
    if name == "piper":
        try:
            engine = get_tts_engine("piper")
        except TTSError as exc:
            pytest.skip(f"Piper is not set up here: {exc}")
    else:
        engine = SilenceEngine() if name == "silence" else EspeakEngine("en-us")
    assert not engine.takes_text_stream
    texts, stream = [], engine.stream

    def recording(text, voice=None, language=None):
        texts.append(text)
        return stream(text, voice, language)

    monkeypatch.setattr(engine, "stream", recording)
    assert b"".join(engine.stream_text(Pieces(["Hello ", "wor", "ld."]), language="en"))
    assert texts == ["Hello world."]  # once, joined: the whole sentence
    assert list(engine.stream_text(["", " "])) == []
    assert texts == ["Hello world."]


# --- text_stream.py: chunks of whole words, normalised --------------------------------------------------
def chunks_of(pieces, chinese=False, normalise=lambda chunk: chunk.strip()):
    seen = []

    def recording(chunk):
        seen.append(chunk)
        return normalise(chunk)

    feed = TextFeed(pieces, normalise=recording, chinese=chinese)
    assert feed.wait_for_text()
    return list(feed.text()), seen


def test_english_chunks_are_whole_words_with_their_spaces_put_back():
    spelled = {"3": "three", "42": "forty-two"}
    chunks, seen = chunks_of(
        ["I have 4", "2 apples", " and 3", " pears."],
        normalise=lambda c: " ".join(spelled.get(w, w) for w in c.split()),
    )
    assert seen == ["I have ", "42 ", "apples and ", "3 ", "pears."]  # never half a number or a word
    assert "".join(chunks) == "I have forty-two apples and three pears."


def test_chinese_chunks_hold_chinese_and_never_end_in_a_comma():
    chunks, seen = chunks_of(["今天是 20", "24 年，", "我们", "很好。"], chinese=True)
    assert seen == ["今天", "是 2024 年，我", "们很", "好。"]  # the number with Chinese: read in Chinese
    for chunk in seen[:-1]:
        assert "\u4e00" <= chunk[-1] <= "\u9fff"  # ends between two Chinese characters
    assert "".join(chunks) == "今天是 2024 年，我们很好。"


def test_a_sentence_turns_chinese_with_its_first_chinese_character():
    _chunks, seen = chunks_of(["OK ", "我们开", "始"])
    assert seen == ["OK ", "我们", "开", "始"]


def test_a_failing_normaliser_leaves_the_chunk_as_written():
    def failing(chunk):
        raise RuntimeError("wetext broke")

    chunks, _seen = chunks_of(["Hello ", "there."], normalise=failing)
    assert chunks == ["Hello", " there."]


def test_closing_stops_the_text_generator_with_system_exit():
    pieces = Pieces(hold_at=1)
    feed = TextFeed(pieces, normalise=str.strip)
    assert feed.wait_for_text()
    text = feed.text()
    assert next(text) == "Hello"
    feed.close()
    with pytest.raises(SystemExit) as excinfo:
        next(text)
    assert type(excinfo.value) is SystemExit
    pieces.release.set()


def test_the_end_of_the_text_is_told_with_what_upstream_was_given():
    ended = []

    def on_end(text):
        ended.append((text, threading.current_thread()))

    feed = TextFeed(["Hello the", "re, friend."], normalise=str.upper, on_end=on_end)
    given = list(feed.text())
    assert ended == [("".join(given), threading.current_thread())]  # in the thread reading the text
    assert "".join(given) == "HELLO THERE, FRIEND."


def test_a_closed_text_tells_no_end_and_a_failing_hook_ends_the_text_all_the_same():
    ended = []
    pieces = Pieces(hold_at=1)
    feed = TextFeed(pieces, normalise=str.strip, on_end=ended.append)
    text = feed.text()
    assert next(text) == "Hello"
    feed.close()
    with pytest.raises(SystemExit):
        next(text)
    pieces.release.set()
    assert ended == []

    def broken(text):
        raise RuntimeError("no tokenizer")

    assert list(TextFeed(["Hello there."], normalise=str.strip, on_end=broken).text()) == ["Hello", " there."]


def test_cut_point():
    assert cut_point("Hello", chinese=False) == 0
    assert cut_point("Hello there", chinese=False) == len("Hello ")
    assert cut_point("   ", chinese=False) == 0
    assert cut_point("你好", chinese=True) == 1
    assert cut_point("你，好", chinese=True) == 0
