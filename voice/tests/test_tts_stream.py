"""A turn's synthesis stream (voice.jobs.stream): one job fed sentence by sentence, on both backends:
threads of this process (embedded default) and a real Celery worker (services), real engines where
the sound matters. Waiting is on conditions (a message, an event); the timeouts tested are the
settings under test, made short."""

import asyncio
import itertools
import json
import os
import signal
import threading
import time
import uuid

import pytest

from devtools.localprocs import child_env, start_worker, stop_process, wait_for_worker
from voice import jobs
from voice.jobs import backends, messages, runners
from voice.tts import registry

from .test_tts import FakeEngine, rms

TIMEOUT = 60
SENTENCES = ("Good morning, and welcome back.", "The weather today is mild and clear.", "Bring a jacket tonight.")


@pytest.fixture(params=["in_process", "via_worker"])
def backend(request, settings):
    """Both backends; the worker one where the services run."""
    if request.param == "via_worker":
        if settings.CELERY_TASK_ALWAYS_EAGER:
            pytest.skip("needs MariaDB/MySQL, Redis and Celery (./dev test starts them)")
        request.getfixturevalue("celery_worker_process")
    settings.VOICE_JOBS_IN_PROCESS = request.param == "in_process"
    return request.param


async def heard(listener) -> list[dict]:
    return [message async for message in listener]


def chunks_of(sentence_messages: list[dict]) -> list[dict]:
    return [m for m in sentence_messages if m["type"] == messages.TTS_CHUNK]


# -- both backends, real engines -----------------------------------------------------------------
async def test_a_streams_sentences_are_spoken_in_order_by_one_job(backend, piper_default):
    stream = jobs.SynthesisStream()
    stream.open()
    listeners = [stream.speak(text) for text in SENTENCES]
    stream.close()
    per_sentence = await asyncio.wait_for(asyncio.gather(*(heard(listener) for listener in listeners)), TIMEOUT)
    await asyncio.wait_for(stream.wait_closed(), TIMEOUT)

    assert stream.jobs_started == 1
    assert len({m["job_id"] for sentence in per_sentence for m in sentence}) == 1
    produced = []
    for index, sentence in enumerate(per_sentence):
        chunks = chunks_of(sentence)
        assert sentence[-1]["type"] == messages.TTS_DONE and sentence[-1]["chunks"] == len(chunks) > 0
        assert [m["type"] for m in sentence[:-1]] == [messages.TTS_CHUNK] * len(chunks)
        assert [c["seq"] for c in chunks] == list(range(len(chunks)))  # each sentence counts from 0
        assert {c["sentence"] for c in chunks} == {sentence[-1]["sentence"]} == {index}
        assert chunks[0]["engine"] == "piper" and "started" in chunks[0]
        assert rms(b"".join(c["pcm"] for c in chunks)) > 1000
        produced.append((chunks[0]["produced"], chunks[-1]["produced"]))
    # One after another, as written: a sentence's audio is made after the one before it.
    assert all(earlier[1] <= later[0] for earlier, later in itertools.pairwise(produced))


async def test_a_mixed_language_reply_takes_two_engines_in_one_stream(backend, settings, monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "_engines", {})
    monkeypatch.setattr(registry, "_failures", {})
    settings.VOICE_TTS_ENGINES = ["piper", "espeak-ng"]
    settings.PIPER_VOICES = {"zh": "zh_CN-huayan-medium", "en": "en_US-joe-medium"}
    settings.MODELS_DIR = tmp_path / "no-models"  # no Mandarin Piper voice: espeak-ng speaks Chinese
    stream = jobs.SynthesisStream(language="zh")
    listeners = [stream.speak(text) for text in ("今天天气很好。", "The weather is lovely today.", "我们走吧。")]
    stream.close()
    per_sentence = await asyncio.wait_for(asyncio.gather(*(heard(listener) for listener in listeners)), TIMEOUT)

    first_chunks = [chunks_of(sentence)[0] for sentence in per_sentence]
    assert [(c["engine"], c["language"]) for c in first_chunks] == [
        ("espeak-ng", "zh"),
        ("piper", "en"),
        ("espeak-ng", "zh"),
    ]
    assert [c["sample_rate"] for c in first_chunks] == [22050, 22050, 22050]
    assert stream.jobs_started == 1


