"""`manage.py benchmark --gpu` (devtools/benchmarks/cosyvoice_gpu.py) on the CPU, against the CosyVoice2 stand-in.

The stand-in (voice/tests/cosyvoice_standin.py) is installed as the official layout, a `cosyvoice`
package with `cosyvoice.cli.cosyvoice.CosyVoice2` plus a `matcha` package, on sys.path and on
PYTHONPATH, so both this process (engine alone) and the benchmark's own Celery worker and requester
processes (pipeline) load it exactly as they would load the real code. It spends CHUNK_SECONDS per
chunk, standing in for GPU time, so the timings must include synthesis.
"""

import io
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from devtools.benchmarks import cosyvoice_gpu as benchmark
from voice.tts import cosyvoice2 as cv

from .cosyvoice_standin import SAMPLE_RATE, SAMPLES_PER_TOKEN, TOKENS_PER_CHAR

ROOT = Path(__file__).resolve().parents[2]
CHUNK_SECONDS = 0.005
TEXT = "Hello there, this is a test. And here is a second sentence."
PROMPT_TEXT = "This is how I sound when I read aloud."
STANDIN_MODULE = f"""import os
import time

from voice.tests.cosyvoice_standin import Calls, CosyVoice2StandIn


class CosyVoice2(CosyVoice2StandIn):
    calls = Calls()

    def _setup(self, model_dir, **options):
        if os.environ.get("STANDIN_LOAD_ERROR"):
            raise RuntimeError(os.environ["STANDIN_LOAD_ERROR"])  # e.g. CUDA out of memory while loading
        super()._setup(model_dir, **options)

    def _chunk(self, record, start, tokens):
        time.sleep({CHUNK_SECONDS})  # the stand-in's "GPU time" for a chunk (not synchronisation)
        return super()._chunk(record, start, tokens)
"""


def expected_audio_seconds(text: str) -> float:
    """What the stand-in speaks for `text`: TOKENS_PER_CHAR tokens a character, one call per sentence."""
    tokens = sum(max(1, TOKENS_PER_CHAR * len(s)) for s in cv.split_sentences(text))
    return tokens * SAMPLES_PER_TOKEN / SAMPLE_RATE


def _forget_cosyvoice():
    for name in [n for n in sys.modules if n.split(".")[0] in ("cosyvoice", "matcha")]:
        del sys.modules[name]


@pytest.fixture
def standin_site(tmp_path, monkeypatch):
    """The stand-in as an importable `cosyvoice` (official layout) for this process and its children."""
    site = tmp_path / "site"
    for package in ("cosyvoice", "cosyvoice/cli", "matcha"):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
    (site / "cosyvoice" / "cli" / "cosyvoice.py").write_text(STANDIN_MODULE)
    _forget_cosyvoice()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), str(ROOT)]))
    yield site
    _forget_cosyvoice()


@pytest.fixture
def bench(settings, model_dir, tmp_path, wav_bytes, monkeypatch):
    """Settings for the benchmark; no CUDA unless a test says otherwise. Returns the command's arguments."""
    prompt = tmp_path / "prompt.wav"
    prompt.write_bytes(wav_bytes(2.0, 24000))
    settings.COSYVOICE_MODEL_DIR = str(model_dir)
    settings.COSYVOICE_DEFAULT_PROMPT_WAV = ""
    settings.COSYVOICE_DEFAULT_PROMPT_TEXT = ""
    settings.COSYVOICE_TRT_CONCURRENT = 1
    monkeypatch.setattr(benchmark, "cuda_available", lambda: False)
    return ["--gpu", "--prompt-wav", str(prompt), "--prompt-text", PROMPT_TEXT, "--text", TEXT]


def run_command(*args) -> str:
    out = io.StringIO()
    call_command("benchmark", *args, stdout=out)
    return out.getvalue()


