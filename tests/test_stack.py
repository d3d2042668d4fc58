"""The whole stack through the process manager, as a newcomer runs it: `./dev stack` (honcho with the
Procfile: daphne and a Celery worker) on the real settings module, a spoken turn over the voice
WebSocket, the metrics and JSON logs it leaves, and `./dev stop`, after which nothing is left running.

The stack gets the test database, a private Redis (so the Procfile's plain queue names meet nobody
else's jobs) and free ports; the LLM is the fake one.
"""

import asyncio
import json
import os
import re
import signal
import socket
import subprocess

import httpx
import pytest
from celery import Celery

from chat.models import Message
from devtools.fake_llm import ErrorReply, Reply
from devtools.localprocs import (
    ROOT,
    child_env,
    free_port,
    start_redis,
    stop_process,
    wait_for_port,
    wait_for_worker,
)
from live.tests.test_e2e import collect, fixture_pcm, open_socket

pytestmark = [pytest.mark.services_only, pytest.mark.django_db(transaction=True)]

SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def scrape(port) -> dict:
    """{(name, frozenset(labels)): value} from /metrics."""
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = {}
    for line in body.splitlines():
        match = SAMPLE.match(line)
        if match:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
            samples[(match["name"], labels)] = float(match["value"])
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def group_members(pgid: int) -> list[int]:
    """Processes still in the process group `pgid` (honcho and what it started)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def log_records(text: str) -> list[tuple[str, dict]]:
    """(process, record) for each JSON line honcho printed ("12:00:00 web.1 | {...}")."""
    records = []
    for line in text.splitlines():
        process, sep, rest = line.partition("|")
        if sep and rest.strip().startswith("{"):
            try:
                records.append((process.split()[-1], json.loads(rest)))
            except (ValueError, IndexError):
                continue
    return records


async def test_dev_stack_serves_a_spoken_turn_and_dev_stop_ends_it(fake_llm_server, fake_llm, user, tmp_path):
    redis_port, redis_server = start_redis()
    web_port = free_port()
    env = child_env(
        DJANGO_SETTINGS_MODULE="magicmirror.settings",  # the real settings, not the test settings
        MAGICMIRROR_TESTING=None,
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        WEB_HOST="127.0.0.1",
        WEB_PORT=web_port,
        WORKER_CONCURRENCY=2,
        STACK_PID_FILE=tmp_path / "stack.pid",
        MEDIA_ROOT=tmp_path / "media",
        LOG_FORMAT="json",
        **fake_llm_server.settings(),
        VOICE_TTS_ENGINES="piper",
        VOICE_MAX_AUDIO_RATE=1000,
        PYTHONUNBUFFERED=1,
    )
    log_path = tmp_path / "stack.log"
    log = log_path.open("wb")
    stack = subprocess.Popen(
        ["./dev", "stack"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    honcho = None
    try:
        try:
            await asyncio.to_thread(wait_for_port, web_port, stack, 180)
            worker = f"worker@{socket.gethostname()}"
            await asyncio.to_thread(
                wait_for_worker, Celery(broker=env["REDIS_URL"], set_as_current=False), worker, stack, 120
            )
        except RuntimeError as exc:
            pytest.fail(f"{exc}\n{log_path.read_text()[-4000:]}")
        honcho = int((tmp_path / "stack.pid").read_text())
        ready = httpx.get(f"http://127.0.0.1:{web_port}/health/ready", timeout=20)
        assert ready.status_code == 200, ready.text
        before = await asyncio.to_thread(scrape, web_port)

        reply = "Hello there, friend. I heard you clearly."
        fake_llm.queue(Reply(reply, tokens_per_s=50), Reply("A title"), ErrorReply(500))
        ws = await open_socket(web_port, user)
        try:
            assert json.loads(await ws.recv())["type"] == "hello"
            await ws.send(json.dumps({"type": "start", "protocol": 1, "mode": "ptt", "phrases": ["안녕하세요"]}))
            assert json.loads(await ws.recv())["type"] == "ready"
            during = await asyncio.to_thread(scrape, web_port)
            pcm = fixture_pcm("hello.wav")
            for start in range(0, len(pcm), 3200):
                await ws.send(pcm[start : start + 3200])
            await ws.send(json.dumps({"type": "audio_end"}))
            events, frames, _ = await collect(ws, "audio_done", timeout=90)
            assert "안녕하세요" in next(e for e in events if e["type"] == "final")["text"]
            assert "".join(e["text"] for e in events if e["type"] == "delta") == reply and frames
            await ws.send(json.dumps({"type": "text", "text": "Fail this one"}))
            events, _, _ = await collect(ws, "error", timeout=30)
            assert events[-1]["code"] == "llm_server_error"
        finally:
            await ws.close()
        after = await asyncio.to_thread(scrape, web_port)

        # Metrics moved with the turns (this daphne serves them; the worker's timings arrive with its messages).
        assert value(during, "mm_voice_sessions_active") == value(before, "mm_voice_sessions_active") + 1
        assert value(after, "mm_turns_total", source="voice") == value(before, "mm_turns_total", source="voice") + 1
        assert value(after, "mm_turns_total", source="text") == value(before, "mm_turns_total", source="text") + 1
        for name, labels in [
            ("mm_time_to_first_audio_seconds_count", {"source": "voice"}),
            ("mm_transcript_latency_seconds_count", {}),
            ("mm_llm_first_token_seconds_count", {}),
            ("mm_tts_first_chunk_seconds_count", {"engine": "piper"}),
            ("mm_tts_real_time_factor_count", {"engine": "piper"}),
            ("mm_errors_total", {"code": "llm_server_error"}),
        ]:
            assert value(after, name, **labels) >= value(before, name, **labels) + 1, (name, labels)
        assert value(after, "mm_tts_real_time_factor_sum", engine="piper") > 0
        assert ("mm_voice_queue_depth", frozenset({("queue", "tts")})) in after
        messages = [m async for m in Message.objects.filter(conversation__owner=user).order_by("id")]
        assert [(m.role, m.source) for m in messages][:2] == [("user", "voice"), ("assistant", "text")]

        # `./dev stop`: honcho and everything it started are gone, and `./dev stack` returns.
        assert group_members(honcho), "honcho's process group should be running"
        stopped = subprocess.run(["./dev", "stop"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert await asyncio.to_thread(stack.wait, 30) == 0
        assert group_members(honcho) == []
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", web_port), timeout=1).close()
        assert not (tmp_path / "stack.pid").exists()
    finally:
        if stack.poll() is None:
            os.killpg(stack.pid, signal.SIGKILL)
            stack.wait()
        if honcho and group_members(honcho):
            os.killpg(honcho, signal.SIGKILL)
        log.close()
        stop_process(redis_server)

    # JSON logs on stdout: one voice turn's web and worker lines share its turn id.
    records = log_records(log_path.read_text())
    turn_ids = {r["trace_id"] for p, r in records if p.startswith("web") and r.get("message", "").startswith("Turn in")}
    assert turn_ids, log_path.read_text()[-3000:]
    worker_lines = [r for p, r in records if p.startswith("worker") and r.get("trace_id") in turn_ids]
    assert any(r.get("job_id") and r["logger"] == "voice.jobs.runners" for r in worker_lines), worker_lines[:5]
