"""The voice-loop benchmarks behind `manage.py benchmark` (see docs/benchmarks.md).

Everything runs for real on this machine: a private Redis, daphne (one ASGI process), one Celery
worker, a throw-away SQLite database shared by both, and the fake OpenAI-compatible server with a
scripted time to first token and token rate. Clients are real WebSocket and HTTP clients.
"""

import asyncio
import io
import itertools
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import websockets
from django.conf import settings

from devtools import samples
from devtools.fake_llm import FakeLLMServer, Reply
from devtools.localprocs import free_port, start_daphne, start_redis, stop_process, wait_for_port

ROOT = Path(settings.BASE_DIR)
# ~60 tokens, several sentences (tokens as the fake server counts them).
REPLY_60 = (
    "Sure, here is a quick plan for the evening. First we cook a simple dinner together. "
    "Then we take a short walk by the river and talk about the week. "
    "Finally we read a chapter of a good book before going to sleep early tonight."
)


def percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def llm_process(reply: str) -> tuple[subprocess.Popen, str]:
    """The fake LLM in its own process, answering every request with `reply` at once."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.fake_llm", "--port", str(port), "--api-key", "sk-bench", "--reply", reply],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}/v1"


_DATABASES = itertools.count(1)
_STACK_IDS = itertools.count(1)
LOG_DIR = os.environ.get("BENCHMARK_LOG_DIR", "")  # keep the stacks' process logs (INFO) there


class ThrowawayMySQL:
    """A database of its own on the MySQL/MariaDB server named by `url`, dropped afterwards."""

    def __init__(self, url: str):
        import environ

        self.config = environ.Env.db_url_config(url)
        self.name = f"mm_bench_{os.getpid()}_{next(_DATABASES)}"  # several stacks may run at once
        self.url = url.rsplit("/", 1)[0] + "/" + self.name

    def _execute(self, sql):
        import MySQLdb

        c = self.config
        connection = MySQLdb.connect(
            host=c["HOST"] or "127.0.0.1", port=int(c["PORT"] or 3306), user=c["USER"], password=c["PASSWORD"]
        )
        try:
            connection.cursor().execute(sql)
        finally:
            connection.close()

    def create(self):
        self._execute(f"CREATE DATABASE {self.name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci")

    def drop(self):
        self._execute(f"DROP DATABASE IF EXISTS {self.name}")


@dataclass
class Stack:
    """The processes a benchmark runs against, configured as in production (DEBUG off)."""

    llm_url: str
    tts_engine: str
    llm: FakeLLMServer | None = None  # in this process, for scripted replies; else a fixed reply elsewhere
    preload: str = "asr,tts"  # the engines the worker loads and warms before it is used
    database_url: str = ""  # MySQL/MariaDB server to make a throw-away database on; else SQLite
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mm-bench-")))
    processes: dict = field(default_factory=dict)
    port: int = 0
    cookie: str = ""
    mysql: ThrowawayMySQL | None = None
    extra_env: dict = field(default_factory=dict)  # settings of this run (e.g. the end-of-turn rule)
    log_dir: str = LOG_DIR  # keep the processes' logs (INFO) there; "" for none

    def env(self) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "MYSQL_HOST", "MYSQL_DATABASE")}
        env.update(
            DJANGO_SETTINGS_MODULE="magicmirror.settings",
            MAGICMIRROR_DOTENV="",
            DEBUG="false",
            SECRET_KEY="benchmark-only-" + os.urandom(16).hex(),
            ALLOWED_HOSTS="127.0.0.1,localhost",
            SECURE_SSL_REDIRECT="false",  # plain HTTP on loopback, no TLS proxy in front
            SESSION_COOKIE_SECURE="false",
            CSRF_COOKIE_SECURE="false",
            MEDIA_ROOT=str(self.tmp / "media"),
            REDIS_URL=self.redis_url,
            CHANNEL_LAYER_PREFIX=f"mm-bench-{os.getpid()}",
            VOICE_ASR_QUEUE=f"asr-bench-{os.getpid()}",
            VOICE_TTS_QUEUE=f"tts-bench-{os.getpid()}",
            LLM_API_KEY="sk-bench",
            LLM_BASE_URL=self.llm_url,
            LLM_MODEL="fake-model",
            LLM_MAX_RETRIES="0",
            VOICE_TTS_ENGINES=self.tts_engine,
            VOICE_PRELOAD=self.preload,
            RATELIMIT_ENABLE="false",
            VOICE_WS_MAX_SOCKETS_PER_USER="0",  # every concurrent session is the one benchmark user's
            VOICE_MAX_AUDIO_RATE="2.0",
            LOG_LEVEL="INFO" if self.log_dir else "WARNING",
        )
        env.update(self.extra_env)
        if self.mysql is not None:
            env["DATABASE_URL"] = self.mysql.url
        else:
            env["SQLITE_PATH"] = str(self.tmp / "bench.sqlite3")
        return env

    @property
    def database(self) -> str:
        return "MySQL/MariaDB" if self.mysql is not None else "SQLite"

    def start(self):
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (./dev services installs it).")
        if self.database_url.startswith("mysql"):
            self.mysql = ThrowawayMySQL(self.database_url)
            self.mysql.create()
        redis_port, self.processes["redis"] = start_redis()
        self.redis_url = f"redis://127.0.0.1:{redis_port}/0"
        env = self.env()
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        code = (
            "from django.contrib.auth.models import User; from django.test import Client;"
            "u = User.objects.create_user('bench', password='bench-pass-123');"
            "c = Client(); c.force_login(u); print(c.cookies['sessionid'].value)"
        )
        out = subprocess.run(
            [*manage, "shell", "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
        )
        self.cookie = f"sessionid={out.stdout.strip().splitlines()[-1]}"
        queues = f"default,{env['VOICE_ASR_QUEUE']},{env['VOICE_TTS_QUEUE']}"
        worker = [sys.executable, "-m", "celery", "-A", "magicmirror", "worker", "-Q", queues]
        worker += [
            "--pool=threads",
            "-c",
            "8",
            "-n",
            f"bench-{os.getpid()}@localhost",
            "-l",
            "info" if self.log_dir else "warning",
        ]
        self._spawn("worker", worker, env)
        self.port, self.processes["web"] = start_daphne(env, stdout=self._log("web"))
        self._wait_for_worker(env)

    def _wait_for_worker(self, env):
        code = (
            "import sys, time; from magicmirror.celery import app; d = time.monotonic() + 120\n"
            f"while not app.control.ping(destination=['bench-{os.getpid()}@localhost'], timeout=0.5):\n"
            "    assert time.monotonic() < d, 'worker did not start'\n"
        )
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)

    def _spawn(self, name, command, env=None):
        log = self._log(name)
        self.processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)

    def _log(self, name: str):
        """Where process `name` writes: nowhere, or with BENCHMARK_LOG_DIR a file of this stack's there
        (a failed run can then be read afterwards)."""
        path = self.log_path(name)
        if path is None:
            return subprocess.DEVNULL
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a")

    def log_path(self, name: str) -> Path | None:
        """The file process `name` of this stack logs to, if it keeps logs (`log_dir`)."""
        if not self.log_dir:
            return None
        self._stack_id = getattr(self, "_stack_id", None) or next(_STACK_IDS)
        return Path(self.log_dir) / f"stack{self._stack_id}-{name}.log"

    def stop(self):
        # Web and worker first, Redis last: stopped the other way round they log connection tracebacks.
        for process in reversed(list(self.processes.values())):
            stop_process(process, timeout=20)
        self.processes.clear()
        if self.mysql is not None:
            self.mysql.drop()
            self.mysql = None
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- clients --------------------------------------------------------------------------------
    async def socket(self):
        ws = await websockets.connect(
            f"ws://127.0.0.1:{self.port}/ws/voice/",
            origin=f"http://127.0.0.1:{self.port}",
            additional_headers={"Cookie": self.cookie},
            max_size=2**24,
        )
        assert json.loads(await ws.recv())["type"] == "hello"
        return ws

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={
                "Cookie": f"{self.cookie}; csrftoken=benchcsrftokenbenchcsrftoken1234",
                "X-CSRFToken": "benchcsrftokenbenchcsrftoken1234",
            },
            timeout=120,
        )


async def start_session(ws, **config):
    await ws.send(json.dumps({"type": "start", "protocol": 1, **config}))
    while json.loads(await ws.recv())["type"] != "ready":
        pass


async def typed_turn(ws, text, *, until_first_audio=False) -> dict:
    """Send a typed message; return when (s after sending) the turn's milestones arrived: `saved` (the
    user's message is saved: `turn`), `first_delta`, `reply_done` (the reply is saved), `first_audio`
    and `end` (`audio_done`, or the return to idle when no audio is spoken; with `until_first_audio`,
    the first audio frame: the reply is still running, stop it with stop_reply)."""
    sent = time.perf_counter()
    marks = {"saved": None, "first_delta": None, "reply_done": None, "first_audio": None}
    await ws.send(json.dumps({"type": "text", "text": text}))
    async for message in ws:
        now = time.perf_counter() - sent
        if isinstance(message, bytes):
            marks["first_audio"] = marks["first_audio"] or now
            if until_first_audio:
                return {**marks, "end": now}
            continue
        event = json.loads(message)
        kind = event["type"]
        if kind == "error":
            raise RuntimeError(f"{event['code']}: {event['message']}")
        if kind == "turn":
            marks["saved"] = now
        elif kind == "delta":
            marks["first_delta"] = marks["first_delta"] or now
        elif kind == "reply_done":
            marks["reply_done"] = now
        if kind == "audio_done" or (kind == "state" and event["state"] == "idle" and marks["reply_done"]):
            return {**marks, "end": now}
    raise RuntimeError("socket closed mid-turn")


async def stop_reply(ws):
    """Interrupt the running reply and wait for the acknowledgement."""
    await ws.send(json.dumps({"type": "interrupt"}))
    async for message in ws:
        if not isinstance(message, bytes) and json.loads(message)["type"] == "interrupted":
            return


async def new_conversation(ws):
    """The session's next turn starts a new conversation (once `ready` acknowledges it)."""
    await ws.send(json.dumps({"type": "configure", "conversation_id": None}))
    while json.loads(await ws.recv())["type"] != "ready":
        pass


