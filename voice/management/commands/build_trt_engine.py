"""manage.py build_trt_engine: build CosyVoice2's TensorRT plan ahead of the first request."""

import importlib.util
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from voice.management.modelfiles import COSYVOICE_TRT_ONNX, COSYVOICE_TRT_PLAN_GLOB, cosyvoice_files


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class Command(BaseCommand):
    help = (
        "On a GPU host: load CosyVoice2 with load_trt=True through MagicMirror's engine, so upstream converts "
        f"{COSYVOICE_TRT_ONNX} into a TensorRT plan for this GPU before the first request. Run it on each GPU "
        "model that will serve TTS (plans are tied to the GPU)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Delete existing plans and build again.")

    def handle(self, *args, force=False, **options):
        model_dir = Path(settings.COSYVOICE_MODEL_DIR)
        if not _installed("torch"):
            raise CommandError("PyTorch is not installed, so CUDA cannot be used here: build the plan on a GPU host.")
        import torch

        if not torch.cuda.is_available():
            raise CommandError(
                "CUDA is not available on this host: TensorRT plans are built on the GPU that runs them."
            )
        if not _installed("cosyvoice.cli.cosyvoice"):
            raise CommandError(
                "The official CosyVoice code is not installed (install it from github.com/FunAudioLLM/CosyVoice; "
                "the PyPI package named cosyvoice is a different project)."
            )
        if not _installed("tensorrt"):
            raise CommandError("TensorRT is not installed (pip install tensorrt matching the CUDA version).")
        files = cosyvoice_files(model_dir)
        if files["missing"]:
            raise CommandError(
                f"The CosyVoice2 model in {model_dir} is incomplete ({', '.join(files['missing'])} missing): "
                "run manage.py download_models --cosyvoice."
            )
        if not files["trt_onnx"]:
            raise CommandError(f"{model_dir} has no {COSYVOICE_TRT_ONNX}, which the TensorRT plan is built from.")
        if force:
            for plan in model_dir.glob(COSYVOICE_TRT_PLAN_GLOB):
                plan.unlink()
        before = set(files["trt_plans"])

        from voice.tts.base import TTSError
        from voice.tts.cosyvoice2 import CosyVoice2Engine

        self.stdout.write(f"Loading CosyVoice2 from {model_dir} with TensorRT (the first build takes minutes)...")
        try:
            engine = CosyVoice2Engine.from_settings(load_trt=True, warmup=True)
            engine.warm_up()  # loads the model: upstream builds the missing plan here
        except TTSError as exc:
            raise CommandError(f"CosyVoice2 did not load: {exc}") from None
        plans = sorted(p.name for p in model_dir.glob(COSYVOICE_TRT_PLAN_GLOB))
        if not plans:
            raise CommandError(f"CosyVoice2 loaded but wrote no TensorRT plan in {model_dir}.")
        new = sorted(set(plans) - before)
        self.stdout.write(f"GPU: {torch.cuda.get_device_name(0)}; engine: {engine.describe()}")
        self.stdout.write(
            self.style.SUCCESS(
                f"TensorRT plans: {', '.join(plans)}" + (f" (built: {', '.join(new)})" if new else " (already built)")
            )
        )
