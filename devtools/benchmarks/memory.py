"""`manage.py benchmark --memory`: what memory costs a turn, side by side in one run (docs/benchmarks.md).

1. **Recall** (`recall()`): memory/recall.py and the system message, in this process, no database:
   a user's memories (MEMORY_MAX_PER_USER, 200), ranked against recent Chinese messages within
   MEMORY_RECALL_MAX_CHARS. Target: under 5 ms.
2. **Time to first audio, memory on and off** (`turns()`): two stacks of the voice-loop benchmark
   (devtools/benchmarks/voice_loop.py: daphne, a Celery worker with Piper, a private Redis, the
   database, the fake LLM with 300 ms to the first token and 30 tokens/s), one with
   `MEMORY_ENABLED=true` and `MEMORY_SUMMARIES=true`, one with both false, each user holding the
   same memories. The voice loop's time-to-first-audio turn (as `ttfa_streamed`: a typed message on
   the voice WebSocket -> the first audio frame; the reply is then interrupted, and saved so),
   the two stacks taking turns round by round (in alternating order) so that both see the same
   machine load. Memory on, each request carries the recalled memories (the recall query and
   ranking, in the turn's own database call), and each saved reply starts the background job (the
   worker, `default` queue: an LLM request for memory changes), which in use runs while the reply
   is spoken: the next turn comes after its LLM request and a pause of LISTEN_S, on both stacks
   alike (`memory_on_jobs` counts the jobs).
"""

import asyncio
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from devtools.benchmarks.voice_loop import (
    REPLY_60,
    ROOT,
    Stack,
    new_conversation,
    percentile,
    start_session,
    stop_reply,
    typed_turn,
)
from devtools.fake_llm import FakeLLMServer, Reply
from memory.persona import Persona, system_message
from memory.recall import Candidate, memory_terms, recall

FACTS = ["喜欢爬山", "女儿在上海读大学", "对花粉过敏", "每天早上跑步", "养了一只叫咪咪的猫", "在北京做程序员"]
RECENT = ["我下周要去上海看女儿，", "你觉得带什么礼物好？", "她喜欢看书和爬山。", "天气怎么样？"]
SETTINGS = {  # name -> the environment of its stack
    "memory_off": {"MEMORY_ENABLED": "false", "MEMORY_SUMMARIES": "false"},
    "memory_on": {"MEMORY_ENABLED": "true", "MEMORY_SUMMARIES": "true"},
}
LISTEN_S = 1.0  # between turns: the reply is heard (seconds in use); the memory job runs then
_RECALLED = re.compile(r"<memories>\n.*?\n(.*?)\n</memories>", re.S)


def fact(index: int) -> str:
    return f"{FACTS[index % len(FACTS)]}（第{index}条）"


def recall_cost(*, count: int | None = None, rounds: int = 200) -> dict:
    """Recall of `count` memories and the system message built, `rounds` times: p50 and p95 (ms);
    and the first round alone, `recall_cold_ms`, before the process knew the memories' terms (a
    web process keeps them, memory/recall.py `memory_terms`: its user's next turns are the others)."""
    count = count or settings.MEMORY_MAX_PER_USER
    now = timezone.now()
    memories = [Candidate(i, fact(i), now - timedelta(days=i)) for i in range(count)]
    memory_terms.cache_clear()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        picked = recall(memories, RECENT, budget=settings.MEMORY_RECALL_MAX_CHARS, now=now)
        system_message(
            base=settings.LLM_SYSTEM_PROMPT, persona=Persona(), language="zh", memories=[m.text for m in picked]
        )
        times.append((time.perf_counter() - started) * 1000)
    return {
        "recall_memories": float(count),
        "recall_cold_ms": times[0],
        "recall_p50_ms": statistics.median(times),
        "recall_p95_ms": percentile(times, 95),
    }


def seed_memories(stack: Stack, count: int) -> None:
    """`count` memories for the stack's benchmark user (learnt from no message, confirmed a day apart)."""
    code = (
        "from datetime import timedelta; from django.utils import timezone;"
        "from django.contrib.auth.models import User; from memory.models import Memory;"
        "from devtools.benchmarks.memory import fact;"
        "u = User.objects.get(username='bench'); now = timezone.now();"
        f"Memory.objects.bulk_create([Memory(owner=u, text=fact(i), confirmed_at=now - timedelta(days=i))"
        f" for i in range({int(count)})])"
    )
    command = [sys.executable, "manage.py", "shell", "-c", code]
    subprocess.run(command, cwd=ROOT, env=stack.env(), check=True, capture_output=True)  # noqa: S603 - ours


