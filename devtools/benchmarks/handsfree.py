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
prepared replies that were thrown away). Synthetic speech is flat and clean: these figures show what
the rules cost and save on it, not how real people would be cut off.
"""

import asyncio
import json
import statistics
import time
from contextlib import ExitStack

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


def streamed_requests(llm: FakeLLMServer) -> int:
    return sum(1 for body in list(llm.requests) if body.get("stream"))


async def one_clip(stack: Stack, ws, clip: dict) -> dict:
    """Stream one clip at real time; when (s after the end of speech) the final and the first audio came."""
    pcm = clip["audio"].tobytes()
    step = 16 * 2 * FRAME_MS
    t0 = time.perf_counter()
    speech_end = t0 + clip["end"] / 1000
    requests_before = streamed_requests(stack.llm)
    first_request = len(stack.llm.requests)

    async def send():
        for index, start in enumerate(range(0, len(pcm), step)):
            await asyncio.sleep(max(0.0, t0 + index * FRAME_MS / 1000 - time.perf_counter()))
            await ws.send(pcm[start : start + step])

    sender = asyncio.create_task(send())
    result = {"final_s": None, "audio_s": None, "cut_off": False, "final_text": None, "partials": []}
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
            if event["type"] == "partial":
                result["partials"].append((round((now - speech_end) * 1000), event["text"]))
            if event["type"] == "final" and event.get("text") and result["final_s"] is None:
                result["final_text"] = event["text"]
                result["final_s"] = now - speech_end
                result["cut_off"] = now < speech_end
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    if result["final_s"] is not None:
        await stop_reply(ws)  # only the first audio counts
    result["llm_requests"] = streamed_requests(stack.llm) - requests_before
    result["requests"] = [b["messages"] for b in list(stack.llm.requests)[first_request:] if b.get("stream")]
    await ws.send(json.dumps({"type": "configure", "conversation_id": None}))
    while json.loads(await ws.recv())["type"] != "ready":
        pass
    return result


async def measure(stack: Stack, clips: list[dict], rounds: int) -> list[dict]:
    ws = await stack.socket()
    try:
        await start_session(ws, voice_output=True, mode="handsfree", sample_rate=16000, conversation_id=None)
        return [await one_clip(stack, ws, clip) for _ in range(rounds) for clip in clips]
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
    }


def run(rounds: int = 2, out=print, database_url: str = "", settings_names=None) -> dict:
    """{setting name: summary} for each setting, in the order of SETTINGS."""
    started = time.monotonic()
    clips = turn_fixtures.fixtures()
    out(f"[{time.monotonic() - started:5.0f} s] {len(clips)} fixtures made")
    results = {}
    for name in settings_names or SETTINGS:
        with ExitStack() as guard:
            llm = guard.enter_context(
                FakeLLMServer(api_key="sk-bench", default=Reply(REPLY_60, ttft=0.3, tokens_per_s=30))
            )
            stack = Stack(
                llm_url=llm.base_url, llm=llm, tts_engine="piper", database_url=database_url, extra_env=SETTINGS[name]
            )
            guard.callback(stack.stop)
            stack.start()
            results[name] = summary(asyncio.run(measure(stack, clips, rounds)))
        out(f"[{time.monotonic() - started:5.0f} s] {name}: {results[name]}")
    return results


def flat(results: dict) -> dict:
    """{"handsfree_<setting>_<figure>": value}, as the benchmark's results table has them."""
    return {f"handsfree_{name}_{key}": float(value) for name, row in results.items() for key, value in row.items()}