def check_figures(report: dict, part: str, trt: str, streams: tuple, runs: int):
    """The figures of one part and mode exist, are positive, and agree with the raw requests."""
    prefix = "cosyvoice_engine" if part == "engine" else "cosyvoice"
    audio_s = expected_audio_seconds(TEXT)
    for n in streams:
        records = [r for r in report["requests"] if (r["part"], r["trt"], r["streams"]) == (part, trt, n)]
        assert len(records) == n * runs
        for r in records:
            assert 0 < r["first_ms"] <= r["total_ms"]
            assert r["first_ms"] >= CHUNK_SECONDS * 1000  # the first chunk's synthesis is inside the timing
            assert r["audio_s"] == pytest.approx(audio_s)  # the audio the engine really produced
            assert r["rtf"] == pytest.approx(r["total_ms"] / 1000 / r["audio_s"])
        results = report["results"]
        first = results[f"{prefix}_first_chunk_ms_trt_{trt}_{n}"]
        p95 = results[f"{prefix}_first_chunk_p95_ms_trt_{trt}_{n}"]
        rtf = results[f"{prefix}_rtf_trt_{trt}_{n}"]
        assert first == pytest.approx(statistics.median(r["first_ms"] for r in records))
        assert first <= p95 <= max(r["first_ms"] for r in records)
        assert rtf == pytest.approx(statistics.median(r["rtf"] for r in records))
        assert all(math.isfinite(v) and v > 0 for v in (first, p95, rtf))


def test_engine_alone_on_cpu_with_the_standin(bench, standin_site, tmp_path):
    out_json = tmp_path / "gpu.json"
    output = run_command(
        *bench, "--allow-cpu", "--only", "engine", "--streams", "1,2", "--runs", "2", "--warmup-runs", "1",
        "--json", str(out_json),
    )  # fmt: skip
    report = json.loads(out_json.read_text())
    check_figures(report, "engine", "off", (1, 2), runs=2)
    assert not any("trt_on" in name for name in report["results"])
    assert report["skipped"] == ["TensorRT on: skipped (no CUDA device; TensorRT needs one)"]
    assert "TensorRT on: skipped (no CUDA device" in output
    assert "cosyvoice_engine_first_chunk_ms_trt_off_1" in output and benchmark.ANCHOR in output
    assert report["gpu"] == "none (CPU, --allow-cpu)"
    # One model, loaded once, with a TensorRT context per stream; the prompt registered once.
    standin = sys.modules["cosyvoice.cli.cosyvoice"].CosyVoice2
    assert len(standin.calls.init) == 1
    assert standin.calls.init[0]["load_trt"] is False and standin.calls.init[0]["trt_concurrent"] == 2
    assert len(standin.calls.add_zero_shot_spk) == 1
    assert standin.calls.add_zero_shot_spk[0]["prompt_text"] == PROMPT_TEXT
    assert standin.calls.max_active == 1  # the engine serialises upstream calls across streams
    assert report["engines"]["engine_trt_off"]["options"]["trt_concurrent"] == 2