def recalled(llm: FakeLLMServer) -> int:
    """How many memories the newest streamed (chat) request carried."""
    streamed = [body for body in list(llm.requests) if body.get("stream")]
    if not streamed:
        return 0
    match = _RECALLED.search(streamed[-1]["messages"][0]["content"])
    return len(match.group(1).splitlines()) if match else 0


async def _turn(ws) -> dict:
    """The voice loop's time-to-first-audio turn (as `ttfa_streamed`): a typed message, its reply cut
    at the first audio frame (and saved so); ms after sending of `saved` (the user's message saved:
    `turn`), `first_delta` (the LLM's first text) and `first_audio`."""
    marks = await typed_turn(ws, "Plan my evening", until_first_audio=True)
    await stop_reply(ws)
    await new_conversation(ws)
    return {k: None if marks[k] is None else marks[k] * 1000 for k in ("saved", "first_delta", "first_audio")}


async def _interleaved(stacks: dict, llms: dict, rounds: int) -> dict:
    """`rounds` turns of each stack, the stacks taking turns (in alternating order). After each turn,
    as a user would listen to the reply before speaking again, the background job of the last one
    (memory on) has asked the LLM and LISTEN_S has passed, so that it has finished too."""
    names = list(stacks)
    sockets = {name: await stacks[name].socket() for name in names}
    try:
        for ws in sockets.values():
            await start_session(ws, voice_output=True, conversation_id=None)
        marks: dict[str, list] = {name: [] for name in names}
        for index in range(rounds):
            for name in names if index % 2 == 0 else reversed(names):
                marks[name].append(await _turn(sockets[name]))
                if SETTINGS[name]["MEMORY_ENABLED"] == "true":
                    wait = llms[name].wait_for_structured
                    if not await asyncio.to_thread(wait, "memory_update", len(marks[name]), 30):
                        raise RuntimeError("the memory job of a turn did not ask the LLM within 30 s")
                await asyncio.sleep(LISTEN_S)
        return marks
    finally:
        for ws in sockets.values():
            await ws.close()


def turns(*, rounds: int = 10, count: int | None = None, out=print, database_url: str = "") -> dict:
    """Time to first audio, memory on and off, the two stacks interleaved (see the module)."""
    count = settings.MEMORY_MAX_PER_USER if count is None else count
    started = time.monotonic()
    results: dict[str, float] = {}
    with ExitStack() as guard:
        stacks, llms = {}, {}
        for name, env in SETTINGS.items():
            llms[name] = guard.enter_context(
                FakeLLMServer(api_key="sk-bench", default=Reply(REPLY_60, ttft=0.3, tokens_per_s=30))
            )
            stacks[name] = Stack(
                llm_url=llms[name].base_url,
                llm=llms[name],
                tts_engine="piper",
                preload="tts",  # typed turns: no speech recognition
                database_url=database_url,
                extra_env=env,
            )
            guard.callback(stacks[name].stop)

        def start(name):
            stacks[name].start()
            seed_memories(stacks[name], count)
            out(f"[{time.monotonic() - started:5.0f} s] {name}: up ({stacks[name].database}), {count} memories")

        # Both start at once (most of a start is waiting for processes to load), and are stopped
        # either way; list() re-raises the first failure.
        with ThreadPoolExecutor(max_workers=len(stacks)) as pool:
            list(pool.map(start, stacks))
        marks = asyncio.run(_interleaved(stacks, llms, rounds))
        for name, turns_marks in marks.items():
            values = [m["first_audio"] for m in turns_marks]
            results[f"{name}_ttfa_p50_ms"] = statistics.median(values)
            results[f"{name}_ttfa_p95_ms"] = percentile(values, 95)
            for mark in ("saved", "first_delta"):  # where the time goes (medians)
                results[f"{name}_{mark}_ms"] = statistics.median(m[mark] for m in turns_marks)
            results[f"{name}_recalled"] = float(recalled(llms[name]))
            results[f"{name}_jobs"] = float(len(llms[name].structured_requests.get("memory_update", [])))
        results["memory_ttfa_delta_ms"] = results["memory_on_ttfa_p50_ms"] - results["memory_off_ttfa_p50_ms"]
        out(f"[{time.monotonic() - started:5.0f} s] {rounds} turns each measured")
    return results


def run(*, rounds: int = 10, count: int | None = None, out=print, database_url: str = "") -> dict:
    """Both parts: recall's cost, then the turns memory on and off."""
    results = recall_cost(count=count)
    results["turns_per_setting"] = float(rounds)
    results.update(turns(rounds=rounds, count=count, out=out, database_url=database_url))
    return results
