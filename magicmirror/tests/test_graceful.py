"""Graceful behaviour with real processes: daphne stopped mid-reply, a worker stopped mid-job, and a
Redis restart under idle voice sessions (docs/deploy.md, "Restarts without losing work")."""

import asyncio
import json
import os
import signal
import subprocess
import time

import httpx
import pytest
import websockets
from django.conf import settings
from django.utils.crypto import get_random_string

from chat.models import Message
from devtools.fake_llm import Reply
from devtools.localprocs import (
    child_env,
    start_daphne,
    start_redis,
    start_worker,
    stop_process,
    wait_for_worker,
)
from live.tests.test_e2e import collect, open_socket, session_cookie
from live.tests.test_interrupt_after_reply import REPLY, SENTENCES
from magicmirror.celery import app as celery_app
from voice import jobs
from voice.jobs.messages import new_job_id

pytestmark = [pytest.mark.services_only, pytest.mark.django_db(transaction=True)]


def llm_env(fake_llm_server, **extra):
    return child_env(
        **fake_llm_server.settings(),
        VOICE_TTS_ENGINES="piper",
        VOICE_MAX_AUDIO_RATE="1000",
        PYTHONUNBUFFERED="1",
        **extra,
    )


async def sse_until_deltas(port, cookie, csrf, count, deltas_seen: asyncio.Event, texts: list):
    """POST /api/chat and read the stream; sets `deltas_seen` after `count` deltas; returns at its end."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        headers = {"Cookie": f"{cookie}; csrftoken={csrf}", "X-CSRFToken": csrf}
        try:
            async with client.stream("POST", "/api/chat", json={"message": "Tell me a story"}, headers=headers) as r:
                assert r.status_code == 200
                event = None
                async for line in r.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: ") and event == "delta":
                        texts.append(json.loads(line[6:])["text"])
                        if len(texts) >= count:
                            deltas_seen.set()
        except (httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the server went away: expected


async def test_daphne_sigterm_saves_the_replies_in_flight(fake_llm_server, fake_llm, user, tmp_path):
    """A deploy stops daphne while a voice-socket reply and a streamed /api/chat reply are being
    written: both replies are saved (what the client saw, marked interrupted), the socket is closed
    with 4503 (reconnect), and daphne exits promptly."""
    log_path = tmp_path / "daphne.log"
    log = log_path.open("wb")
    port, daphne = start_daphne(llm_env(fake_llm_server), stdout=log)
    try:
        # Both replies stop after three tokens until released: the shutdown finds them mid-stream.
        fake_llm.queue(Reply("One two three four five six seven eight", pause_after=3))
        fake_llm.queue(Reply("Alpha beta gamma delta epsilon zeta", pause_after=3))
        cookie = await asyncio.to_thread(session_cookie, user)
        ws = await open_socket(port, user)
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send(json.dumps({"type": "start", "protocol": 1, "voice_output": False}))
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send(json.dumps({"type": "text", "text": "Count for me"}))
        shown = []
        async with asyncio.timeout(30):
            while len(shown) < 3:
                event = json.loads(await ws.recv())
                if event["type"] == "delta":
                    shown.append(event["text"])
        sse_seen, sse_texts = asyncio.Event(), []
        sse = asyncio.create_task(sse_until_deltas(port, cookie, get_random_string(32), 3, sse_seen, sse_texts))
        async with asyncio.timeout(30):
            await sse_seen.wait()

        # An idle socket opened just now: daphne still tracks the HTTP request it was upgraded from,
        # which once made its shutdown skip every connection (magicmirror.graceful.patch_daphne_shutdown).
        idle = await open_socket(port, user)
        assert json.loads(await idle.recv())["type"] == "hello"

        daphne.send_signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        async with asyncio.timeout(20):
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            with pytest.raises(websockets.ConnectionClosed) as idle_closed:
                while True:
                    await idle.recv()
            await sse
        assert await asyncio.to_thread(daphne.wait, 20) == 0, log_path.read_text()[-3000:]
        assert time.monotonic() - stopped_at < 15
        for socket_closed in (closed, idle_closed):
            rcvd = socket_closed.value.rcvd
            assert rcvd is not None and rcvd.code == 4503, log_path.read_text()[-3000:]
    finally:
        stop_process(daphne)
        log.close()
    replies = [m async for m in Message.objects.filter(role="assistant", conversation__owner=user)]
    assert sorted((m.content, m.interrupted) for m in replies) == sorted(
        [("".join(shown), True), ("".join(sse_texts), True)]
    )


async def test_daphne_sigterm_while_a_finished_reply_is_spoken(
    celery_worker_process, fake_llm_server, fake_llm, user, tmp_path
):
    """A deploy stops daphne after the LLM has finished, while the reply's audio is still playing
    (paced in real time: several seconds of it): the reply, saved whole when the LLM finished, keeps
    only the sentences the client was sent, marked interrupted; the socket is closed with 4503."""
    log_path = tmp_path / "daphne.log"
    log = log_path.open("wb")
    port, daphne = start_daphne(llm_env(fake_llm_server, VOICE_AUDIO_LEAD_SECONDS="0"), stdout=log)
    events = []

    async def receive():
        message = await ws.recv()
        if isinstance(message, str):
            events.append(json.loads(message))

    try:
        fake_llm.queue(Reply(REPLY, tokens_per_s=500), Reply("A title"))
        ws = await start_session(port, user)
        await ws.send(json.dumps({"type": "text", "text": "Tell me four things"}))
        async with asyncio.timeout(60):  # until the reply is saved whole and its first sentence plays
            while not {"reply_done", "sentence"} <= {e["type"] for e in events}:
                await receive()
        daphne.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await receive()
        assert await asyncio.to_thread(daphne.wait, 20) == 0, log_path.read_text()[-3000:]
        rcvd = closed.value.rcvd
        assert rcvd is not None and rcvd.code == 4503, log_path.read_text()[-3000:]
    finally:
        stop_process(daphne)
        log.close()
    spoken = [e["text"] for e in events if e["type"] == "sentence"]
    assert "audio_done" not in [e["type"] for e in events] and 0 < len(spoken) < len(SENTENCES), events
    reply_done = next(e for e in events if e["type"] == "reply_done")
    reply = await Message.objects.aget(pk=reply_done["message_id"])
    assert (reply.content, reply.interrupted) == (" ".join(spoken), True)


async def start_tts_job(queue: str, text: str, expires: float) -> tuple[str, str]:
    """A synthesis job on `queue` (given explicitly: the test leaves Celery's routes alone), as
    voice.jobs.tts_start queues it; returns (reply channel, job id)."""
    from voice.jobs.tasks import tts_synthesize

    channel, job_id = await jobs.new_reply_channel(), new_job_id()
    await asyncio.to_thread(
        tts_synthesize.apply_async, args=(channel, job_id, text, None, "piper"), queue=queue, expires=expires
    )
    return channel, job_id


async def test_worker_sigterm_finishes_its_job_and_takes_no_new_one(fake_llm_server, settings):
    """SIGTERM to a worker mid-synthesis: the job runs to its end (Celery's warm shutdown), the
    worker exits 0, and a job queued meanwhile is not taken by it (it waits for the next worker)."""
    queue = f"tts-graceful-{settings.TEST_RUN_ID}"
    env = llm_env(fake_llm_server, VOICE_PRELOAD="tts")
    name = f"graceful-{os.getpid()}@localhost"
    worker = start_worker(env, name, [queue], concurrency=2, stdout=subprocess.DEVNULL)
    try:
        await asyncio.to_thread(wait_for_worker, celery_app, name, worker)
        text = " ".join(f"This is sentence number {i} of a long answer that takes a while to read." for i in range(12))
        messages = []
        channel, job_id = await start_tts_job(queue, text, expires=30)
        async with asyncio.timeout(60):
            async for message in jobs.job_messages(channel, job_id):
                messages.append(message)
                if len(messages) == 1:
                    assert message["type"] == "voice.tts.chunk", message
                    os.killpg(worker.pid, signal.SIGTERM)
        assert messages[-1]["type"] == "voice.tts.done", messages[-1]
        chunks = [m for m in messages if m["type"] == "voice.tts.chunk"]
        assert [c["seq"] for c in chunks] == list(range(len(chunks))) and len(chunks) > 3
        # Audio kept coming after the signal: the worker did not stop mid-job.
        assert messages[-1]["t"] > chunks[0]["t"]
        assert await asyncio.to_thread(worker.wait, 30) == 0
        # Nothing consumes the queue now: a new job stays there (for the next worker), unanswered.
        settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT = 2
        channel, job_id = await start_tts_job(queue, "Anyone there?", expires=2)
        with pytest.raises(jobs.JobTimeout):
            async for message in jobs.job_messages(channel, job_id):
                pytest.fail(f"a stopped worker answered: {message}")
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        import redis

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        client.delete(queue)
        client.close()


async def voice_turn(ws, text):
    await ws.send(json.dumps({"type": "text", "text": text}))
    events, frames, _ = await collect(ws, "audio_done", timeout=60)
    assert not [e for e in events if e["type"] == "error"], events
    return events, frames


async def start_session(port, user):
    ws = await open_socket(port, user)
    assert json.loads(await ws.recv())["type"] == "hello"
    await ws.send(json.dumps({"type": "start", "protocol": 1, "voice_output": True}))
    assert json.loads(await ws.recv())["type"] == "ready"
    return ws


async def test_idle_sessions_survive_a_redis_restart(fake_llm_server, fake_llm, user, tmp_path):
    """daphne and a worker on a private Redis; two idle voice sessions; Redis restarts (empty, as
    without persistence); then a spoken reply on each of the same sockets works."""
    redis_port, redis_server = start_redis()
    env = llm_env(fake_llm_server, REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", VOICE_PRELOAD="tts")
    name = f"redis-restart-{os.getpid()}@localhost"
    worker = start_worker(env, name, [settings.CELERY_TASK_DEFAULT_QUEUE, settings.VOICE_TTS_QUEUE])
    log = (tmp_path / "daphne.log").open("wb")
    port, daphne = start_daphne(env, stdout=log)
    sockets = []
    try:
        from celery import Celery

        private = Celery(broker=env["REDIS_URL"], set_as_current=False)
        await asyncio.to_thread(wait_for_worker, private, name, worker)
        fake_llm.queue(Reply("Before the restart."), Reply("A title"))
        sockets = [await start_session(port, user), await start_session(port, user)]
        await voice_turn(sockets[0], "hello")

        stop_process(redis_server)
        assert not worker.poll() and not daphne.poll()
        redis_port, redis_server = start_redis(redis_port)
        # The worker reconnects to the broker by itself; wait until it answers again.
        await asyncio.to_thread(wait_for_worker, private, name, worker)

        fake_llm.queue(Reply("After the restart, first socket."), Reply("After the restart, second socket."))
        for ws, expected in zip(sockets, ["first socket", "second socket"], strict=True):
            events, frames = await voice_turn(ws, "are you still there?")
            reply = "".join(e["text"] for e in events if e["type"] == "delta")
            assert expected in reply and frames, events
    finally:
        for ws in sockets:
            await ws.close()
        stop_process(daphne)
        log.close()
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        stop_process(redis_server)
    assert daphne.returncode == 0, (tmp_path / "daphne.log").read_text()[-3000:]
