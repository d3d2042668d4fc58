"""Hands-free voice-to-voice: end of speech -> first reply audio, per end-of-turn setting, in one run.

    env $(./dev services) DEBUG=true .venv/bin/python manage.py benchmark --handsfree

A real client streams each end-of-turn fixture (devtools/benchmarks/turn_fixtures.py: English Piper
and Mandarin espeak-ng speech with inner pauses of 300-900 ms, then silence) at a microphone's pace
into `/ws/voice/` in hands-free mode, against the benchmark's stack (daphne, a Celery worker with
Vosk and Piper, Redis, the fake LLM: 300 ms to the first token, 30 tokens/s). Each setting runs on a
daphne of its own started with that setting, one after the other, the fixtures in the same order.

Per setting: the median and p95 of end of speech (the audio's, known to the client) -> the first
binary audio frame of the reply; the same to the `final` transcript; false cut-offs (a turn started
at an inner pause); clips that got no reply; and the extra streamed LLM requests per turn (the
prepared replies that were thrown away). With preemptive replies, each turn's prepared requests are
also told apart (`preemptive_<reason>` counts, and a line per turn): used (the turn's request was the
prepared one), or dropped because the user continued (prepared at an inner pause), because its
transcript differs from the final one, or because its messages differ (same text). Synthetic speech
is flat and clean: these figures show what the rules cost and save on it, not how real people would
be cut off.
"""

import asyncio
import json
import logging
import statistics
import time
from contextlib import ExitStack
from typing import Any

from devtools.benchmarks import turn_fixtures
from devtools.benchmarks.voice_loop import REPLY_60, Stack, percentile, start_session, stop_reply
from devtools.fake_llm import FakeLLMServer, Reply

SETTINGS = {  # name -> the environment of its daphne (everything else as in production)
    "silence": {"TURN_DETECTION": "silence", "TURN_PREEMPTIVE": "false"},  # today's 700 ms rule
    "silence_preemptive": {"TURN_DETECTION": "silence", "TURN_PREEMPTIVE": "true"},
    "smart_turn": {"TURN_DETECTION": "smart_turn", "TURN_PREEMPTIVE": "false"},
    "smart_turn_preemptive": {"TURN_DETECTION": "smart_turn", "TURN_PREEMPTIVE": "true"},
}
FRAME_MS = 30
NO_REPLY_AFTER_S = 8.0  # after the end of speech: the clip got no reply (an empty transcript)
REASONS = ("used", "user_continued", "text_differs", "messages_differ", "same_request")


class TimedLLM(FakeLLMServer):
    """The fake LLM, with when each request arrived (perf_counter): a prepared request from the turn's."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.arrived: list[float] = []

    def _record(self, body, headers):
        self.arrived.append(time.perf_counter())  # before the request is visible: the lists stay aligned
        super()._record(body, headers)


def streamed_requests(llm: FakeLLMServer) -> int:
    return sum(1 for body in list(llm.requests) if body.get("stream"))


def _user_text(messages: list[dict]) -> str:
    return next((m.get("content") or "" for m in reversed(messages) if m["role"] == "user"), "")


def _first_difference(a: list[dict], b: list[dict]) -> str:
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
            return f"message {index} ({x.get('role')}): {', '.join(keys)} differ"
    return f"{len(a)} messages vs {len(b)}"


async def preemptive_used(stack: Stack) -> float:
    """The server's count of prepared replies that turns used (mm_preemptive_generations_total)."""
    async with stack.http() as client:
        text = (await client.get("/metrics")).text
    prefix = 'mm_preemptive_generations_total{outcome="used"}'
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def preemption(result: dict) -> list[dict]:
    """What became of each reply prepared in this turn: [{text, at_ms, reason, detail}], `at_ms` when its
    request reached the LLM (ms after the end of speech). The last request was the turn's: prepared and
    used when the server counted a prepared reply used in this turn, else the turn's own."""
    requests, final = result["requests"], result["final_text"]
    if not requests or final is None or result["cut_off"]:
        return []
    *prepared, (turn_messages, turn_ms) = requests
    rows = []
    for messages, at_ms in prepared:
        text = _user_text(messages)
        if at_ms < 0:
            reason, detail = "user_continued", ""
        elif text.split() != final.split():
            reason, detail = "text_differs", ""
        elif messages != turn_messages:
            reason, detail = "messages_differ", _first_difference(messages, turn_messages)
        else:
            reason, detail = "same_request", "the same request, asked twice"
        rows.append({"text": text, "at_ms": round(at_ms), "reason": reason, "detail": detail})
    if result["used"]:
        rows.append({"text": _user_text(turn_messages), "at_ms": round(turn_ms), "reason": "used", "detail": ""})
    return rows


