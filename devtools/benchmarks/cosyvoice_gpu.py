"""The GPU benchmark behind `manage.py benchmark --gpu` (docs/benchmarks.md, "GPU: CosyVoice2").

CosyVoice2's time to the first audio chunk and real-time factor (RTF = synthesis time / duration of the
audio produced; below 1 is faster than real time), with TensorRT off and on, for 1, 4 and 8 concurrent
streams on one GPU, measured twice:

- engine: `CosyVoice2Engine` alone, in this process; N threads start `engine.stream(text)` at once
  (a barrier) and time their first PCM chunk and their end;
- pipeline: what the site does. A private `redis-server` and one Celery worker (threads pool,
  concurrency >= N, `VOICE_TTS_ENGINES=cosyvoice2`, `COSYVOICE_TRT_CONCURRENT >= N`) serve a separate
  requester process (`python -m devtools.benchmarks.cosyvoice_gpu --client`, configured like a web
  process) that sends N concurrent `voice.jobs.synthesize` requests and times, as a requester sees
  them, the first `voice.tts.chunk` and the `voice.tts.done` (whose `duration` is the audio's).

CosyVoice2 has no built-in voices: a zero-shot prompt (reference WAV and its transcript) is needed,
from `--prompt-wav/--prompt-text` or COSYVOICE_DEFAULT_PROMPT_WAV/TEXT.

The module imports nothing of Django at load time, so `python -m devtools.benchmarks.cosyvoice_gpu --client`
can set Django up itself.
"""

import argparse
import contextlib
import gc
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STREAMS = (1, 4, 8)
DEFAULT_RUNS = 5
TRT_MODES = ("off", "on")
PARTS = ("engine", "pipeline")
# Two sentences, about 8 s of speech: the engine speaks one sentence per upstream call.
DEFAULT_TEXT = (
    "Good evening, it is lovely to hear from you again. "
    "The weather stayed mild today, so we could take a short walk by the river before dinner."
)
ANCHOR = "anchor: Triton ~190-220 ms at 1 stream on an L20"
WORKER_TIMEOUT = 900.0  # seconds for the worker to load (and warm) the model; a TensorRT build takes minutes


class Unavailable(Exception):
    """The GPU benchmark cannot run here; the message says why."""


@dataclass
class Options:
    model_dir: str
    prompt_wav: str
    prompt_text: str
    streams: tuple[int, ...] = DEFAULT_STREAMS
    runs: int = DEFAULT_RUNS
    warmup: int = 2
    text: str = DEFAULT_TEXT
    trt: tuple[str, ...] = TRT_MODES
    parts: tuple[str, ...] = PARTS
    allow_cpu: bool = False
    fp16: bool = True
    load_jit: bool = False
    load_vllm: bool = False
    trt_concurrent: int = 1  # at least max(streams) is used
    worker_timeout: float = WORKER_TIMEOUT
    worker_concurrency: int = 0  # the pipeline worker's threads; 0: twice the most streams (see PipelineStack)

    @property
    def contexts(self) -> int:
        return max(self.trt_concurrent, *self.streams)

    @property
    def worker_threads(self) -> int:
        """Twice the streams by default: with acks_late and a prefetch multiplier of 1, a finished job keeps
        its slot until it is acknowledged, and a worker with exactly N threads left the next round's jobs
        in Redis for 0.2-1.6 s (measured on the CPU with the stand-in): queueing, not synthesis."""
        return max(self.worker_concurrency or 2 * max(self.streams), *self.streams)


@dataclass
class Request:
    """One synthesis as its requester saw it (seconds; audio_s from the engine's or job's own count)."""

    first_s: float
    total_s: float
    audio_s: float
    extra: dict = field(default_factory=dict)

    @property
    def rtf(self) -> float:
        return self.total_s / self.audio_s if self.audio_s > 0 else math.inf


# --- the environment --------------------------------------------------------------------------------------
def cuda_available() -> bool:
    from voice.tts.cosyvoice2 import torch_cuda_available

    return torch_cuda_available()


def cuda_device_name() -> str:
    try:
        import torch

        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    except Exception:
        return "CUDA device (name unknown)"


