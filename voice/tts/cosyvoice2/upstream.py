"""The upstream code as the adapter finds it: importing and checking it, vLLM and torch, and the data
forms of its two API generations.

The adapter follows the Python API of upstream commit ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40
(2026-03-16), `cosyvoice.cli.cosyvoice.CosyVoice2`, and also the older form (before upstream 622a3a1,
2025-12-08) whose prompts are 16 kHz float tensors `prompt_speech_16k` instead of WAV paths; which one is
installed is read from the parameter names of `add_zero_shot_spk` / `frontend.frontend_zero_shot`
(`prompt_form`).

The official code is not on PyPI (the package named `cosyvoice` there is a third-party wrapper): a GPU
host installs it from git, see docs/cosyvoice2.md. Without it, `import_cosyvoice2` raises
TTSError(tts_engine_missing) saying what is wrong.
"""

import importlib
import importlib.util
import inspect
import logging
import threading
from pathlib import Path

import numpy as np

from ...audio import decode_audio
from ..base import TTSError

logger = logging.getLogger(__package__)

UPSTREAM_REPOSITORY = "FunAudioLLM/CosyVoice"
UPSTREAM_COMMIT = "ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40"
COSYVOICE3_SINCE = "bfa835a (2025-12-08)"  # the commit that added the CosyVoice3 class
REQUIRED_METHODS = ("add_zero_shot_spk", "save_spkinfo", "inference_zero_shot")
PROMPT_16K_RATE = 16000  # the older API's prompt_speech_16k
MAX_PROMPT_SECONDS = 30.0  # upstream refuses longer prompts
PROMPT_PATH = "path"  # current API: prompt_wav is a path
PROMPT_TENSOR_16K = "tensor16k"  # older API: prompt_speech_16k is a float tensor [1, T]


# --- torch and vLLM -------------------------------------------------------------------------------------
def torch_cuda_available() -> bool:
    """True when torch is importable and sees a CUDA device; torch missing means no CUDA."""
    try:
        import torch
    except ImportError:
        return False
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA install is no CUDA
        logger.warning("torch.cuda.is_available() failed", exc_info=True)
        return False


def vllm_available() -> bool:
    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        return False


_vllm_registered = False
_vllm_lock = threading.Lock()


def register_vllm_model() -> None:
    """Make upstream's LLM known to vLLM, as upstream's vllm_example.py does before loading with load_vllm."""
    global _vllm_registered
    with _vllm_lock:
        if _vllm_registered:
            return
        from cosyvoice.vllm.cosyvoice2 import CosyVoice2ForCausalLM
        from vllm import ModelRegistry

        ModelRegistry.register_model("CosyVoice2ForCausalLM", CosyVoice2ForCausalLM)
        _vllm_registered = True


# --- importing the official code ------------------------------------------------------------------------
def _installed_from() -> str:
    """The distribution(s) that provide the top-level `cosyvoice` package, for error messages."""
    try:
        from importlib.metadata import packages_distributions

        names = packages_distributions().get("cosyvoice") or []
    except Exception:
        names = []
    return f" (installed by the distribution {', '.join(sorted(set(names)))})" if names else ""


def _missing(message: str) -> TTSError:
    return TTSError(message + " See docs/cosyvoice2.md.", code="tts_engine_missing")


def check_api(cls) -> None:
    """Raise tts_engine_missing unless `cls` has the CosyVoice2/3 methods the adapter calls."""
    absent = [name for name in REQUIRED_METHODS if not callable(getattr(cls, name, None))]
    if absent:
        name = getattr(cls, "__name__", "CosyVoice")
        raise _missing(
            f"The installed {name} class lacks {', '.join(absent)}: it is not the official "
            f"{UPSTREAM_REPOSITORY} code, or it predates add_zero_shot_spk (April 2025){_installed_from()}."
        )


def import_cosyvoice2():
    """`cosyvoice.cli.cosyvoice.CosyVoice2` of the official code, or TTSError(tts_engine_missing)."""
    return import_cosyvoice("CosyVoice2")