def test_engine_alone_measures_tensorrt_on_and_off_where_cuda_is(bench, standin_site, monkeypatch, tmp_path):
    monkeypatch.setattr(benchmark, "cuda_available", lambda: True)
    monkeypatch.setattr(benchmark, "cuda_device_name", lambda: "Stand-in GPU")
    out_json = tmp_path / "gpu.json"
    run_command(*bench, "--only", "engine", "--streams", "2", "--runs", "1", "--json", str(out_json))
    report = json.loads(out_json.read_text())
    check_figures(report, "engine", "off", (2,), runs=1)
    check_figures(report, "engine", "on", (2,), runs=1)
    standin = sys.modules["cosyvoice.cli.cosyvoice"].CosyVoice2
    assert [c["load_trt"] for c in standin.calls.init] == [False, True]  # a fresh model for each mode
    assert report["gpu"] == "Stand-in GPU" and report["skipped"] == []


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server (./dev services installs it)")
def test_pipeline_through_a_real_worker_on_cpu(bench, standin_site, tmp_path):
    """A private redis-server, one Celery worker with the stand-in, and a separate requester process."""
    out_json = tmp_path / "gpu.json"
    output = run_command(
        *bench, "--allow-cpu", "--only", "pipeline", "--streams", "1,2", "--runs", "1", "--warmup-runs", "1",
        "--json", str(out_json),
    )  # fmt: skip
    report = json.loads(out_json.read_text())
    check_figures(report, "pipeline", "off", (1, 2), runs=1)
    for r in report["requests"]:
        assert r["chunk_audio_s"] == pytest.approx(r["audio_s"])  # the chunks received add up to `duration`
        assert 0 < r["worker_first_chunk_ms"] <= r["first_ms"]  # the requester sees it no earlier than it is made
    worker_engine = report["engines"]["pipeline_trt_off"]
    assert worker_engine["engine"] == "cosyvoice2" and worker_engine["options"]["load_trt"] is False
    assert worker_engine["options"]["trt_concurrent"] == 2  # COSYVOICE_TRT_CONCURRENT >= streams
    assert worker_engine["worker_threads"] == 4  # twice the streams
    assert "cosyvoice_first_chunk_ms_trt_off_2" in output


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server (./dev services installs it)")
def test_pipeline_says_why_the_worker_has_no_engine(bench, standin_site, monkeypatch):
    monkeypatch.setenv("STANDIN_LOAD_ERROR", "stand-in: CUDA out of memory")  # in the worker only
    with pytest.raises(CommandError) as excinfo:
        run_command(*bench, "--allow-cpu", "--only", "pipeline", "--streams", "1", "--runs", "1")
    message = str(excinfo.value)
    assert "The GPU benchmark failed" in message and "The worker could not load CosyVoice2" in message
    assert "stand-in: CUDA out of memory" in message


def test_without_cosyvoice2_it_fails_clearly_even_with_allow_cpu(bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "cosyvoice", None)  # not importable
    for extra in ((), ("--allow-cpu",)):
        with pytest.raises(CommandError) as excinfo:
            run_command(*bench, *extra)
        message = str(excinfo.value)
        assert "The GPU benchmark cannot run here" in message
        assert "CosyVoice2 is not importable" in message and "docs/cosyvoice2.md" in message
    assert "No CUDA device" in str(pytest.raises(CommandError, run_command, *bench).value)


def test_without_cuda_it_fails_unless_allow_cpu(bench, standin_site):
    with pytest.raises(CommandError) as excinfo:
        run_command(*bench, "--only", "engine")
    message = str(excinfo.value)
    assert "No CUDA device" in message and "--allow-cpu" in message
    assert "not importable" not in message  # the stand-in is importable: only CUDA is missing
    assert sys.modules["cosyvoice.cli.cosyvoice"].CosyVoice2.calls.init == []  # nothing was loaded


def test_without_a_prompt_it_says_how_to_give_one(bench, standin_site):
    args = [a for a in bench if a not in ("--prompt-wav", bench[bench.index("--prompt-wav") + 1])]
    with pytest.raises(CommandError, match="zero-shot prompt is needed: --prompt-wav FILE"):
        run_command(*args, "--allow-cpu")


def test_bad_stream_counts_are_refused(bench):
    with pytest.raises(CommandError, match="--streams"):
        run_command(*bench, "--streams", "1,x")
    with pytest.raises(CommandError, match="--streams"):
        run_command(*bench, "--streams", "0")


def test_the_command_exits_non_zero_with_the_reason(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        DJANGO_SETTINGS_MODULE="magicmirror.settings",
        MAGICMIRROR_DOTENV="",
        DEBUG="true",
        SQLITE_PATH=str(tmp_path / "db.sqlite3"),
        COSYVOICE_MODEL_DIR=str(tmp_path / "no-model-here"),
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "benchmark", "--gpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "The GPU benchmark cannot run here" in result.stderr
    assert "No CosyVoice2 model at" in result.stderr and "no-model-here" in result.stderr
