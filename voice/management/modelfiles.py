"""What a model folder must hold to be usable: shared by `voice_status` and `download_models`."""

from pathlib import Path

from voice.tts.cosyvoice2.model_dir import COSYVOICE2, COSYVOICE3, REQUIRED_MODEL_FILES, ModelKind, model_kind

# (the adapter owns the lists)

# A Vosk model: the acoustic model, its configuration, and a graph (static HCLG, or HCLr + Gr
# for models with a lookahead graph such as the small ones).
VOSK_REQUIRED = ["am/final.mdl", "conf/model.conf"]
VOSK_GRAPHS = [["graph/HCLG.fst"], ["graph/HCLr.fst", "graph/Gr.fst"]]

# CosyVoice2-0.5B as published on ModelScope (iic/CosyVoice2-0.5B).
COSYVOICE_REQUIRED = list(REQUIRED_MODEL_FILES)
# Fun-CosyVoice3-0.5B-2512 (FunAudioLLM/Fun-CosyVoice3-0.5B-2512 on ModelScope and Hugging Face).
COSYVOICE3_REQUIRED = list(COSYVOICE3.files)
COSYVOICE_TRT_ONNX = "flow.decoder.estimator.fp32.onnx"
COSYVOICE_TRT_PLAN_GLOB = "flow.decoder.estimator.*.plan"


def vosk_missing(folder: Path) -> list[str]:
    """The files a Vosk model folder lacks (empty: usable)."""
    missing = [name for name in VOSK_REQUIRED if not (folder / name).is_file()]
    if not any(all((folder / name).is_file() for name in graph) for graph in VOSK_GRAPHS):
        missing.append("graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)")
    return missing


def cosyvoice_files(folder: Path, kind: ModelKind | None = None) -> dict:
    """Which model the folder holds (`model`: CosyVoice2 or CosyVoice3, told by its yaml; None when neither
    yaml is there), which of that model's files are present (of `kind`'s, if given; of CosyVoice2's for a
    folder without a yaml), and the TensorRT plans built so far."""
    detected = model_kind(folder) if folder.is_dir() else None
    required = (kind or detected or COSYVOICE2).files
    return {
        "model": detected.name if detected else None,
        "present": [name for name in required if (folder / name).exists()],
        "missing": [name for name in required if not (folder / name).exists()],
        "trt_onnx": (folder / COSYVOICE_TRT_ONNX).is_file(),
        "trt_plans": sorted(p.name for p in folder.glob(COSYVOICE_TRT_PLAN_GLOB)) if folder.is_dir() else [],
    }