# -- 1. time to first audio -----------------------------------------------------------------------
async def ttfa_streamed(stack, runs):
    ws = await stack.socket()
    try:
        await start_session(ws, voice_output=True, conversation_id=None)
        results = []
        for _ in range(runs):
            stack.llm.queue(Reply(REPLY_60, ttft=0.3, tokens_per_s=30))
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "text", "text": "Plan my evening"}))
            async for message in ws:
                if isinstance(message, bytes):
                    results.append((time.perf_counter() - sent) * 1000)
                    break
                event = json.loads(message)
                if event["type"] == "error":
                    raise RuntimeError(f"{event['code']}: {event['message']}")
            await stop_reply(ws)  # only the first audio counts, not the ~10 s after it
            await new_conversation(ws)
        return results
    finally:
        await ws.close()


async def ttfa_whole(stack, runs):
    """The original design: the whole reply from the LLM, then whole-text TTS, then send."""
    results = []
    async with stack.http() as client:
        for _ in range(runs):
            stack.llm.queue(Reply(REPLY_60, ttft=0.3, tokens_per_s=30))
            started = time.perf_counter()
            text = []
            async with client.stream("POST", "/api/chat", json={"message": "Plan my evening"}) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        event = json.loads(line[6:])
                        if event["type"] == "delta":
                            text.append(event["text"])
                        if event["type"] in ("done", "error"):
                            break
            async with client.stream("POST", "/api/tts", json={"text": "".join(text)}) as response:
                async for _ in response.aiter_bytes():
                    results.append((time.perf_counter() - started) * 1000)
                    break
    return results