def import_cosyvoice(class_name: str = "CosyVoice2"):
    """`cosyvoice.cli.cosyvoice.<class_name>` (CosyVoice2 or CosyVoice3) of the official code, or
    TTSError(tts_engine_missing) saying what is wrong."""
    try:
        spec = importlib.util.find_spec("cosyvoice")
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise _missing(
            f"The official CosyVoice code ({UPSTREAM_REPOSITORY}, cloned from git) is not importable: "
            "no `cosyvoice` package on the Python path."
        )
    try:
        module = importlib.import_module("cosyvoice.cli.cosyvoice")
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing in ("cosyvoice.cli", "cosyvoice.cli.cosyvoice"):
            raise _missing(
                f"The `cosyvoice` package found{_installed_from()} is not the official {UPSTREAM_REPOSITORY} "
                "code (it has no cosyvoice.cli.cosyvoice; the PyPI package of that name is a third-party "
                "wrapper): uninstall it and put the git checkout on PYTHONPATH."
            ) from exc
        if missing.split(".")[0] == "matcha":
            raise _missing(
                "The CosyVoice code needs Matcha-TTS: add <checkout>/third_party/Matcha-TTS to PYTHONPATH."
            ) from exc
        raise _missing(f"The CosyVoice code cannot be imported: the module {missing!r} is missing.") from exc
    except Exception as exc:
        raise _missing(f"The CosyVoice code cannot be imported: {type(exc).__name__}: {exc}") from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        since = f" (CosyVoice3 came with upstream {COSYVOICE3_SINCE})" if class_name == "CosyVoice3" else ""
        raise _missing(f"cosyvoice.cli.cosyvoice has no {class_name} class{since}{_installed_from()}.")
    check_api(cls)
    if importlib.util.find_spec("matcha") is None:  # imported only while the model loads: check now
        raise _missing("The CosyVoice code needs Matcha-TTS: add <checkout>/third_party/Matcha-TTS to PYTHONPATH.")
    return cls


# --- data in upstream's forms ---------------------------------------------------------------------------
def speech_to_pcm16(speech) -> bytes:
    """A `tts_speech` chunk (torch tensor or numpy array, [1, N] float in [-1, 1]) as PCM16 LE bytes."""
    if not isinstance(speech, np.ndarray):
        for step in ("detach", "cpu", "float"):
            method = getattr(speech, step, None)
            if callable(method):
                speech = method()
        to_numpy = getattr(speech, "numpy", None)
        if callable(to_numpy):
            speech = to_numpy()
    samples = np.asarray(speech, dtype=np.float32).reshape(-1)
    samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.rint(np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


def read_prompt_16k(path: Path) -> np.ndarray:
    """A reference recording as the older API's prompt: mono float32 [1, T] at 16 kHz (PyAV, no torchaudio)."""
    decoded = decode_audio(path.read_bytes(), sample_rate=PROMPT_16K_RATE, max_seconds=MAX_PROMPT_SECONDS)
    samples = np.frombuffer(decoded.pcm, dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(1, -1)


def as_model_tensor(array: np.ndarray):
    """A torch tensor where torch is installed (the real model needs one), else the array (the stand-in)."""
    try:
        import torch
    except ImportError:
        return array
    return torch.from_numpy(np.ascontiguousarray(array))


def takes_text_generator(model) -> bool:
    """True where the loaded model speaks a generator as `tts_text` (bi-streaming, upstream 07e4775): its
    frontend tokenises one lazily, its LLM has `inference_bistream`, and it runs without vLLM (upstream's
    llm_job asserts that; a failed assertion there would leave the stream waiting forever)."""
    frontend = getattr(model, "frontend", None)
    llm = getattr(getattr(model, "model", None), "llm", None)
    return (
        callable(getattr(frontend, "_extract_text_token_generator", None))
        and callable(getattr(frontend, "text_normalize", None))
        and callable(getattr(llm, "inference_bistream", None))
        and not hasattr(llm, "vllm")
    )


def prompt_form(model) -> str:
    """PROMPT_PATH or PROMPT_TENSOR_16K, from the parameter names of the installed code."""
    frontend = getattr(model, "frontend", None)
    for function in (getattr(model, "add_zero_shot_spk", None), getattr(frontend, "frontend_zero_shot", None)):
        if function is None:
            continue
        try:
            names = inspect.signature(function).parameters
        except (TypeError, ValueError):
            continue
        if "prompt_wav" in names:
            return PROMPT_PATH
        if "prompt_speech_16k" in names:
            return PROMPT_TENSOR_16K
    return PROMPT_PATH
