"""One synthesis stream per turn against one job per sentence, side by side in one run (issue 18).

Two stacks as the voice loop's overhead figures use them (daphne + a worker with 8 threads, the
instant `silence` engine, an instant LLM in its own process writing a two-sentence reply), one with
VOICE_TTS_STREAM on and one with it off, measured round by round in turn so both see the same load:

* a spoken turn's orchestration overhead (message sent -> `audio_done`), p50 / p95, its first audio,
  the part of it up to the LLM's first text and the part after (where the two designs differ), and the
  synthesis jobs it started (the web process's mm_voice_jobs_total);
* time to first audio of a typed turn with Piper and the fake LLM (300 ms to the first token, 30
  tokens/s) minus its floor (voice_loop's `ttfa_*` figures), the two designs and the floor interleaved;
* turns per second with `sessions` sessions talking back to back (no think time) on the one worker:
  a stream holds a worker thread for its turn, a per-sentence job only while it speaks;
* the worker thread time a turn holds (the synthesis jobs' own run times, from the worker's log: one
  turn at a time, 0.1 s apart), and the worker threads busy on average while the `sessions` talk at once.
"""

import asyncio
import re
import statistics
import tempfile
import time
from contextlib import ExitStack

from devtools.fake_llm import FakeLLMServer
from devtools.localprocs import stop_process

from .voice_loop import (
    INSTANT_REPLY,
    LOG_DIR,
    Stack,
    llm_process,
    overhead,
    percentile,
    start_session,
    ttfa_floor,
    ttfa_streamed,
    typed_turn,
)

MODES = {"per_sentence": "false", "stream": "true"}


# Celery's INFO line for each job that ended: its run time is what it held a worker thread for.
JOB_ENDED = re.compile(r"Task voice\.tasks\.tts_(?:synthesize|stream)\[[^\]]+\] succeeded in ([0-9.e+-]+)s")
LOG_WAIT_S = 30.0  # a bound: a job's line is written just after its last message reached the requester


def start_pair(guard: ExitStack, **stack_options) -> dict[str, Stack]:
    """One stack per design (VOICE_TTS_STREAM on, off), stopped with `guard`."""
    stacks = {}
    for mode, flag in MODES.items():
        stack = Stack(**stack_options, extra_env={"VOICE_TTS_STREAM": flag})
        guard.callback(stack.stop)
        stack.start()
        stacks[mode] = stack
    return stacks


async def tts_jobs_started(stack: Stack) -> float:
    """Synthesis jobs (one-text and stream) the web process has started, from its /metrics."""
    async with stack.http() as http:
        body = (await http.get("/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("mm_voice_jobs_total{") and 'kind="tts' in line
    )


def jobs_ended(stack: Stack) -> tuple[int, float]:
    """(synthesis jobs ended, worker thread seconds they held), from the stack's worker log."""
    path = stack.log_path("worker")
    if path is None or not path.exists():
        return 0, 0.0
    times = [float(match.group(1)) for match in JOB_ENDED.finditer(path.read_text(errors="replace"))]
    return len(times), sum(times)


def thread_time_since(stack: Stack, before: tuple[int, float], jobs_started: float) -> float:
    """Worker thread seconds held by the jobs started since `before`, once all of them have ended."""
    deadline = time.monotonic() + LOG_WAIT_S
    while (ended := jobs_ended(stack))[0] - before[0] < jobs_started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{jobs_started - ended[0] + before[0]:g} synthesis jobs never ended")
        time.sleep(0.05)  # polling a log file for a condition, with a bound
    return ended[1] - before[1]


async def throughput(stack: Stack, sessions: int, turns: int) -> float:
    """Spoken turns per second, `sessions` sessions each doing `turns` turns back to back."""

    async def one():
        ws = await stack.socket()
        try:
            await start_session(ws, voice_output=True)
            for _ in range(turns):
                await typed_turn(ws, "ping")
        finally:
            await ws.close()

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(sessions)))
    return sessions * turns / (time.perf_counter() - started)