def ttfa_floor(runs):
    """The LLM's time to the end of its first speakable piece plus the engine's own first chunk."""
    import openai

    from voice.text import SentenceSplitter
    from voice.tts.registry import get_tts_engine

    engine = get_tts_engine("piper")
    list(engine.stream("Warm up."))
    results = []
    with FakeLLMServer(api_key="sk-floor") as llm:
        client = openai.OpenAI(api_key="sk-floor", base_url=llm.base_url, max_retries=0)
        for _ in range(runs):
            llm.queue(Reply(REPLY_60, ttft=0.3, tokens_per_s=30))
            splitter = SentenceSplitter(
                max_chars=settings.VOICE_SENTENCE_MAX_CHARS, first_min_chars=settings.VOICE_FIRST_PIECE_MIN_CHARS
            )
            started = time.perf_counter()
            piece = None
            stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces = splitter.feed(chunk.choices[0].delta.content)
                    if pieces:
                        piece = pieces[0]
                        break
            llm_ms = (time.perf_counter() - started) * 1000
            stream.close()
            tts_started = time.perf_counter()
            next(iter(engine.stream(piece)))
            results.append(llm_ms + (time.perf_counter() - tts_started) * 1000)
    return results


# -- 2. transcript latency ------------------------------------------------------------------------
def speech_pcm(seconds: float) -> bytes:
    """About `seconds` of espeak-ng Korean speech from the samples, repeated."""
    parts = []
    for name in ("hello.wav", "thanks.wav"):
        with wave.open(str(samples.path(name))) as w:
            parts.append(w.readframes(w.getnframes()))
    pcm, index = b"", 0
    while len(pcm) < seconds * 32000:
        pcm += parts[index % 2]
        index += 1
    return pcm[: int(seconds * 32000) // 2 * 2]


async def transcript_streamed(stack, seconds, runs):
    pcm = speech_pcm(seconds)
    results = []
    ws = await stack.socket()
    try:
        await start_session(ws, voice_output=False, mode="ptt")
        for _ in range(runs):
            step = 3200
            next_at = time.perf_counter()
            for start in range(0, len(pcm), step):
                await ws.send(pcm[start : start + step])
                next_at += 0.1
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))  # a microphone's pace
            ended = time.perf_counter()
            await ws.send(json.dumps({"type": "audio_end"}))
            async for message in ws:
                if isinstance(message, bytes):
                    continue
                event = json.loads(message)
                if event["type"] == "final":
                    results.append((time.perf_counter() - ended) * 1000)
                    break
                if event["type"] == "error":
                    raise RuntimeError(event)
            await stop_reply(ws)  # only the transcript counts
    finally:
        await ws.close()
    return results


