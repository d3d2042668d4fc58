"""A GPU smoke run of the real CosyVoice2 classes through the adapter, prepared for a host with CUDA.

No session has been lent a GPU with the model's weights, so this runs what can run anywhere: the real
upstream classes (PyPI `cosyvoice2-fr-infer`, as in voice/tests/cosyvoice_real) with the tiny
random-weight model of those tests, through `CosyVoice2Engine`, on CUDA: fp16 off and on, the streamed
path, the text-stream path (upstream's bi-streaming: `stream_text`, text fed as it is written, the
decode after it ended by the engine's cap), concurrent streams under the token_hop_len guard, and a
stream closed early. It prints a table.
The same scenarios run on the CPU in `.venv-cosyvoice` (`--device cpu`), which is how it is tested.

Two steps (docs/cosyvoice2.md, "GPU smoke run"):

    here, with PyPI reachable:   .venv-cosyvoice/bin/python -m devtools.gpu_smoke pack .whl
        runs the scenarios once on the CPU, takes the distributions they imported, leaves out those the
        GPU image already has (IMAGE_HAS) unless their version matters (ALWAYS_CARRY), and downloads
        wheels of the rest for CPython 3.12, manylinux x86-64 (the image's interpreter), at the versions
        of this environment; it fails when they exceed CARRY_LIMIT.
    there, with nothing reachable:   python3 -m devtools.gpu_smoke run --wheels .whl
        installs the wheels into a folder of its own (pip --no-index --no-deps --target), runs itself
        again with that folder first on the path, builds the tiny model and prints the table.

Two packages are too big to carry (a device call takes 64 MiB with the working tree) and do CPU work
only, tested for real in voice/tests/cosyvoice_real; the run puts small modules of its own in their
place (SHIMS), so nothing of the GPU path changes:
- WeTextProcessing (upstream frontend's text normalisation) needs pynini, a 165 MB wheel: `tn`'s
  normalisers return the text unchanged;
- PyAV (36 MB; voice/audio.py decodes the speaker's recording with it): an `av` whose every use fails,
  and the adapter's prompt decoder reads the run's own 16 kHz PCM16 WAV with the stdlib `wave` instead.
"""

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY_LIMIT = 56 * 2**20  # a device call carries 64 MiB with the working tree (~2 MB)
# The GPU image's packages (the device tool's list for nvidia-h200, read 2026-11-17), by PyPI name.
IMAGE_HAS = frozenset(
    """absl-py accelerate aiofiles aiohttp anyio attrs certifi charset-normalizer click cloudpickle contourpy
    cycler einops filelock flatbuffers fonttools fsspec h11 hf-xet httpcore httpx idna jinja2 joblib
    kiwisolver lazy-loader lightning lightning-utilities llvmlite markdown markdown-it-py markupsafe
    matplotlib mdurl ml-dtypes mpmath msgpack narwhals networkx numba numpy onnx onnxruntime packaging
    pillow pip pluggy protobuf psutil pygments pyparsing python-dateutil pytorch-lightning pyyaml regex
    requests rich safetensors scikit-learn scipy setuptools six sympy threadpoolctl tiktoken torch
    torchaudio torchmetrics tqdm triton typing-extensions urllib3 zipp""".split()  # noqa: SIM905 - a copied list
)
# Carried even though the image has them: upstream's pinned generation needs these versions
# (transformers 4.40 refuses huggingface-hub >= 1.0 at import; the image has transformers 5).
ALWAYS_CARRY = frozenset({"transformers", "tokenizers", "huggingface-hub"})
NEVER_CARRY = frozenset({"wetextprocessing", "pynini", "av"})  # replaced by SHIMS (module docstring)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
TEXT = "hello there this is a test. how are you today my friend."
LONG_TEXT = "good morning my voice sounds like me and this is a test of a long sentence that goes on and on."
CONCURRENT = 4
TN_SHIM = '''"""Identity text normalisers in place of WeTextProcessing (devtools/gpu_smoke.py)."""


class Normalizer:
    def __init__(self, *args, **kwargs):
        pass

    def normalize(self, text):
        return text
'''
AV_SHIM = '''"""PyAV is not carried to the GPU smoke host (devtools/gpu_smoke.py): any use fails."""

SMOKE_SHIM = True


class FFmpegError(Exception):
    pass


class _Missing:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("PyAV is not installed on this host (devtools/gpu_smoke.py)")


AudioResampler = AudioFrame = _Missing


def open(*args, **kwargs):
    raise RuntimeError("PyAV is not installed on this host (devtools/gpu_smoke.py)")
'''
SHIMS = {
    "tn/__init__.py": "",
    "tn/chinese/__init__.py": "",
    "tn/chinese/normalizer.py": TN_SHIM,
    "tn/english/__init__.py": "",
    "tn/english/normalizer.py": TN_SHIM,
    "av/__init__.py": AV_SHIM,
}
PROMPT_RATE = 16000  # the prompt the older API reads (upstream.PROMPT_16K_RATE): no resampling needed


