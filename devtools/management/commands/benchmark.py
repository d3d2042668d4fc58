import json
import os
import platform

from django.core.management.base import BaseCommand, CommandError

from devtools.benchmarks import cosyvoice_gpu as gpu_benchmark
from devtools.benchmarks import handsfree as handsfree_benchmark
from devtools.benchmarks import memory as memory_benchmark
from devtools.benchmarks import tts_stream as tts_stream_benchmark
from devtools.benchmarks import voice_loop as benchmark

TARGETS = {
    "ttfa_ratio": ("<=", 0.30),
    "ttfa_overhead_ms": ("<", 30),
    "final_ms_2s": ("<", 150),
    "final_ms_5s": ("<", 150),
    "final_ms_10s": ("<", 150),
    "overhead_p50_ms": ("<", 20),
    "overhead_p95_ms": ("<", 50),
    "sessions_200_errors": ("<=", 0),
    "sessions_200_p99_ms": ("<", 250),
    "recall_p95_ms": ("<", 5),
    # Memory on vs off, the same turns interleaved (issue 16: a turn's latency unchanged, within noise).
    "memory_ttfa_delta_ms": ("<", 25),
    # Hands-free end of speech -> first reply audio (issue 15), for the new end-of-turn decision.
    "handsfree_smart_turn_preemptive_p50_ms": ("<=", 650),
    "handsfree_smart_turn_preemptive_p95_ms": ("<=", 900),
    "handsfree_smart_turn_p50_ms": ("<=", 650),
    "handsfree_smart_turn_p95_ms": ("<=", 900),
    # One synthesis stream per turn (issue 18): a two-sentence spoken turn's orchestration overhead.
    "tts_stream_overhead_p50_ms": ("<", 20),
    "tts_stream_overhead_p95_ms": ("<", 40),
}


def machine() -> str:
    system = f"{platform.system()} {platform.release()}"
    return f"{platform.machine()}, {os.cpu_count()} cores, {system}, Python {platform.python_version()}"


class Command(BaseCommand):
    help = "Measure the voice loop (time to first audio, transcript latency, overhead, concurrency) and print a table."

    def add_arguments(self, parser):
        parser.add_argument("--quick", action="store_true", help="A reduced set (under two minutes).")
        parser.add_argument("--json", metavar="FILE", help='Also write {"machine": ..., "results": {...}} to FILE.')
        parser.add_argument(
            "--gpu",
            action="store_true",
            help="CosyVoice2 on a GPU instead (devtools/benchmarks/cosyvoice_gpu.py, docs/benchmarks.md).",
        )
        parser.add_argument("--rounds", type=int, help="Rounds of each latency figure (default 7; --quick 3).")
        parser.add_argument("--sessions", help="Concurrent session counts, e.g. 50,100,200 (the default; --quick 50).")
        parser.add_argument(
            "--memory",
            action="store_true",
            help="Only what memory costs a turn: recall of 200 memories, and time to first audio with memory on "
            "and off side by side (devtools/benchmarks/memory.py; --rounds: turns of each, default 10; ~2 min).",
        )
        parser.add_argument(
            "--tts-stream",
            action="store_true",
            help="Only one synthesis stream per turn against one job per sentence, side by side: overhead and "
            "spoken turns per second on one worker (devtools/benchmarks/tts_stream.py; --rounds, default 4; ~3 min).",
        )
        parser.add_argument(
            "--handsfree",
            action="store_true",
            help="Only the hands-free end of speech -> first audio figures, per end-of-turn setting "
            "(devtools/benchmarks/handsfree.py; the full run includes them).",
        )
        gpu_benchmark.add_arguments(parser)
        parser.add_argument(
            "--database",
            metavar="URL",
            default=os.environ.get("DATABASE_URL", ""),
            help="A MySQL/MariaDB server (mysql://user:password@host:port/any) on which to make a throw-away "
            "database, as in production (default: $DATABASE_URL when it names one; else a throw-away SQLite file).",
        )

    def handle(
        self,
        *args,
        quick=False,
        json=None,
        database="",
        gpu=False,
        rounds=None,
        sessions=None,
        handsfree=False,
        tts_stream=False,
        **options,
    ):
        if gpu:
            return gpu_benchmark.handle(self, json_path=json, machine=machine(), **options)
        plan = benchmark.Plan.quick() if quick else benchmark.Plan()
        if rounds is not None:
            if rounds < 1:
                raise CommandError("--rounds must be at least 1.")
            plan.rounds = rounds
        if sessions is not None:
            try:
                plan.sessions = tuple(int(n) for n in sessions.split(",") if n.strip())
            except ValueError:
                raise CommandError("--sessions takes numbers separated by commas, e.g. 50,100,200.") from None
            if not plan.sessions or min(plan.sessions) < 1:
                raise CommandError("--sessions needs at least one count >= 1.")
        if database and not database.startswith("mysql"):
            database = ""  # SQLite: a throw-away file of the benchmark's own
        try:
            if tts_stream:
                results = tts_stream_benchmark.run(rounds=rounds or 4, out=self.stdout.write, database_url=database)
            elif options.get("memory"):
                results = memory_benchmark.run(rounds=rounds or 10, out=self.stdout.write, database_url=database)
            else:
                results = {} if handsfree else benchmark.run(plan, out=self.stdout.write, database_url=database)
                if handsfree or not quick:  # ~7 min: left out of --quick
                    figures = handsfree_benchmark.run(rounds=rounds or 2, out=self.stdout.write, database_url=database)
                    results.update(handsfree_benchmark.flat(figures))
        except (RuntimeError, OSError) as exc:
            raise CommandError(f"The benchmark could not run: {exc}") from exc
        self.stdout.write(f"\nmachine: {machine()}; database: {'MySQL/MariaDB' if database else 'SQLite'}\n")
        self.stdout.write(f"{'figure':<36}{'value':>12}  target")
        for name, value in results.items():
            target = TARGETS.get(name)
            verdict = ""
            if target:
                op, limit = target
                ok = value <= limit if op == "<=" else value < limit
                verdict = f"{op} {limit:g}  {'met' if ok else 'MISSED'}"
            self.stdout.write(f"{name:<36}{value:>12.2f}  {verdict}")
        if json:
            with open(json, "w") as fh:
                fh.write(
                    _dumps({"machine": machine(), "database": "mysql" if database else "sqlite", "results": results})
                )


def _dumps(data) -> str:
    return json.dumps(data, indent=2)