async def one_clip(stack: Stack, ws, clip: dict, preemptive: bool = False) -> dict:
    """Stream one clip at real time; when (s after the end of speech) the final and the first audio came;
    with `preemptive`, what became of the replies prepared (`preemption`)."""
    used_before = await preemptive_used(stack) if preemptive else 0.0
    pcm = clip["audio"].tobytes()
    step = 16 * 2 * FRAME_MS
    t0 = time.perf_counter()
    speech_end = t0 + clip["end"] / 1000
    llm = stack.llm
    assert isinstance(llm, TimedLLM)
    requests_before = streamed_requests(llm)
    first_request = len(llm.requests)

    async def send():
        for index, start in enumerate(range(0, len(pcm), step)):
            await asyncio.sleep(max(0.0, t0 + index * FRAME_MS / 1000 - time.perf_counter()))
            await ws.send(pcm[start : start + step])

    sender = asyncio.create_task(send())
    result: dict[str, Any] = {
        "final_s": None,
        "audio_s": None,
        "cut_off": False,
        "final_text": None,
        "delta_s": None,
        "sentence_s": None,
    }
    try:
        deadline = speech_end + NO_REPLY_AFTER_S
        while True:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=max(0.05, deadline - time.perf_counter()))
            except TimeoutError:
                break
            now = time.perf_counter()
            if isinstance(message, bytes):
                if result["final_s"] is not None:
                    result["audio_s"] = now - speech_end
                    break
                continue
            event = json.loads(message)
            if event["type"] == "error":
                raise RuntimeError(f"{event['code']}: {event['message']}")
            for kind in ("delta", "sentence"):  # the first of each, as the reply's milestones
                if event["type"] == kind and result["final_s"] is not None and result[f"{kind}_s"] is None:
                    result[f"{kind}_s"] = now - speech_end
            if event["type"] == "final" and event.get("text") and result["final_s"] is None:
                result["final_text"] = event["text"]
                result["final_s"] = now - speech_end
                result["cut_off"] = now < speech_end
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    if result["final_s"] is not None:
        await stop_reply(ws)  # only the first audio counts
    result["llm_requests"] = streamed_requests(llm) - requests_before
    bodies, arrived = list(llm.requests)[first_request:], list(llm.arrived)[first_request:]
    result["requests"] = [
        (body["messages"], (at - speech_end) * 1000)
        for body, at in zip(bodies, arrived, strict=False)
        if body.get("stream")
    ]
    result["used"] = (await preemptive_used(stack) - used_before) if preemptive else 0.0
    result["preemption"] = preemption(result) if preemptive else []
    await ws.send(json.dumps({"type": "configure", "conversation_id": None}))
    while json.loads(await ws.recv())["type"] != "ready":
        pass
    return result


async def measure(stack: Stack, clips: list[dict], rounds: int, preemptive: bool = False) -> list[dict]:
    ws = await stack.socket()
    try:
        await start_session(ws, voice_output=True, mode="handsfree", sample_rate=16000, conversation_id=None)
        results = []
        for _ in range(rounds):
            for clip in clips:
                results.append({"clip": clip["name"], **await one_clip(stack, ws, clip, preemptive)})
        return results
    finally:
        await ws.close()


def summary(results: list[dict]) -> dict:
    answered = [r for r in results if r["audio_s"] is not None and not r["cut_off"]]
    audio = [r["audio_s"] * 1000 for r in answered]
    final = [r["final_s"] * 1000 for r in answered]
    return {
        "turns": len(results),
        "p50_ms": statistics.median(audio) if audio else float("nan"),
        "p95_ms": percentile(audio, 95),
        "final_p50_ms": statistics.median(final) if final else float("nan"),
        "false_cutoffs": sum(r["cut_off"] for r in results),
        "no_reply": sum(r["final_s"] is None or r["audio_s"] is None for r in results),
        "extra_llm_requests_per_turn": (
            statistics.mean(r["llm_requests"] - 1 for r in answered) if answered else float("nan")
        ),
        **{
            f"preemptive_{reason}": sum(row["reason"] == reason for r in results for row in r["preemption"])
            for reason in REASONS
        },
    }


def turn_lines(results: list[dict]) -> list[str]:
    """A line per turn (its clip, final transcript and when it came), one per prepared reply and its fate."""
    lines = []
    for r in results:
        final = "-" if r["final_s"] is None else f"{r['final_s'] * 1000:.0f} ms"
        marks = " ".join(
            f"{name} {'-' if r[key] is None else f'{r[key] * 1000:.0f}'}"
            for name, key in (("delta", "delta_s"), ("sentence", "sentence_s"), ("audio", "audio_s"))
        )
        cut = " CUT OFF" if r["cut_off"] else ""
        lines.append(f"  {r['clip']:<12} final {final:>8} {marks} ms {r['final_text']!r}{cut}")
        for row in r["preemption"]:
            detail = f" ({row['detail']})" if row["detail"] else ""
            lines.append(f"      prepared at {row['at_ms']:>6} ms {row['text']!r}: {row['reason']}{detail}")
    return lines


def run(rounds: int = 2, out=print, database_url: str = "", settings_names=None) -> dict:
    """{setting name: summary} for each setting, in the order of SETTINGS."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a /metrics read per clip: not worth a line each
    started = time.monotonic()
    clips = turn_fixtures.fixtures()
    out(f"[{time.monotonic() - started:5.0f} s] {len(clips)} fixtures made")
    results = {}
    for name in settings_names or SETTINGS:
        with ExitStack() as guard:
            llm = guard.enter_context(TimedLLM(api_key="sk-bench", default=Reply(REPLY_60, ttft=0.3, tokens_per_s=30)))
            stack = Stack(
                llm_url=llm.base_url, llm=llm, tts_engine="piper", database_url=database_url, extra_env=SETTINGS[name]
            )
            guard.callback(stack.stop)
            stack.start()
            preemptive = SETTINGS[name].get("TURN_PREEMPTIVE") == "true"
            turns = asyncio.run(measure(stack, clips, rounds, preemptive))
            results[name] = summary(turns)
        out(f"[{time.monotonic() - started:5.0f} s] {name}: {results[name]}")
        if preemptive:
            for line in turn_lines(turns):
                out(line)
    return results


def flat(results: dict) -> dict:
    """{"handsfree_<setting>_<figure>": value}, as the benchmark's results table has them."""
    return {f"handsfree_{name}_{key}": float(value) for name, row in results.items() for key, value in row.items()}