def check(options: Options) -> tuple[bool, list[str]]:
    """(CUDA present, notes); Unavailable naming every reason why the benchmark cannot run here."""
    from voice.tts.base import TTSError
    from voice.tts.cosyvoice2 import check_model_dir, import_cosyvoice2

    problems = []
    try:
        import_cosyvoice2()
    except TTSError as exc:
        problems.append(f"CosyVoice2 is not importable: {exc}")
    try:
        check_model_dir(options.model_dir)
    except TTSError as exc:
        problems.append(f"No usable model (COSYVOICE_MODEL_DIR): {exc}")
    if not options.prompt_wav or not Path(options.prompt_wav).is_file():
        problems.append(
            f"A zero-shot prompt is needed: --prompt-wav FILE (or COSYVOICE_DEFAULT_PROMPT_WAV); "
            f"{options.prompt_wav or 'none given'} is not a file."
        )
    elif not options.prompt_text.strip():
        problems.append("--prompt-text (or COSYVOICE_DEFAULT_PROMPT_TEXT) must hold the prompt's transcript.")
    cuda = cuda_available()
    notes = []
    if not cuda:
        message = (
            "No CUDA device: torch is missing or torch.cuda.is_available() is false. Run it on a GPU host "
            "(docs/cosyvoice2.md), or pass --allow-cpu to run TensorRT off on the CPU (slow; not comparable)."
        )
        if options.allow_cpu:
            notes.append("no CUDA device; --allow-cpu: on the CPU, TensorRT off only")
        else:
            problems.append(message)
    if problems:
        raise Unavailable("The GPU benchmark cannot run here:\n- " + "\n- ".join(problems))
    return cuda, notes


# --- figures ------------------------------------------------------------------------------------------------
def summarise(requests: list[Request], prefix: str, suffix: str) -> dict[str, float]:
    """`{prefix}_first_chunk_ms_{suffix}` (median), its p95, and `{prefix}_rtf_{suffix}` (median)."""
    from devtools.benchmarks.voice_loop import percentile

    firsts = [r.first_s * 1000 for r in requests]
    return {
        f"{prefix}_first_chunk_ms_{suffix}": statistics.median(firsts),
        f"{prefix}_first_chunk_p95_ms_{suffix}": percentile(firsts, 95),
        f"{prefix}_rtf_{suffix}": statistics.median(r.rtf for r in requests),
    }


def record(request: Request, part: str, trt: str, streams: int) -> dict:
    return {
        "part": part,
        "trt": trt,
        "streams": streams,
        "first_ms": request.first_s * 1000,
        "total_ms": request.total_s * 1000,
        "audio_s": request.audio_s,
        "rtf": request.rtf,
        **request.extra,
    }


# --- (a) the engine alone -------------------------------------------------------------------------------------
def engine_round(engine, text: str, streams: int) -> list[Request]:
    """`streams` threads start `engine.stream(text)` at the same moment; one Request each."""
    barrier = threading.Barrier(streams)
    results: list[Request | None] = [None] * streams
    errors: list[BaseException] = []

    def one(index):
        try:
            barrier.wait()
            started = time.perf_counter()
            first = None
            samples = 0
            for pcm in engine.stream(text):
                if first is None:
                    first = time.perf_counter() - started
                samples += len(pcm) // 2
            total = time.perf_counter() - started
            if first is None:
                raise RuntimeError("the engine produced no audio")
            results[index] = Request(first, total, samples / engine.sample_rate)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=one, args=(i,), name=f"bench-stream-{i}") for i in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"A stream failed: {type(errors[0]).__name__}: {errors[0]}") from errors[0]
    return [r for r in results if r is not None]


def make_engine(options: Options, trt: bool):
    from voice.tts.cosyvoice2 import CosyVoice2Engine

    return CosyVoice2Engine(
        options.model_dir,
        load_jit=options.load_jit,
        load_trt=trt,
        fp16=options.fp16,
        load_vllm=options.load_vllm,
        trt_concurrent=options.contexts,
        warmup=True,
        default_prompt_wav=options.prompt_wav,
        default_prompt_text=options.prompt_text,
        cuda_available=cuda_available,
    )


