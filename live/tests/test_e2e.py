"""End-to-end voice turns: a real daphne server, real Redis, real Celery workers, real Vosk and
Piper, the fake OpenAI-compatible LLM; a real WebSocket client."""

import asyncio
import json
import os
import signal
import struct
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client

from chat.models import Message
from devtools import samples
from devtools.fake_llm import Reply
from devtools.localprocs import child_env, start_daphne
from devtools.localprocs import stop_process as stop

pytestmark = [pytest.mark.services_only, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]


def process_env(fake_llm_server, **extra):
    return child_env(
        **fake_llm_server.settings(),
        VOICE_TTS_ENGINES="piper",
        VOICE_MAX_AUDIO_RATE="1000",
        DB_ASYNC_THREADS="4",  # as in production on MySQL: database work on a pool of threads
        **extra,
    )


@pytest.fixture
def daphne_server(celery_worker_process, fake_llm_server):
    port, process = start_daphne(process_env(fake_llm_server))
    yield port
    stop(process)


def session_cookie(user):
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def open_socket(port, user):
    return await websockets.connect(
        f"ws://127.0.0.1:{port}/ws/voice/",
        origin=f"http://127.0.0.1:{port}",
        additional_headers={"Cookie": await sync_to_async(session_cookie)(user)},
        max_size=2**22,
    )


async def collect(ws, until, timeout=120):
    events, frames, first_frame_at = [], [], None
    try:
        async with asyncio.timeout(timeout):
            async for message in ws:
                if isinstance(message, bytes):
                    frames.append(message)
                    first_frame_at = first_frame_at if first_frame_at is not None else len(events)
                    continue
                event = json.loads(message)
                events.append(event)
                if event["type"] == until:
                    return events, frames, first_frame_at
    except TimeoutError:
        raise AssertionError(f"no {until} within {timeout} s; got {events} and {len(frames)} audio frames") from None
    raise AssertionError(f"socket closed before {until}: {events}")


def fixture_pcm(name):
    with wave.open(str(samples.path(name))) as w:
        return w.readframes(w.getnframes())


def direct_vosk(pcm, phrases=None, chunk_bytes=None):
    """What plain Vosk makes of the same audio (same model, dither and chunking): the app must match it."""
    from voice.tests.test_asr import direct_decode

    return direct_decode(pcm, phrases, chunk_bytes)


async def test_spoken_turn_end_to_end(daphne_server, fake_llm, user):
    reply = "Hello there, friend. I heard you clearly. This is the third sentence of my answer. And a fourth one."
    fake_llm.queue(Reply(reply, tokens_per_s=25))
    phrases = ["안녕하세요", "오늘", "좋네요"]
    pcm = fixture_pcm("hello.wav")
    ws = await open_socket(daphne_server, user)
    try:
        assert json.loads(await ws.recv())["type"] == "hello"
        await ws.send(json.dumps({"type": "start", "protocol": 1, "mode": "ptt", "phrases": phrases}))
        assert json.loads(await ws.recv())["type"] == "ready"
        step = 3200  # 100 ms, sent at real time as a microphone would
        for start in range(0, len(pcm), step):
            await ws.send(pcm[start : start + step])
            await asyncio.sleep(0.1)
        await ws.send(json.dumps({"type": "audio_end"}))
        events, frames, first_frame_at = await collect(ws, "audio_done")
    finally:
        await ws.close()
    kinds = [e["type"] for e in events]
    assert kinds.index("partial") < kinds.index("final")
    final = next(e for e in events if e["type"] == "final")
    assert "안녕하세요" in final["text"]
    # The reply's first audio reached the client while the LLM was still writing.
    assert first_frame_at is not None and first_frame_at < kinds.index("reply_done")
    assert {struct.unpack("<III", f[:12])[0] for f in frames} == {
        next(e for e in events if e["type"] == "turn")["turn_id"]
    }
    messages = [m async for m in Message.objects.filter(conversation__owner=user).order_by("id")]
    assert [(m.role, m.source) for m in messages] == [("user", "voice"), ("assistant", "text")]
    assert messages[0].content == final["text"] and messages[1].content == reply


async def test_worker_killed_mid_turn(celery_worker_process, fake_llm_server, fake_llm, user):
    """The TTS worker dies while speaking: an error event in bounded time; the socket stays usable."""
    env = process_env(fake_llm_server, VOICE_TTS_QUEUE="tts-victim", VOICE_JOB_IDLE_TIMEOUT="3")
    victim_queue = f"tts-victim-{settings.TEST_RUN_ID}"  # as settings_test names it in the server
    victim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "magicmirror",
            "worker",
            "-Q",
            victim_queue,
            "--pool=solo",
            "-n",
            f"victim-{os.getpid()}@localhost",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    port, server = start_daphne(env)
    try:
        from magicmirror.celery import app

        deadline = time.monotonic() + 60
        while not (app.control.ping(destination=[f"victim-{os.getpid()}@localhost"], timeout=0.5) or []):
            assert time.monotonic() < deadline, "victim worker did not start"
        long_reply = " ".join(f"This is sentence number {i} of a long answer." for i in range(30))
        fake_llm.queue(Reply(long_reply, tokens_per_s=400))
        ws = await open_socket(port, user)
        try:
            await ws.recv()
            await ws.send(json.dumps({"type": "start", "protocol": 1, "voice_output": True}))
            await ws.recv()
            await ws.send(json.dumps({"type": "text", "text": "Talk for a long time"}))
            async with asyncio.timeout(60):
                while not isinstance(await ws.recv(), bytes):
                    pass
            os.killpg(victim.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            events, _, _ = await collect(ws, "error", timeout=30)
            assert events[-1]["code"] == "voice_worker_timeout"
            assert time.monotonic() - killed_at < 15
            await ws.send(json.dumps({"type": "ping", "id": 3}))
            events, _, _ = await collect(ws, "pong", timeout=30)
            assert events[-1] == {"type": "pong", "id": 3}
        finally:
            await ws.close()
    finally:
        stop(server)
        if victim.poll() is None:
            os.killpg(victim.pid, signal.SIGKILL)
    reply = await Message.objects.filter(role="assistant", conversation__owner=user).alast()
    assert reply is not None and reply.content
