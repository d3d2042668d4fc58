"""The model directory (iic/CosyVoice2-0.5B or FunAudioLLM/Fun-CosyVoice3-0.5B-2512): which model it is and
what it must hold, checked before the slow import of torch.

Which model a folder holds is told by its yaml, as upstream's `AutoModel` tells it: `cosyvoice2.yaml` is
CosyVoice2, `cosyvoice3.yaml` CosyVoice3 (looked for in that order, as upstream does; `cosyvoice.yaml`, the
first generation, is not supported). The lists are the adapter's; `voice_status`, `download_models` and
`build_trt_engine` read them through voice/management/modelfiles.py.
"""

from dataclasses import dataclass
from pathlib import Path

from ..base import TTSError

# Upstream's CosyVoice3 prompts must hold this marker (its LLM asserts token 151646, <|endofprompt|>).
ENDOFPROMPT = "<|endofprompt|>"
# What upstream's example.py puts before a CosyVoice3 prompt transcript.
COSYVOICE3_PROMPT_PREFIX = f"You are a helpful assistant.{ENDOFPROMPT}"


@dataclass(frozen=True)
class ModelKind:
    """One model generation as the adapter drives it."""

    name: str  # the upstream class, cosyvoice.cli.cosyvoice.<name>
    yaml: str  # the file that tells the generation apart
    files: tuple[str, ...]  # what upstream's constructor reads (besides spk2info.pt and the accelerated files)
    model_id: str  # the published weights (ModelScope / Hugging Face)
    jit: bool  # takes load_jit (a TorchScript flow encoder)
    prompt_prefix: str  # put before every prompt transcript
    languages: frozenset[str]


COSYVOICE2 = ModelKind(
    name="CosyVoice2",
    yaml="cosyvoice2.yaml",
    files=(
        "cosyvoice2.yaml",
        "llm.pt",
        "flow.pt",
        "hift.pt",
        "campplus.onnx",
        "speech_tokenizer_v2.onnx",
        "CosyVoice-BlankEN",
    ),
    model_id="iic/CosyVoice2-0.5B",
    jit=True,
    prompt_prefix="",
    languages=frozenset({"zh", "en", "ja", "ko", "yue"}),
)
COSYVOICE3 = ModelKind(
    name="CosyVoice3",
    yaml="cosyvoice3.yaml",
    files=(
        "cosyvoice3.yaml",
        "llm.pt",
        "flow.pt",
        "hift.pt",
        "campplus.onnx",
        "speech_tokenizer_v3.onnx",
        "CosyVoice-BlankEN",
    ),
    model_id="FunAudioLLM/Fun-CosyVoice3-0.5B-2512",
    jit=False,
    prompt_prefix=COSYVOICE3_PROMPT_PREFIX,
    # upstream's README: 9 languages (and Chinese dialects, Cantonese among them)
    languages=frozenset({"zh", "en", "ja", "ko", "yue", "de", "es", "fr", "it", "ru"}),
)
MODEL_KINDS = (COSYVOICE2, COSYVOICE3)  # in the order upstream's AutoModel looks for their yaml
REQUIRED_MODEL_FILES = COSYVOICE2.files  # CosyVoice2's, the default model


def model_kind(path: Path) -> ModelKind | None:
    """The generation whose yaml the folder holds (AutoModel's order), or None."""
    for kind in MODEL_KINDS:
        if (path / kind.yaml).is_file():
            return kind
    return None


def check_model_dir(model_dir, extra: tuple[tuple[str, ...], ...] = ()) -> Path:
    """The model directory as an absolute path, or TTSError(tts_model_missing) naming what is absent."""
    return inspect_model_dir(model_dir, extra)[0]


def inspect_model_dir(model_dir, extra: tuple[tuple[str, ...], ...] = ()) -> tuple[Path, ModelKind]:
    """The absolute model directory and its generation, or TTSError(tts_model_missing) naming what is absent.

    `extra` lists groups of file names of which at least one must exist (TensorRT plan or its ONNX source).
    """
    if not model_dir:
        raise TTSError("COSYVOICE_MODEL_DIR is not set. See docs/cosyvoice2.md.", code="tts_model_missing")
    path = Path(model_dir).expanduser().resolve()
    if not path.is_dir():
        raise TTSError(
            f"No CosyVoice2 model at {path}: download {COSYVOICE2.model_id} there (or {COSYVOICE3.model_id} "
            "for CosyVoice3; manage.py download_models --cosyvoice / --cosyvoice3; docs/cosyvoice2.md).",
            code="tts_model_missing",
        )
    kind = model_kind(path)
    if kind is None:
        first = " (cosyvoice.yaml is the first CosyVoice, which MagicMirror does not drive)"
        raise TTSError(
            f"The folder {path} holds no CosyVoice2 or CosyVoice3 model: neither cosyvoice2.yaml nor "
            f"cosyvoice3.yaml is there{first if (path / 'cosyvoice.yaml').exists() else ''}. Download "
            f"{COSYVOICE2.model_id} or {COSYVOICE3.model_id} into it (docs/cosyvoice2.md).",
            code="tts_model_missing",
        )
    absent = [name for name in kind.files if not (path / name).exists()]
    absent += [" or ".join(group) for group in extra if not any((path / name).exists() for name in group)]
    if absent:
        raise TTSError(
            f"The {kind.name} model at {path} is incomplete; missing: {', '.join(absent)}.",
            code="tts_model_missing",
        )
    return path, kind


def accelerated_files(options: dict) -> tuple[tuple[str, ...], ...]:
    """The `extra` groups of check_model_dir for the constructor options: TensorRT, TorchScript."""
    precision = "fp16" if options.get("fp16") else "fp32"
    groups: list[tuple[str, ...]] = []
    if options.get("load_trt"):
        # Upstream builds the plan from the ONNX file on first load when the plan is missing.
        groups.append((f"flow.decoder.estimator.{precision}.mygpu.plan", "flow.decoder.estimator.fp32.onnx"))
    if options.get("load_jit"):  # never for CosyVoice3, whose constructor has no load_jit
        groups.append((f"flow.encoder.{precision}.zip",))
    return tuple(groups)


def with_prompt_prefix(kind: ModelKind | None, transcript: str) -> str:
    """The prompt text upstream needs for this generation: CosyVoice3's prefix before the transcript, unless
    the transcript carries its own instruction up to <|endofprompt|> already."""
    if kind is None or not kind.prompt_prefix or ENDOFPROMPT in transcript:
        return transcript
    return f"{kind.prompt_prefix}{transcript.strip()}"