def measure_engine(options: Options, trt: str, out) -> tuple[dict, list[dict], dict]:
    """Figures, raw records and the engine's description for one TensorRT mode."""
    figures, records = {}, []
    loading = time.perf_counter()
    engine = make_engine(options, trt == "on")
    if (trt == "on") != bool(engine.options.get("load_trt")):
        raise RuntimeError(f"TensorRT {trt} was asked for, but the engine was built with {engine.options}")
    try:
        engine.warm_up()  # loads the model (builds a missing TensorRT plan) and registers the prompt
        figures[f"cosyvoice_engine_load_s_trt_{trt}"] = time.perf_counter() - loading
        for _ in range(options.warmup):
            engine_round(engine, options.text, 1)
        _reset_gpu_peak()
        for streams in options.streams:
            requests = []
            for _ in range(options.runs):
                requests += engine_round(engine, options.text, streams)
            figures.update(summarise(requests, "cosyvoice_engine", f"trt_{trt}_{streams}"))
            records += [record(r, "engine", trt, streams) for r in requests]
            out(
                f"  engine, TensorRT {trt}, {streams} stream(s): first chunk "
                f"{figures[f'cosyvoice_engine_first_chunk_ms_trt_{trt}_{streams}']:.0f} ms, "
                f"RTF {figures[f'cosyvoice_engine_rtf_trt_{trt}_{streams}']:.3f}"
            )
        peak = _gpu_peak_mb()
        if peak is not None:
            figures[f"cosyvoice_engine_gpu_peak_mb_trt_{trt}"] = peak
        return figures, records, engine.describe()
    finally:
        del engine
        gc.collect()
        _empty_gpu_cache()


def _reset_gpu_peak():
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()


def _gpu_peak_mb():
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            return torch.cuda.max_memory_allocated() / 2**20
    return None


def _empty_gpu_cache():
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