async def transcript_whole(stack, seconds, runs):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(speech_pcm(seconds))
    data = buf.getvalue()
    results = []
    async with stack.http() as client:
        for _ in range(runs):
            started = time.perf_counter()
            response = await client.post("/api/recognize", files={"audio": ("clip.wav", data, "audio/wav")})
            response.raise_for_status()
            results.append((time.perf_counter() - started) * 1000)
    return results


# -- 3 and 4. orchestration overhead and concurrency ----------------------------------------------
INSTANT_REPLY = "Okay, noted. Anything else?"  # two sentences, written at once by the fake LLM


async def overhead(stack, runs, think_s=0.1):
    """Turn time with an instant LLM and the instant `silence` engine: all of it is orchestration.

    Turns are `think_s` apart, as a person's are: back to back, each turn would also pay for
    the previous one's clean-up on the same two cores."""
    ws = await stack.socket()
    try:
        await start_session(ws, voice_output=True)
        results = []
        for _ in range(runs):
            await asyncio.sleep(think_s)
            results.append(await typed_turn(ws, "ping"))
        return results
    finally:
        await ws.close()


THINK_S = (2.0, 6.0)  # between a reply and the next message: people listen, read and talk


async def concurrency(stack, sessions, turns_per_session, think_s=THINK_S, seed=1):
    """`sessions` WebSocket sessions open at once, each doing typed turns (instant LLM, voice output off).

    Each session waits a random think time (uniform in `think_s`, seeded) before each turn, the
    first included, so the sessions' turns interleave as real ones do instead of arriving in one
    burst. A turn's overhead is message sent -> reply saved (`reply_done`), all of it orchestration.
    """
    overheads, errors = [], 0

    async def one(index):
        nonlocal errors
        pause = random.Random(seed * 100_003 + index)
        try:
            ws = await stack.socket()
        except Exception:
            errors += turns_per_session
            return
        try:
            await start_session(ws, voice_output=False)
            for _ in range(turns_per_session):
                await asyncio.sleep(pause.uniform(*think_s))
                try:
                    result = await typed_turn(ws, "hello")
                    overheads.append(result["reply_done"] * 1000)
                except Exception:
                    errors += 1
        finally:
            await ws.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(sessions)))
    elapsed = time.perf_counter() - started
    return {
        "turns_per_s": len(overheads) / elapsed,
        "p50": percentile(overheads, 50),
        "p95": percentile(overheads, 95),
        "p99": percentile(overheads, 99),
        "errors": errors,
    }


