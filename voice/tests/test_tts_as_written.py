"""A sentence spoken as it is written (issue 18): a turn's stream feeds the sentence the LLM is writing
to an engine that reads text that way (CosyVoice2 without vLLM: upstream's bi-streaming, here through
the stand-in of upstream's class, which takes a generator `tts_text` as upstream does); any other engine
gets the whole sentence, as before. Waiting is on conditions; the timeouts are bounds only."""

import asyncio
import threading
from collections.abc import Generator

import pytest

from voice import jobs
from voice.jobs import messages, runners
from voice.tests.cosyvoice_standin import IGNORE_STOPPED_LLM_JOB
from voice.tts import TTSError, registry

from .test_tts import FakeEngine
from .test_tts_stream import backend, chunks_of, heard, run_stream  # noqa: F401 - `backend` is a fixture

pytestmark = pytest.mark.filterwarnings(IGNORE_STOPPED_LLM_JOB)

TIMEOUT = 60
PIECES = ["Hello the", "re, this is ", "a test", " of speaking", " as it is written."]
SENTENCE = "".join(PIECES)


def written(pieces, key=0) -> list[dict]:
    """The stream items of one sentence fed as it is written: each piece with `more`, the last without."""
    items = [{"sentence": key, "text": piece, "more": True} for piece in pieces[:-1]]
    return [*items, {"sentence": key, "text": pieces[-1]}]


def by_sentence(sent: list[dict]) -> dict:
    out: dict = {}
    for message in sent:
        if "sentence" in message:
            out.setdefault(message["sentence"], []).append(message)
    return out


# -- the worker's side ---------------------------------------------------------------------------
def test_the_worker_reads_a_sentence_as_it_is_written(in_process, cosyvoice_default):
    _engine, standin = cosyvoice_default
    sent = run_stream([*written(PIECES), {"sentence": 1, "text": "And a whole one."}])

    assert sent[0]["type"] == messages.TTS_OPENED and sent[0]["takes_text"] is True
    assert sent[-1]["type"] == messages.TTS_CLOSED
    sentences = by_sentence(sent)
    first, second = sentences[0], sentences[1]
    assert first[-1]["type"] == messages.TTS_SENTENCE_DONE and first[-1]["as_written"] is True
    assert first[-1]["engine"] == "cosyvoice2" and first[-1]["chunks"] == len(chunks_of(first)) > 1
    assert "as_written" not in second[-1] and second[-1]["chunks"] > 0  # a whole sentence, as before
    # One upstream call for the written sentence, its text a generator (bi-streaming); a str for the other.
    written_call, whole_call = standin.calls.inference
    assert isinstance(written_call["tts_text"], Generator) and written_call["stream"] is True
    assert isinstance(whole_call["tts_text"], str)
    assert "".join(taken["piece"] for taken in standin.calls.text_pieces) == SENTENCE


def test_an_engine_that_does_not_read_as_written_gets_the_whole_sentence(in_process, monkeypatch):
    spoken: list[str] = []

    class Recording(FakeEngine):
        def stream(self, text, voice=None, language=None):
            spoken.append(text)
            yield from super().stream(text, voice, language)

    monkeypatch.setitem(registry._engines, "default", Recording([b"\1\0" * 100]))
    sent = run_stream(written(PIECES))
    assert sent[0] == {**sent[0], "type": messages.TTS_OPENED, "takes_text": False}
    assert spoken == [SENTENCE]  # once, whole, after its last piece
    assert sent[-2]["type"] == messages.TTS_SENTENCE_DONE and sent[-2]["as_written"] is False


def test_a_written_sentence_with_nothing_to_say_says_nothing(in_process, cosyvoice_default):
    _engine, standin = cosyvoice_default
    sent = run_stream([*written(["  ", " "]), {"sentence": 1, "text": "Next."}])
    nothing = by_sentence(sent)[0]
    assert [m["type"] for m in nothing] == [messages.TTS_SENTENCE_DONE] and nothing[0]["chunks"] == 0
    assert len(standin.calls.inference) == 1  # only "Next."


def test_pieces_are_read_for_the_ear_whole_word_by_whole_word():
    pieces = ["See **bo", "ld** news at https://exa", "mple.com/a-b and ", "tell me."]
    said = list(runners.ear_pieces(pieces, "en"))
    assert "".join(said) == "See bold news at a link and tell me."
    assert all(piece.strip() for piece in said)
    # Chinese: between two Chinese characters is a whole-word cut.
    assert "".join(runners.ear_pieces(["今天**天", "气**很好，", "我们走吧。"], "zh")) == "今天天气很好，我们走吧。"