def ttfa(rounds: int, out, started: float, database_url: str) -> dict[str, float]:
    """Time to first audio minus floor, Piper, per design (medians), measured round by round in turn."""
    results: dict[str, float] = {}
    with ExitStack() as guard:
        llm = guard.enter_context(FakeLLMServer(api_key="sk-bench"))
        stacks = start_pair(
            guard, llm_url=llm.base_url, llm=llm, tts_engine="piper", database_url=database_url, preload="tts"
        )
        out(f"[{time.monotonic() - started:5.0f} s] up: two stacks (stream on / off), Piper, the fake LLM")
        samples: dict[str, list] = {mode: [] for mode in [*MODES, "floor"]}
        for _ in range(rounds):
            for mode, stack in stacks.items():
                samples[mode] += asyncio.run(ttfa_streamed(stack, 1))
            samples["floor"] += ttfa_floor(1)
        floor = statistics.median(samples["floor"])
        results["tts_ttfa_floor_ms"] = floor
        for mode in MODES:
            results[f"tts_{mode}_ttfa_ms"] = statistics.median(samples[mode])
            results[f"tts_{mode}_ttfa_overhead_ms"] = results[f"tts_{mode}_ttfa_ms"] - floor
    return results


def run(*, rounds: int = 4, turns_per_round: int = 15, sessions: int = 16, out=print, database_url: str = "") -> dict:
    started = time.monotonic()
    results = ttfa(rounds * 2, out, started, database_url)
    with ExitStack() as guard:
        llm_proc, llm_url = llm_process(INSTANT_REPLY)
        guard.callback(stop_process, llm_proc)
        logs = LOG_DIR or guard.enter_context(tempfile.TemporaryDirectory(prefix="mm-bench-logs-"))
        stacks = start_pair(
            guard, llm_url=llm_url, tts_engine="silence", database_url=database_url, preload="tts", log_dir=logs
        )
        out(f"[{time.monotonic() - started:5.0f} s] up: two stacks (stream on / off), silence engine, instant LLM")
        turns: dict[str, list] = {mode: [] for mode in MODES}
        rates: dict[str, list] = {mode: [] for mode in MODES}
        jobs = dict.fromkeys(MODES, 0.0)
        held = dict.fromkeys(MODES, 0.0)  # worker thread seconds, one turn at a time
        busy: dict[str, list] = {mode: [] for mode in MODES}  # threads busy on average, sessions at once
        for _ in range(rounds):
            for mode, stack in stacks.items():
                before, ended = asyncio.run(tts_jobs_started(stack)), jobs_ended(stack)
                turns[mode] += asyncio.run(overhead(stack, turns_per_round))
                jobs[mode] += (started_now := asyncio.run(tts_jobs_started(stack)) - before)
                held[mode] += thread_time_since(stack, ended, started_now)
                before, ended = asyncio.run(tts_jobs_started(stack)), jobs_ended(stack)
                rates[mode].append(rate := asyncio.run(throughput(stack, sessions, 3)))
                seconds = thread_time_since(stack, ended, asyncio.run(tts_jobs_started(stack)) - before)
                busy[mode].append(seconds / (sessions * 3 / rate))
        for mode in MODES:
            ends = [turn["end"] * 1000 for turn in turns[mode]]
            firsts = [turn["first_audio"] * 1000 for turn in turns[mode]]
            results[f"tts_{mode}_overhead_p50_ms"] = percentile(ends, 50)
            results[f"tts_{mode}_overhead_p95_ms"] = percentile(ends, 95)
            results[f"tts_{mode}_first_audio_p50_ms"] = percentile(firsts, 50)
            # Where the time goes: up to the LLM's first text (the chat turn reading and writing its rows,
            # the same in both designs), and from there on (the synthesis path the designs differ in).
            to_delta = [turn["first_delta"] * 1000 for turn in turns[mode]]
            after = [(turn["end"] - turn["first_delta"]) * 1000 for turn in turns[mode]]
            results[f"tts_{mode}_to_first_delta_p50_ms"] = percentile(to_delta, 50)
            results[f"tts_{mode}_after_first_delta_p50_ms"] = percentile(after, 50)
            results[f"tts_{mode}_after_first_delta_p95_ms"] = percentile(after, 95)
            results[f"tts_{mode}_jobs_per_turn"] = jobs[mode] / len(turns[mode])
            results[f"tts_{mode}_turns_per_s_{sessions}"] = sorted(rates[mode])[len(rates[mode]) // 2]
            results[f"tts_{mode}_thread_ms_per_turn"] = held[mode] * 1000 / len(turns[mode])
            results[f"tts_{mode}_threads_busy_{sessions}"] = sorted(busy[mode])[len(busy[mode]) // 2]
        out(f"[{time.monotonic() - started:5.0f} s] measured")
    return results