# -- the run --------------------------------------------------------------------------------------
@dataclass
class Plan:
    """How much to run: the full set, `--quick`, or smaller still (the harness's own test)."""

    rounds: int = 7
    lengths: tuple = (2, 5, 10)  # seconds of speech for the transcript figures
    sessions: tuple = (50, 100, 200)
    turns_per_session: int = 3
    think_s: tuple = THINK_S

    @classmethod
    def quick(cls):
        return cls(rounds=3, lengths=(2, 5), sessions=(50,), turns_per_session=2)


def run(plan: Plan, out=print, database_url: str = "") -> dict:
    runs = plan.rounds
    results: dict[str, float] = {}
    started = time.monotonic()

    def progress(what):
        out(f"[{time.monotonic() - started:5.0f} s] {what}")

    with ExitStack() as guard:
        llm = guard.enter_context(FakeLLMServer(api_key="sk-bench"))
        stack = Stack(llm_url=llm.base_url, llm=llm, tts_engine="piper", database_url=database_url)
        guard.callback(stack.stop)
        stack.start()
        progress(f"up: daphne, celery worker, redis, {stack.database}, fake LLM (300 ms to first token, 30 tokens/s)")

        # Interleaved, so the three see the same machine load (this machine is shared and noisy).
        streamed, whole, floor = [], [], []
        for _ in range(runs):
            streamed += asyncio.run(ttfa_streamed(stack, 1))
            whole += asyncio.run(ttfa_whole(stack, 1))
            floor += ttfa_floor(1)
        results.update(
            ttfa_streamed_ms=statistics.median(streamed),
            ttfa_whole_ms=statistics.median(whole),
            ttfa_floor_ms=statistics.median(floor),
        )
        results["ttfa_ratio"] = results["ttfa_streamed_ms"] / results["ttfa_whole_ms"]
        results["ttfa_overhead_ms"] = results["ttfa_streamed_ms"] - results["ttfa_floor_ms"]
        results["ttfa_streamed_p95_ms"] = percentile(streamed, 95)
        progress("time to first audio measured")

        for seconds in plan.lengths:
            results[f"final_ms_{seconds}s"] = statistics.median(asyncio.run(transcript_streamed(stack, seconds, runs)))
            results[f"whole_ms_{seconds}s"] = statistics.median(asyncio.run(transcript_whole(stack, seconds, runs)))
        results["web_peak_mb"] = peak_rss_mb(stack.processes["web"].pid)
        results["worker_peak_mb"] = peak_rss_mb(stack.processes["worker"].pid)
        progress("transcript latency measured")
        stack.stop()

        # Instant LLM (its own process, so it never competes with the clients) and instant engine.
        llm_proc, llm_url = llm_process(INSTANT_REPLY)
        guard.callback(stop_process, llm_proc)
        # No speech recognition here: its worker need not load and warm Vosk.
        silent = Stack(llm_url=llm_url, tts_engine="silence", database_url=database_url, preload="tts")
        guard.callback(silent.stop)
        silent.start()
        progress("up: daphne and a worker with the instant silence engine, an instant LLM")
        turns = asyncio.run(overhead(silent, runs * 5))
        values = [turn["end"] * 1000 for turn in turns]
        results["overhead_p50_ms"] = percentile(values, 50)
        results["overhead_p95_ms"] = percentile(values, 95)
        # Where a turn's time goes: medians of its milestones (ms after the message was sent).
        for mark in ("saved", "first_delta", "reply_done", "first_audio"):
            results[f"overhead_{mark}_ms"] = statistics.median(turn[mark] * 1000 for turn in turns)
        for sessions in plan.sessions:
            figures = asyncio.run(concurrency(silent, sessions, plan.turns_per_session, think_s=plan.think_s))
            results[f"sessions_{sessions}_turns_per_s"] = figures["turns_per_s"]
            results[f"sessions_{sessions}_p50_ms"] = figures["p50"]
            results[f"sessions_{sessions}_p95_ms"] = figures["p95"]
            results[f"sessions_{sessions}_p99_ms"] = figures["p99"]
            results[f"sessions_{sessions}_errors"] = figures["errors"]
            progress(f"{sessions} sessions measured")
        results["web_peak_mb"] = max(results["web_peak_mb"], peak_rss_mb(silent.processes["web"].pid))
    return results