async def test_a_stream_nobody_can_start_fails_each_sentence_as_unavailable(settings, monkeypatch):
    from kombu.exceptions import OperationalError

    from voice.jobs.tasks import tts_stream

    settings.VOICE_JOBS_IN_PROCESS = False

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6380. Connection refused.")

    monkeypatch.setattr(tts_stream, "apply_async", refuse)
    stream = jobs.SynthesisStream()
    first, second = stream.speak("Hello."), stream.speak("Again.")
    for listener in (first, second):
        assert [(m["type"], m["code"]) for m in await heard(listener)] == [(messages.TTS_ERROR, "voice_unavailable")]


# -- bounds: idle, age, a stalled job ------------------------------------------------------------
async def test_an_idle_stream_is_closed_and_the_next_sentence_opens_another(in_process, settings, piper_default):
    settings.VOICE_TTS_STREAM_IDLE_SECONDS = 0  # closed as soon as it owes nothing
    stream = jobs.SynthesisStream()
    assert (await heard(stream.speak("One.")))[-1]["type"] == messages.TTS_DONE
    await asyncio.wait_for(stream.wait_closed(), TIMEOUT)  # the worker said closed: its thread is free
    assert (await heard(stream.speak("Two.")))[-1]["type"] == messages.TTS_DONE
    assert stream.jobs_started == 2


async def test_a_stream_older_than_its_limit_is_replaced_at_the_next_sentence(in_process, settings, piper_default):
    settings.VOICE_TTS_STREAM_MAX_SECONDS = 0
    stream = jobs.SynthesisStream()
    listeners = [stream.speak(text) for text in SENTENCES]
    stream.close()
    per_sentence = await asyncio.wait_for(asyncio.gather(*(heard(listener) for listener in listeners)), TIMEOUT)
    assert [sentence[-1]["type"] for sentence in per_sentence] == [messages.TTS_DONE] * 3
    assert stream.jobs_started == 3
    assert len({sentence[-1]["job_id"] for sentence in per_sentence}) == 3


class BlockingEngine(FakeEngine):
    """Yields one piece, then waits for `release` (a stalled engine, or one still speaking)."""

    def __init__(self):
        super().__init__([b"\1\0" * 2205])
        self.release, self.stopped = threading.Event(), threading.Event()

    def stream(self, text, voice=None, language=None):
        try:
            yield self.pieces[0]
            self.release.wait(TIMEOUT)
            yield self.pieces[0]
        finally:
            self.stopped.set()


@pytest.fixture
def blocking_engine(monkeypatch):
    engine = BlockingEngine()
    monkeypatch.setitem(registry._engines, "default", engine)
    yield engine
    engine.release.set()


async def test_a_stalled_stream_fails_every_waiting_sentence(in_process, settings, blocking_engine):
    settings.VOICE_JOB_IDLE_TIMEOUT = 0.5  # the bound under test
    stream = jobs.SynthesisStream()
    first, second = stream.speak("Stuck."), stream.speak("Waiting.")
    first_messages = await asyncio.wait_for(heard(first), TIMEOUT)
    assert [m["type"] for m in first_messages] == [messages.TTS_CHUNK, messages.TTS_ERROR]
    assert first_messages[-1]["code"] == "voice_worker_timeout"
    assert [(m["type"], m["code"]) for m in await heard(second)] == [(messages.TTS_ERROR, "voice_worker_timeout")]
    await stream.cancel()  # the requester gives up: the job, once its engine answers, stops without a word
    blocking_engine.release.set()
    assert await asyncio.to_thread(blocking_engine.stopped.wait, TIMEOUT)


async def test_cancel_stops_the_job_and_its_listeners_hear_nothing_more(in_process, blocking_engine):
    stream = jobs.SynthesisStream()
    listener = stream.speak("Speaking on and on.")
    first = await asyncio.wait_for(anext(listener), TIMEOUT)
    assert first["type"] == messages.TTS_CHUNK
    await stream.cancel()
    blocking_engine.release.set()  # the engine's next piece comes; the job must stop there, not send it
    assert await asyncio.to_thread(blocking_engine.stopped.wait, TIMEOUT)
    stream_job = stream._jobs[0]
    assert stream_job.waiting == {} and stream_job.reader.done()
    assert [m["type"] async for m in stream.speak("After.")] == [messages.TTS_ERROR]  # a cancelled stream says no


