"""The model directory (iic/CosyVoice2-0.5B): what it must hold, checked before the slow import of torch.

The list is the adapter's; `voice_status`, `download_models` and `build_trt_engine` read it through
voice/management/modelfiles.py.
"""

from pathlib import Path

from ..base import TTSError

REQUIRED_MODEL_FILES = (
    "cosyvoice2.yaml",
    "llm.pt",
    "flow.pt",
    "hift.pt",
    "campplus.onnx",
    "speech_tokenizer_v2.onnx",
    "CosyVoice-BlankEN",
)


def check_model_dir(model_dir, extra: tuple[tuple[str, ...], ...] = ()) -> Path:
    """The model directory as an absolute path, or TTSError(tts_model_missing) naming what is absent.

    `extra` lists groups of file names of which at least one must exist (TensorRT plan or its ONNX source).
    """
    if not model_dir:
        raise TTSError("COSYVOICE_MODEL_DIR is not set. See docs/cosyvoice2.md.", code="tts_model_missing")
    path = Path(model_dir).expanduser().resolve()
    if not path.is_dir():
        raise TTSError(
            f"No CosyVoice2 model at {path}: download iic/CosyVoice2-0.5B there (docs/cosyvoice2.md).",
            code="tts_model_missing",
        )
    absent = [name for name in REQUIRED_MODEL_FILES if not (path / name).exists()]
    absent += [" or ".join(group) for group in extra if not any((path / name).exists() for name in group)]
    if absent:
        raise TTSError(
            f"The CosyVoice2 model at {path} is incomplete; missing: {', '.join(absent)}.",
            code="tts_model_missing",
        )
    return path


def accelerated_files(options: dict) -> tuple[tuple[str, ...], ...]:
    """The `extra` groups of check_model_dir for the constructor options: TensorRT, TorchScript."""
    precision = "fp16" if options.get("fp16") else "fp32"
    groups: list[tuple[str, ...]] = []
    if options.get("load_trt"):
        # Upstream builds the plan from the ONNX file on first load when the plan is missing.
        groups.append((f"flow.decoder.estimator.{precision}.mygpu.plan", "flow.decoder.estimator.fp32.onnx"))
    if options.get("load_jit"):
        groups.append((f"flow.encoder.{precision}.zip",))
    return tuple(groups)