# --- (b) the whole pipeline ---------------------------------------------------------------------------------
class PipelineStack:
    """A private redis-server and one Celery worker serving the tts queue with CosyVoice2 only."""

    def __init__(self, options: Options, trt: str):
        self.options = options
        self.trt = trt
        self.tmp = Path(tempfile.mkdtemp(prefix="mm-gpu-bench-"))
        self.worker_name = f"gpu-bench-{os.getpid()}@localhost"
        self.processes: dict[str, subprocess.Popen] = {}
        self.redis_url = ""

    def env(self) -> dict:
        drop = ("DATABASE_URL", "MYSQL_HOST", "MYSQL_DATABASE", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
        env = {k: v for k, v in os.environ.items() if k not in drop}
        o = self.options
        env.update(
            DJANGO_SETTINGS_MODULE="magicmirror.settings",
            MAGICMIRROR_DOTENV="",  # everything the benchmark needs is set here
            DEBUG="true",
            SQLITE_PATH=str(self.tmp / "bench.sqlite3"),
            MEDIA_ROOT=str(self.tmp / "media"),
            REDIS_URL=self.redis_url,
            CHANNEL_LAYER_PREFIX=f"mm-gpu-bench-{os.getpid()}",
            VOICE_ASR_QUEUE=f"asr-gpu-bench-{os.getpid()}",
            VOICE_TTS_QUEUE=f"tts-gpu-bench-{os.getpid()}",
            VOICE_TTS_ENGINES="cosyvoice2",
            VOICE_PRELOAD="tts",
            VOICE_JOB_FIRST_MESSAGE_TIMEOUT="300",
            VOICE_JOB_IDLE_TIMEOUT="120",
            COSYVOICE_MODEL_DIR=str(Path(o.model_dir).expanduser().resolve()),
            COSYVOICE_LOAD_TRT="true" if self.trt == "on" else "false",
            COSYVOICE_FP16=str(o.fp16).lower(),
            COSYVOICE_LOAD_JIT=str(o.load_jit).lower(),
            COSYVOICE_LOAD_VLLM=str(o.load_vllm).lower(),
            COSYVOICE_TRT_CONCURRENT=str(o.contexts),
            COSYVOICE_WARMUP="true",
            COSYVOICE_DEFAULT_PROMPT_WAV=str(Path(o.prompt_wav).expanduser().resolve()),
            COSYVOICE_DEFAULT_PROMPT_TEXT=o.prompt_text,
            RATELIMIT_ENABLE="false",
            LOG_LEVEL="WARNING",
        )
        return env

    def start(self) -> None:
        from devtools.localprocs import start_redis

        if shutil.which("redis-server") is None:
            raise Unavailable("redis-server is not installed (./dev services installs it).")
        port, self.processes["redis"] = start_redis()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        env = self.env()
        command = [sys.executable, "-m", "celery", "-A", "magicmirror", "worker", "-Q", env["VOICE_TTS_QUEUE"]]
        command += ["--pool=threads", "-c", str(self.options.worker_threads), "-n", self.worker_name, "-l", "warning"]
        with (self.tmp / "worker.log").open("wb") as log:
            self.processes["worker"] = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def worker_log(self, chars: int = 3000) -> str:
        try:
            return (self.tmp / "worker.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        from devtools.localprocs import stop_process

        for process in self.processes.values():
            stop_process(process, timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


def run_client(stack: PipelineStack, config: dict) -> dict:
    """Run the requester process to its end; stop it, with the worker's log, if the worker dies first."""
    from devtools.localprocs import stop_process

    out_path, err_path = stack.tmp / "client.out", stack.tmp / "client.err"
    with out_path.open("wb") as stdout, err_path.open("wb") as stderr:
        client = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "devtools.benchmarks.cosyvoice_gpu", "--client", json.dumps(config)],
            cwd=ROOT,
            env=stack.env(),
            stdout=stdout,
            stderr=stderr,
        )
    worker = stack.processes["worker"]
    while True:
        try:
            client.wait(timeout=1.0)
            break
        except subprocess.TimeoutExpired:
            if worker.poll() is not None:
                stop_process(client)
                raise RuntimeError(
                    f"The pipeline's worker exited with {worker.returncode}:\n{stack.worker_log()}"
                ) from None
    if client.returncode != 0:
        raise RuntimeError(
            f"The pipeline requester failed (exit {client.returncode}):\n"
            f"{err_path.read_text(errors='replace')[-3000:]}\n--- worker log (end) ---\n{stack.worker_log()}"
        )
    return json.loads(out_path.read_text().strip().splitlines()[-1])


def measure_pipeline(options: Options, trt: str, out) -> tuple[dict, list[dict], dict]:
    """Figures, raw records and the worker's engine description for one TensorRT mode."""
    stack = PipelineStack(options, trt)
    try:
        stack.start()
        config = {
            "worker": stack.worker_name,
            "streams": list(options.streams),
            "runs": options.runs,
            "warmup": options.warmup,
            "text": options.text,
            "trt": trt == "on",
            "worker_timeout": options.worker_timeout,
        }
        answer = run_client(stack, config)
    finally:
        stack.stop()
    figures, records = {}, []
    for streams in options.streams:
        requests = [Request(**r) for r in answer["requests"][str(streams)]]
        figures.update(summarise(requests, "cosyvoice", f"trt_{trt}_{streams}"))
        records += [record(r, "pipeline", trt, streams) for r in requests]
        out(
            f"  pipeline, TensorRT {trt}, {streams} stream(s): first chunk "
            f"{figures[f'cosyvoice_first_chunk_ms_trt_{trt}_{streams}']:.0f} ms, "
            f"RTF {figures[f'cosyvoice_rtf_trt_{trt}_{streams}']:.3f}"
        )
    return figures, records, {**answer["engine"], "worker_threads": options.worker_threads}


# --- the requester process (python -m devtools.benchmarks.cosyvoice_gpu --client CONFIG) ---------------------------
def client_main(config: dict) -> dict:
    """Run in a process configured like a web process against the private Redis; returns what to print."""
    import asyncio

    import django

    django.setup()
    from magicmirror.celery import app

    engine = _wait_for_worker(app, config["worker"], config["worker_timeout"])
    if engine.get("engine") != "cosyvoice2":
        raise RuntimeError(f"The worker serves {engine.get('engine')!r}, not cosyvoice2: {engine}")
    if bool(engine.get("options", {}).get("load_trt")) != config["trt"]:
        raise RuntimeError(f"The worker's TensorRT setting is not the one asked for: {engine.get('options')}")
    return {"engine": engine, "requests": asyncio.run(_client_rounds(config))}


async def _client_rounds(config: dict) -> dict:
    """One event loop for all requests, so channel-layer connections are warm after the warm-up."""
    for _ in range(config["warmup"]):
        await _client_round(config["text"], 1)
    requests = {}
    for streams in config["streams"]:
        requests[str(streams)] = []
        for _ in range(config["runs"]):
            requests[str(streams)] += await _client_round(config["text"], streams)
    return requests


def _wait_for_worker(app, name: str, timeout: float) -> dict:
    """The worker's TTS engine description, once it answers (it does after loading and warming up)."""
    deadline = time.monotonic() + timeout
    while not app.control.ping(destination=[name], timeout=1.0):
        if time.monotonic() > deadline:
            raise RuntimeError(f"The worker {name} did not answer within {timeout:g} s (still loading the model?).")
    replies = app.control.broadcast("voice_engines", destination=[name], reply=True, timeout=10) or []
    reply = next((r[name] for r in replies if name in r), {})
    loaded = reply.get("engines") or {}
    if "tts" not in loaded:
        raise RuntimeError(f"The worker could not load CosyVoice2: {loaded.get('errors') or loaded}")
    return loaded["tts"]


async def _client_round(text: str, streams: int) -> list[dict]:
    import asyncio

    return list(await asyncio.gather(*(_client_request(text) for _ in range(streams))))


async def _client_request(text: str) -> dict:
    from voice import jobs

    wall, started = time.time(), time.perf_counter()
    first = None
    first_message = None
    chunk_samples = 0
    async for message in jobs.synthesize(text=text, engine_name="cosyvoice2"):
        if message["type"] == "voice.tts.chunk":
            if first is None:
                first, first_message = time.perf_counter() - started, message
            chunk_samples += len(message["pcm"]) // 2
        elif message["type"] == "voice.tts.error":
            raise RuntimeError(f"Synthesis failed ({message['code']}): {message['message']}")
        elif message["type"] == "voice.tts.done":
            total = time.perf_counter() - started
            if first is None:
                raise RuntimeError("The job produced no audio.")
            extra = {
                "chunk_audio_s": chunk_samples / first_message["sample_rate"],
                # On the worker's clock (same host): until the job started, and its own first chunk.
                "queued_ms": (first_message["started"] - wall) * 1000,
                "worker_first_chunk_ms": (first_message["t"] - first_message["started"]) * 1000,
            }
            return asdict(Request(first, total, float(message["duration"]), extra))
    raise RuntimeError("The job ended without a done message.")


# --- the run ------------------------------------------------------------------------------------------------
def run(options: Options, out=print) -> dict:
    """{"results": {figure: number}, "requests": [...], "engines": {...}, "skipped": [...], "gpu": ...}."""
    cuda, notes = check(options)
    for note in notes:
        out(note)
    gpu = cuda_device_name() if cuda else "none (CPU, --allow-cpu)"
    out(f"GPU: {gpu}")
    results: dict[str, float] = {}
    requests: list[dict] = []
    engines: dict[str, dict] = {}
    skipped: list[str] = []
    for trt in options.trt:
        if trt == "on" and not cuda:
            line = "TensorRT on: skipped (no CUDA device; TensorRT needs one)"
            out(line)
            skipped.append(line)
            continue
        for part in options.parts:
            out(f"{part}, TensorRT {trt}: {', '.join(map(str, options.streams))} stream(s), {options.runs} run(s) each")
            measure = measure_engine if part == "engine" else measure_pipeline
            figures, records, described = measure(options, trt, out)
            results.update(figures)
            requests += records
            engines[f"{part}_trt_{trt}"] = described
    return {"gpu": gpu, "results": results, "requests": requests, "engines": engines, "skipped": skipped}


# --- the management command's part --------------------------------------------------------------------------
def add_arguments(parser) -> None:
    group = parser.add_argument_group("GPU benchmark (--gpu)")
    group.add_argument("--streams", default=",".join(map(str, DEFAULT_STREAMS)), help="Concurrent streams (1,4,8).")
    group.add_argument("--runs", type=int, default=DEFAULT_RUNS, help=f"Rounds per stream count ({DEFAULT_RUNS}).")
    group.add_argument("--warmup-runs", type=int, default=2, help="Uncounted single requests first (2).")
    group.add_argument("--trt", choices=("off", "on", "both"), default="both", help="TensorRT modes (both).")
    group.add_argument("--only", choices=PARTS, help="Only the engine alone, or only the pipeline.")
    group.add_argument(
        "--worker-concurrency",
        type=int,
        default=0,
        help="The pipeline worker's threads (default: twice the most streams).",
    )
    group.add_argument("--text", dest="gpu_text", help="The text to speak (default: two sentences, ~8 s).")
    group.add_argument("--prompt-wav", help="Zero-shot prompt WAV (default COSYVOICE_DEFAULT_PROMPT_WAV).")
    group.add_argument("--prompt-text", help="Its transcript (default COSYVOICE_DEFAULT_PROMPT_TEXT).")
    group.add_argument(
        "--allow-cpu", action="store_true", help="Run without a CUDA device (TensorRT off only; tests, smoke runs)."
    )


def options_from(args: dict) -> Options:
    from django.conf import settings
    from django.core.management.base import CommandError

    try:
        streams = tuple(int(s) for s in str(args.get("streams") or "").split(",") if s.strip())
    except ValueError:
        raise CommandError("--streams takes numbers separated by commas, e.g. 1,4,8.") from None
    if not streams or min(streams) < 1:
        raise CommandError("--streams needs at least one count >= 1.")
    runs = int(args.get("runs") or 0)
    if runs < 1:
        raise CommandError("--runs must be at least 1.")
    trt = args.get("trt") or "both"
    return Options(
        model_dir=str(settings.COSYVOICE_MODEL_DIR or ""),
        prompt_wav=args.get("prompt_wav") or settings.COSYVOICE_DEFAULT_PROMPT_WAV or "",
        prompt_text=args.get("prompt_text") or settings.COSYVOICE_DEFAULT_PROMPT_TEXT or "",
        streams=streams,
        runs=runs,
        warmup=max(0, int(args.get("warmup_runs") or 0)),
        text=args.get("gpu_text") or DEFAULT_TEXT,
        trt=TRT_MODES if trt == "both" else (trt,),
        parts=(args["only"],) if args.get("only") else PARTS,
        allow_cpu=bool(args.get("allow_cpu")),
        fp16=bool(settings.COSYVOICE_FP16),
        load_jit=bool(settings.COSYVOICE_LOAD_JIT),
        load_vllm=bool(settings.COSYVOICE_LOAD_VLLM),
        trt_concurrent=int(settings.COSYVOICE_TRT_CONCURRENT),
        worker_concurrency=int(args.get("worker_concurrency") or 0),
    )


def anchor_note(name: str) -> str:
    """The published anchor next to the one-stream first-chunk figures."""
    first_chunk = name.startswith(("cosyvoice_first_chunk_ms_trt_", "cosyvoice_engine_first_chunk_ms_trt_"))
    return ANCHOR if first_chunk and name.rsplit("_", 1)[-1] == "1" else ""


def handle(command, *, json_path=None, machine="", **args) -> None:
    """`manage.py benchmark --gpu`: run, print the table, write --json FILE."""
    from django.core.management.base import CommandError

    options = options_from(args)
    out = command.stdout.write
    try:
        report = run(options, out=out)
    except Unavailable as exc:
        raise CommandError(str(exc)) from exc
    except (RuntimeError, OSError) as exc:
        raise CommandError(f"The GPU benchmark failed: {exc}") from exc
    out(f"\nmachine: {machine}\nGPU: {report['gpu']}")
    out(f"text: {len(options.text)} characters; {options.runs} run(s) per stream count")
    out(f"{'figure':<44}{'value':>10}  note")
    for name, value in report["results"].items():
        out(f"{name:<44}{value:>10.3f}  {anchor_note(name)}".rstrip())
    for line in report["skipped"]:
        out(line)
    if json_path:
        settings_used = asdict(options)
        with open(json_path, "w") as fh:
            json.dump({"machine": machine, **report, "options": settings_used}, fh, indent=2, default=str)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="The requester process of the GPU benchmark's pipeline part.")
    parser.add_argument("--client", required=True, help="JSON configuration (from measure_pipeline).")
    args = parser.parse_args(argv)
    try:
        answer = client_main(json.loads(args.client))
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
