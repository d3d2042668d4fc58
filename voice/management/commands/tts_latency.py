"""manage.py tts_latency: how long a speech job takes to its first audio, measured from the requester."""

import statistics
import time

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from voice import jobs

TEXTS = {
    "one short sentence": "Hello, how are you today?",
    "three sentences": "Good morning. The weather is mild today. Enjoy your walk.",
    "one long sentence": (
        "In the afternoon a few clouds may gather over the hills to the west, but the evening should stay "
        "dry and calm for anyone heading out."
    ),
}


async def _one(text, engine):
    """(seconds to the first chunk, seconds to done, the first chunk, the done message, request wall time)."""
    wall, started = time.time(), time.perf_counter()
    first = first_at = None
    async for message in jobs.synthesize(text=text, engine_name=engine):
        if message["type"] == "voice.tts.chunk" and first is None:
            first, first_at = message, time.perf_counter() - started
        elif message["type"] == "voice.tts.error":
            raise CommandError(f"Synthesis failed ({message['code']}): {message['message']}")
        elif message["type"] == "voice.tts.done":
            return first_at, time.perf_counter() - started, first, message, wall
    raise CommandError("The job ended without a done message.")


class Command(BaseCommand):
    help = (
        "Measure text-to-speech latency through voice.jobs, as the site sees it: in a Celery worker when Redis "
        "is configured (start one first), else in this process. Prints the median time to the first audio chunk, "
        "split into queueing, synthesis and delivery (from the jobs' own timestamps)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=10, help="Jobs per text (default 10).")
        parser.add_argument("--engine", help="A TTS engine name (default: the configured chain).")
        parser.add_argument("--text", action="append", help="Your own text (repeatable) instead of the built-in ones.")
        parser.add_argument("--warmup", type=int, default=3, help="Jobs run first and not counted (default 3).")

    def handle(self, *args, runs=10, engine=None, text=None, warmup=3, **options):
        if runs < 1:
            raise CommandError("--runs must be at least 1.")
        texts = {f"text {i + 1}": t for i, t in enumerate(text)} if text else TEXTS
        where = "this process (embedded)" if settings.VOICE_JOBS_IN_PROCESS else "a Celery worker"
        measure = async_to_sync(_one)
        for _ in range(warmup):
            measure("Warm up.", engine)
        self.stdout.write(f"Jobs run in {where}; {runs} runs per text after {warmup} warm-up jobs. Medians:")
        for label, value in texts.items():
            results = [measure(value, engine) for _ in range(runs)]
            firsts = [r[0] * 1000 for r in results]
            done = results[-1][3]
            queued = statistics.median((r[2]["started"] - r[4]) * 1000 for r in results)
            synthesis = statistics.median((r[2]["produced"] - r[2]["started"]) * 1000 for r in results)
            self.stdout.write(
                f"  {label}: {done['engine']} ({done['voice']}), {done['duration']:.2f} s of audio\n"
                f"    first chunk {statistics.median(firsts):.1f} ms (min {min(firsts):.1f}, max {max(firsts):.1f}); "
                f"whole job {statistics.median(r[1] * 1000 for r in results):.1f} ms\n"
                f"    of which: until the job started {queued:.1f} ms, synthesis of the first piece {synthesis:.1f} ms"
            )
