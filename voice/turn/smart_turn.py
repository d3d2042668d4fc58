"""Smart Turn v3.2 (pipecat-ai, BSD-2-Clause): an audio model that says whether a speaker has finished.

The CPU ONNX file ships in the `pipecat-ai` wheel, installed without its dependencies
(requirements-turn-nodeps.txt); it is found through the installed distribution's files, without
importing pipecat (whose package imports loguru and more). It is run here with onnxruntime:
input the Whisper log-mel features (features.py) of the last 8 s of the utterance at 16 kHz,
zero-padded at the start; output one logit per clip, > 0 (probability > 0.5) meaning "complete".

Cost: one session per process, reused (making one takes ~40 ms, and the first call is slower);
features ~6 ms, inference ~20-30 ms with one intra-op thread on this kind of CPU. onnxruntime's
default of one spinning thread per core makes calls from a busy process slow and jittery, so
SMART_TURN_THREADS (default 1) sets the intra-op threads and spinning is off. `predict` is
blocking: call it in a thread (live.turn_end does), never on the event loop.
"""

import importlib.metadata
import threading
from pathlib import Path

import numpy as np

from .features import SAMPLE_RATE, log_mel

DISTRIBUTION = "pipecat-ai"
MODEL_FILE = "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
WINDOW_SECONDS = 8


class ModelMissing(RuntimeError):
    pass


def model_path() -> Path:
    """The ONNX file inside the installed pipecat-ai wheel (ModelMissing when it is not installed)."""
    try:
        path = Path(str(importlib.metadata.distribution(DISTRIBUTION).locate_file(MODEL_FILE)))
    except importlib.metadata.PackageNotFoundError as exc:
        raise ModelMissing(
            "Smart Turn needs the pipecat-ai wheel: pip install --no-deps -r requirements-turn-nodeps.txt"
        ) from exc
    if not path.is_file():
        raise ModelMissing(f"{path} is missing from the installed pipecat-ai")
    return path


def clip_for_model(pcm16k: bytes) -> np.ndarray:
    """The last 8 s of 16 kHz PCM16 as float in [-1, 1), zero-padded at the start to exactly 8 s."""
    n = SAMPLE_RATE * WINDOW_SECONDS
    samples = np.frombuffer(pcm16k[-2 * n :], dtype="<i2").astype(np.float32) / 32768.0
    if len(samples) < n:
        samples = np.concatenate([np.zeros(n - len(samples), dtype=np.float32), samples])
    return samples


class SmartTurn:
    """One onnxruntime session, shared by every session of the process (`run` is thread-safe)."""

    def __init__(self, path: Path | None = None, *, threads: int = 1):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads wait busily for work: on a shared CPU they steal time from everything else.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(path or model_path()), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def probability(self, pcm16k: bytes) -> float:
        """Probability that the speech in this audio (16 kHz PCM16, its end being now) is a finished turn."""
        features = log_mel(clip_for_model(pcm16k))[None]
        (logits,) = self._session.run(None, {"input_features": features})
        value = float(np.asarray(logits).reshape(-1)[0])
        # The exported model ends in a sigmoid; guard anyway against an export that returns a raw logit.
        return value if 0.0 <= value <= 1.0 else float(1 / (1 + np.exp(-value)))


_shared: SmartTurn | None = None
_lock = threading.Lock()


def shared(threads: int = 1) -> SmartTurn:
    """The process's model, loaded on first use."""
    global _shared
    with _lock:
        if _shared is None:
            model = SmartTurn(threads=threads)
            model.probability(b"\0\0" * SAMPLE_RATE)  # onnxruntime's first run is the slowest
            _shared = model
        return _shared