def test_a_written_sentence_longer_than_the_limit_fails(settings):
    settings.TTS_MAX_CHARS = 20
    with pytest.raises(TTSError) as raised:
        list(runners.ear_pieces(["Far too long ", "for the limit of ", "twenty characters."], "en"))
    assert raised.value.code == "tts_text_too_long"


def test_pieces_of_another_sentence_are_refused(in_process, cosyvoice_default):
    items = [{"sentence": 0, "text": "Hello there, ", "more": True}, {"sentence": 1, "text": "Wrong."}]
    sent = run_stream(items)
    assert sent[-1]["type"] == messages.TTS_ERROR and sent[-1]["sentence"] == 0


# -- the requester's side, both backends -------------------------------------------------------------
async def test_a_sentence_written_into_the_stream_is_spoken_whole(backend, piper_default):  # noqa: F811
    """The worker's engine (Piper) does not read text as it is written: the pieces still make one
    sentence, spoken once it has ended, through the Redis inbox with the worker."""
    stream = jobs.SynthesisStream()
    stream.open()
    assert await asyncio.wait_for(stream.wait_opened(), TIMEOUT)
    assert stream.takes_text is False
    sentence = stream.begin(PIECES[0])
    for piece in PIECES[1:-1]:
        sentence.write(piece)
    sentence.end(PIECES[-1])
    after = stream.speak("And another one.")
    stream.close()
    first, second = await asyncio.wait_for(asyncio.gather(heard(sentence.messages), heard(after)), TIMEOUT)
    await asyncio.wait_for(stream.wait_closed(), TIMEOUT)

    assert first[-1]["type"] == messages.TTS_DONE and first[-1]["as_written"] is False
    assert chunks_of(first) and chunks_of(first)[0]["engine"] == "piper"
    assert second[-1]["type"] == messages.TTS_DONE and chunks_of(second)
    assert stream.jobs_started == 1


async def test_speech_of_a_written_sentence_starts_before_its_end(in_process, cosyvoice_default):
    engine, standin = cosyvoice_default
    stream = jobs.SynthesisStream(language="en")
    stream.open()
    assert await asyncio.wait_for(stream.wait_opened(), TIMEOUT)
    assert stream.takes_text is True
    sentence = stream.begin(PIECES[0])
    for piece in PIECES[1:-1]:
        sentence.write(piece)
    listener = sentence.messages
    first_chunk = await asyncio.wait_for(anext(listener), TIMEOUT)  # before the sentence has ended
    assert first_chunk["type"] == messages.TTS_CHUNK and first_chunk["engine"] == "cosyvoice2"
    sentence.end(PIECES[-1])
    stream.close()
    rest = await asyncio.wait_for(heard(listener), TIMEOUT)
    await asyncio.wait_for(stream.wait_closed(), TIMEOUT)

    assert rest[-1]["type"] == messages.TTS_DONE and rest[-1]["as_written"] is True
    assert [m["seq"] for m in [first_chunk, *chunks_of(rest)]] == list(range(1 + len(chunks_of(rest))))
    taken = standin.calls.text_pieces
    assert "".join(t["piece"] for t in taken) == SENTENCE
    assert taken[-1]["chunks_before"] >= 1  # its last words were read after its first speech
    assert engine.settle(timeout=TIMEOUT) and standin.calls.active == 0


async def test_cancel_mid_sentence_stops_upstream(in_process, cosyvoice_default, monkeypatch):
    """A barge-in while the LLM writes: the worker stops, upstream keeps no request, nothing more is heard."""
    engine, standin = cosyvoice_default
    job_ended = threading.Event()
    run = runners.tts_stream_run

    def watched_run(**kwargs):
        try:
            run(**kwargs)
        finally:
            job_ended.set()

    monkeypatch.setattr(runners, "tts_stream_run", watched_run)
    stream = jobs.SynthesisStream(language="en")
    stream.open()
    assert await asyncio.wait_for(stream.wait_opened(), TIMEOUT)
    sentence = stream.begin(PIECES[0])
    sentence.write(PIECES[1])
    listener = sentence.messages
    assert (await asyncio.wait_for(anext(listener), TIMEOUT))["type"] == messages.TTS_CHUNK
    await stream.cancel()
    sentence.write(PIECES[2])  # written after the cut: dropped
    assert await asyncio.to_thread(job_ended.wait, TIMEOUT)
    for call in standin.calls.inference:
        call["llm_thread"].join(timeout=TIMEOUT)
    assert engine.settle(timeout=TIMEOUT) and standin.calls.active == 0
    inner = engine._model.model
    assert (inner.tts_speech_token_dict, inner.llm_end_dict) == ({}, {})
    assert "".join(t["piece"] for t in standin.calls.text_pieces) == "Hello there, this is"  # nothing after the cut