def normalised(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


@dataclass
class Row:
    scenario: str
    fp16: str
    ok: bool
    first_chunk_ms: float | None = None
    total_s: float | None = None
    audio_s: float | None = None
    note: str = ""

    @property
    def rtf(self) -> float | None:
        if self.total_s is None or not self.audio_s:
            return None
        return self.total_s / self.audio_s


# --- the scenarios ---------------------------------------------------------------------------------
def _voice(folder: Path):
    from voice.tests.samples import tone, wav
    from voice.tts.base import VoiceRef

    audio = folder / "speaker.wav"
    audio.write_bytes(wav([tone(2.0, PROMPT_RATE)], PROMPT_RATE))
    return VoiceRef(speaker_id=1, name="Smoke", prompt_text="This is how I sound.", audio_path=str(audio), version="1")


def _timed_stream(engine, text, voice) -> tuple[float, float, int]:
    """(first chunk s, total s, PCM bytes) of one whole stream."""
    start = time.perf_counter()
    first, size = None, 0
    for chunk in engine.stream(text, voice):
        if first is None:
            first = time.perf_counter() - start
        size += len(chunk)
    return (first if first is not None else float("nan")), time.perf_counter() - start, size


def _timed_text_stream(engine, text, voice) -> tuple[float, float, int]:
    """(first chunk s, total s, PCM bytes) of one sentence fed word by word (`stream_text`)."""
    words = text.split(" ")
    pieces = [f"{word} " for word in words[:-1]] + words[-1:]
    start = time.perf_counter()
    first, size = None, 0
    for chunk in engine.stream_text(iter(pieces), voice, "en"):
        if first is None:
            first = time.perf_counter() - start
        size += len(chunk)
    return (first if first is not None else float("nan")), time.perf_counter() - start, size


class FillSteer:
    """The one decision of upstream's bi-streaming the tiny random LLM never makes: a first fill token
    after MIX_SPEECH speech tokens of the text phase (upstream then forces every later one itself), so it
    reads the text as it speaks. Only the decoder's logits change; the end after the text is left to the
    engine's cap (stopping.cap_final_decode), as a model that never writes its end-of-speech token."""

    MIX_SPEECH = 15  # cosyvoice2.yaml llm.mix_ratio[1]

    def __init__(self, llm):
        self._state = threading.local()
        self._fill = llm.speech_token_size + 2
        self._bistream, self._forward = llm.inference_bistream, llm.llm_decoder.forward
        llm.inference_bistream, llm.llm_decoder.forward = self._counted, self._decided

    def _counted(self, *args, text, **kwargs):
        state = self._state
        state.spoken, state.filled, state.text_ended = 0, False, False

        def reading():
            yield from text
            state.text_ended = True

        try:
            for token in self._bistream(*args, text=reading(), **kwargs):
                state.spoken += 1
                yield token
        finally:
            state.spoken = None

    def _decided(self, hidden):
        logits = self._forward(hidden)
        state = self._state
        if getattr(state, "spoken", None) == self.MIX_SPEECH and not state.filled and not state.text_ended:
            state.filled = True
            logits = logits.float()  # fp16 cannot hold the push (autocast hands fp16 logits on CUDA)
            logits[..., self._fill] += 1.0e5
        return logits


def _upstream_requests(engine) -> int:
    inner = engine._model.model
    return sum(len(getattr(inner, name, {})) for name in ("tts_speech_token_dict", "llm_end_dict", "hift_cache_dict"))


def _concurrent_streams(engine, voice) -> list:
    """CONCURRENT whole streams started at once (a barrier): each one's _timed_stream, or its exception."""
    results: list = [None] * CONCURRENT
    barrier = threading.Barrier(CONCURRENT)

    def one(index):
        barrier.wait()
        try:
            results[index] = _timed_stream(engine, TEXT, voice)
        except Exception as exc:
            results[index] = exc

    threads = [threading.Thread(target=one, args=(n,)) for n in range(CONCURRENT)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def run_scenarios(model_dir: Path, work: Path, device: str) -> list[Row]:
    import torch

    from voice.tts.cosyvoice2 import CosyVoice2Engine

    rows: list[Row] = []
    voice = _voice(work)
    for fp16 in (False, True):
        label = "on" if fp16 else "off"
        start = time.perf_counter()
        try:
            engine = CosyVoice2Engine(model_dir, fp16=fp16, warmup=False, cuda_available=lambda: device == "cuda")
            engine._ensure_loaded()
        except Exception as exc:  # a smoke run reports every failure and goes on
            rows.append(Row("load", label, False, note=f"{type(exc).__name__}: {exc}"[:160]))
            continue
        on = next(engine._model.model.flow.parameters()).device.type
        rows.append(
            Row(
                "load", label, on == device, total_s=time.perf_counter() - start, note=f"flow on {on}; {engine.options}"
            )
        )
        rate = engine.sample_rate
        hop = engine._hop_len_after_load

        try:
            _timed_stream(engine, "hello there.", voice)  # registers the speaker, first CUDA kernels
            first, total, size = _timed_stream(engine, TEXT, voice)
            rows.append(Row("stream", label, size > 0, first * 1000, total, size / 2 / rate))
        except Exception as exc:
            rows.append(Row("stream", label, False, note=f"{type(exc).__name__}: {exc}"[:160]))

        try:
            FillSteer(engine._model.model.llm)
            with _counting_caps() as caps:
                first, total, size = _timed_text_stream(engine, TEXT, voice)
            left = _upstream_requests(engine)
            rows.append(
                Row(
                    "text stream",
                    label,
                    size > 0 and left == 0 and caps == [1],
                    first * 1000,
                    total,
                    size / 2 / rate,
                    f"bi-streaming; decode ended by the cap: {caps == [1]}; {left} entries left",
                )
            )
        except Exception as exc:
            rows.append(Row("text stream", label, False, note=f"{type(exc).__name__}: {exc}"[:160]))

        start = time.perf_counter()
        results = _concurrent_streams(engine, voice)
        failed = [r for r in results if isinstance(r, BaseException) or r is None]
        sizes = {r[2] for r in results if isinstance(r, tuple)}
        hop_now = engine._model.model.token_hop_len
        rows.append(
            Row(
                f"{CONCURRENT} concurrent",
                label,
                not failed and len(sizes) == 1 and hop_now == hop,
                max(r[0] for r in results if isinstance(r, tuple)) * 1000 if not failed else None,
                time.perf_counter() - start,
                sum(r[2] for r in results if isinstance(r, tuple)) / 2 / rate,
                f"token_hop_len {hop} -> {hop_now}; same audio length: {len(sizes) == 1}"
                + (f"; {failed[0]!r}"[:120] if failed else ""),
            )
        )

        try:
            stream = engine.stream(LONG_TEXT, voice)
            next(stream)
            stream.close()
            settled = engine.settle(30)
            left = _upstream_requests(engine)
            rows.append(
                Row("early close", label, settled and left == 0, note=f"settled {settled}; {left} entries left")
            )
        except Exception as exc:
            rows.append(Row("early close", label, False, note=f"{type(exc).__name__}: {exc}"[:160]))
        if device == "cuda":
            rows[-1].note += f"; peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
            torch.cuda.empty_cache()
        del engine
    return rows


@contextmanager
def _counting_caps():
    """[n]: how many times the engine's cap ended a decode (its warning) within the block."""
    import logging

    caps = [0]

    class Counter(logging.Handler):
        def emit(self, record):
            caps[0] += "reached its cap" in record.getMessage()

    handler, logger = Counter(), logging.getLogger("voice.tts.cosyvoice2")
    logger.addHandler(handler)
    try:
        yield caps
    finally:
        logger.removeHandler(handler)


def table(rows: list[Row], device: str) -> str:
    def number(value, spec):
        return format(value, spec) if value is not None else "-"

    lines = [
        f"CosyVoice2 smoke run on {device} (real upstream classes, tiny random-weight model)",
        "| scenario | fp16 | ok | first chunk ms | total s | audio s | RTF | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.scenario} | {row.fp16} | {'yes' if row.ok else 'NO'} | {number(row.first_chunk_ms, '.0f')} | "
            f"{number(row.total_s, '.2f')} | {number(row.audio_s, '.2f')} | {number(row.rtf, '.2f')} | {row.note} |"
        )
    return "\n".join(lines)


def _read_wav_without_av(data: bytes, *, sample_rate=None, max_seconds=600.0):
    """voice.audio.decode_audio for the run's own PCM16 mono WAV, where PyAV is the shim."""
    import io
    import wave

    from voice.audio import DecodedAudio

    with wave.open(io.BytesIO(data)) as source:
        rate, frames = source.getframerate(), source.readframes(source.getnframes())
        if source.getsampwidth() != 2 or source.getnchannels() != 1 or (sample_rate and rate != sample_rate):
            raise RuntimeError("without PyAV only a PCM16 mono WAV at the prompt's rate can be read")
    return DecodedAudio(pcm=frames, sample_rate=rate, source_sample_rate=rate)


def smoke(device: str, work: Path) -> list[Row]:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(name, "1")
    import av

    if getattr(av, "SMOKE_SHIM", False):
        from voice.tts.cosyvoice2 import upstream

        upstream.decode_audio = _read_wav_without_av  # type: ignore[assignment]
    from voice.tests.cosyvoice_real.tiny_model import build_tiny_model

    model_dir = build_tiny_model(work / "CosyVoice2-tiny")
    return run_scenarios(model_dir, work, device)


# --- pack (here) and run (there) -------------------------------------------------------------------
def imported_distributions() -> dict[str, str]:
    """name -> version of every distribution whose modules this process has imported."""
    owners = importlib.metadata.packages_distributions()
    found: dict[str, str] = {}
    for module in list(sys.modules):
        for dist in owners.get(module.split(".")[0], ()):
            found[normalised(dist)] = importlib.metadata.version(dist)
    return found


def to_carry(found: dict[str, str]) -> dict[str, str]:
    return {
        name: version
        for name, version in sorted(found.items())
        if name not in NEVER_CARRY and (name in ALWAYS_CARRY or name not in IMAGE_HAS)
    }


def pack(target: Path, python_version: str = "3.12") -> int:
    with tempfile.TemporaryDirectory() as work:
        rows = smoke("cpu", Path(work))
    print(table(rows, "cpu"))
    if not all(row.ok for row in rows):
        print("The CPU run failed: fix that before carrying it to a GPU.", file=sys.stderr)
        return 1
    wanted = to_carry(imported_distributions())
    target.mkdir(parents=True, exist_ok=True)
    for old in target.glob("*.whl"):
        old.unlink()
    download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(target)]
    download += ["--python-version", python_version, "--implementation", "cp"]
    for platform in PLATFORMS:
        download += ["--platform", platform]
    for name, version in wanted.items():
        if subprocess.run([*download, f"{name}=={version}"], check=False, capture_output=True).returncode:  # noqa: S603
            # Published as a source archive only (antlr4-python3-runtime, openai-whisper, wget): all
            # pure Python, so a wheel built here is the same on the GPU host.
            build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(target)]
            subprocess.run([*build, f"{name}=={version}"], check=True)  # noqa: S603
    size = sum(path.stat().st_size for path in target.glob("*.whl"))
    print(f"{len(wanted)} wheels, {size / 2**20:.1f} MiB in {target}: {', '.join(wanted)}")
    if size > CARRY_LIMIT:
        print(f"Over {CARRY_LIMIT / 2**20:.0f} MiB: a device call cannot carry them.", file=sys.stderr)
        return 1
    return 0