# -- the worker's side, on its own ---------------------------------------------------------------
def run_stream(items, **kwargs) -> list[dict]:
    """tts_stream_run on this thread, its inbox fed `items` (then its end) beforehand."""
    inbox = backends.current().text
    job_id = f"stream-{uuid.uuid4().hex}"
    inbox.open(job_id)
    for item in items:
        asyncio.run(inbox.put(job_id, json.dumps(item).encode()))
    asyncio.run(inbox.put(job_id, b""))
    sent: list[dict] = []
    runners.tts_stream_run(send=sent.append, job_id=job_id, **kwargs)
    return sent


def test_the_worker_tags_each_sentence_and_ends_with_closed(in_process, monkeypatch):
    monkeypatch.setitem(registry._engines, "default", FakeEngine([b"\1\0" * 100, b"\2\0" * 100]))
    sent = run_stream([{"sentence": 7, "text": "One."}, {"sentence": 8, "text": "Two."}])
    assert [(m["type"], m.get("sentence")) for m in sent] == [
        (messages.TTS_OPENED, None),
        (messages.TTS_CHUNK, 7),
        (messages.TTS_CHUNK, 7),
        (messages.TTS_SENTENCE_DONE, 7),
        (messages.TTS_CHUNK, 8),
        (messages.TTS_CHUNK, 8),
        (messages.TTS_SENTENCE_DONE, 8),
        (messages.TTS_CLOSED, None),
    ]


def test_an_error_ends_the_stream_naming_its_sentence(in_process, settings, monkeypatch):
    monkeypatch.setitem(registry._engines, "default", FakeEngine([b"\1\0" * 100]))
    settings.TTS_MAX_CHARS = 10
    sent = run_stream([{"sentence": 0, "text": "Fine."}, {"sentence": 1, "text": "Far too long for it."}])
    assert [(m["type"], m.get("sentence")) for m in sent][-1] == (messages.TTS_ERROR, 1)
    assert sent[-1]["code"] == "tts_text_too_long"


def test_the_worker_gives_up_a_stream_nobody_feeds(in_process, settings):
    settings.VOICE_TTS_STREAM_IDLE_TIMEOUT = 0.05  # the bound under test
    job_id = f"stream-{uuid.uuid4().hex}"
    backends.current().text.open(job_id)
    sent: list[dict] = []
    runners.tts_stream_run(send=sent.append, job_id=job_id)
    assert [m["type"] for m in sent] == [messages.TTS_OPENED]  # no one to tell: it just ends


# -- services: a worker that dies mid-stream -----------------------------------------------------
@pytest.mark.services_only
async def test_a_worker_killed_mid_stream_is_noticed(via_worker, settings, monkeypatch, tmp_path):
    from magicmirror.celery import app
    from voice.jobs.tasks import tts_stream

    queue = f"voice-test-stream-{uuid.uuid4().hex[:8]}"
    name = f"stream-{uuid.uuid4().hex[:8]}@localhost"
    env = child_env(VOICE_PRELOAD="", VOICE_TTS_ENGINES="silence")
    process = start_worker(env, name, [queue], concurrency=2, stdout=(tmp_path / "worker.log").open("wb"))
    original = tts_stream.apply_async
    monkeypatch.setattr(tts_stream, "apply_async", lambda *a, **kw: original(*a, queue=queue, **kw))
    settings.VOICE_JOB_IDLE_TIMEOUT = 1.0  # the bound under test (this side's)
    try:
        wait_for_worker(app, name, process, timeout=180)
        stream = jobs.SynthesisStream()
        assert (await asyncio.wait_for(heard(stream.speak("Alive.")), TIMEOUT))[-1]["type"] == messages.TTS_DONE
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        started = time.monotonic()
        after = await asyncio.wait_for(heard(stream.speak("Anyone there?")), TIMEOUT)
        assert [(m["type"], m["code"]) for m in after] == [(messages.TTS_ERROR, "voice_worker_timeout")]
        assert time.monotonic() - started < 10
    finally:
        stop_process(process)
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