def write_shims(site: Path) -> None:
    for relative, source in SHIMS.items():
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        (site / relative).write_text(source)


def run(wheels: Path, device: str) -> int:
    site = Path(tempfile.mkdtemp(prefix="gpu-smoke-site-"))
    found = sorted(wheels.glob("*.whl"))
    if not found:
        print(f"No wheels in {wheels}: run `pack` where PyPI is reachable first.", file=sys.stderr)
        return 2
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile"]
    subprocess.run([*install, "--target", str(site), *map(str, found)], check=True)  # noqa: S603
    write_shims(site)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]), PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "devtools.gpu_smoke", "scenarios", "--device", device]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode  # noqa: S603


def scenarios(device: str, json_out: str | None) -> int:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("CUDA is not available to torch here.", file=sys.stderr)
            return 2
        device_name = f"cuda ({torch.cuda.get_device_name(0)}, torch {torch.__version__})"
    else:
        device_name = "cpu"
    with tempfile.TemporaryDirectory() as work:
        rows = smoke(device, Path(work))
    import av

    if getattr(av, "SMOKE_SHIM", False):
        device_name += "; shims: tn (identity text normalisation), av (prompt read with `wave`)"
    print(table(rows, device_name))
    if json_out:
        Path(json_out).write_text(json.dumps([{**row.__dict__, "rtf": row.rtf} for row in rows], indent=1))
    return 0 if all(row.ok for row in rows) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.gpu_smoke", description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    verb = verbs.add_parser("pack", help="run on the CPU here, then download the wheels a GPU host lacks")
    verb.add_argument("target", nargs="?", default=".whl", type=Path)
    verb.add_argument("--python", default="3.12", help="the GPU host's Python version (the image's: 3.12)")
    verb = verbs.add_parser("run", help="on the GPU host: install the carried wheels, run the scenarios")
    verb.add_argument("--wheels", default=".whl", type=Path)
    verb.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    verb = verbs.add_parser("scenarios", help="the scenarios alone, in this environment as it is")
    verb.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    verb.add_argument("--json", dest="json_out")
    args = parser.parse_args(argv)
    if args.verb == "pack":
        return pack(args.target, args.python)
    if args.verb == "run":
        return run(args.wheels, args.device)
    return scenarios(args.device, args.json_out)


if __name__ == "__main__":
    sys.exit(main())
