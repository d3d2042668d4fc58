"""The model directory (model_dir.py): checked at construction, naming what is missing."""

import pytest

from voice.tts.base import TTSError

from .helpers import engine_for, no_cuda, with_cuda


def test_tensorrt_needs_its_onnx_or_plan(model_dir):
    (model_dir / "flow.decoder.estimator.fp32.onnx").unlink()
    with pytest.raises(TTSError) as excinfo:
        engine_for(model_dir, load_trt=True, fp16=True, cuda_available=with_cuda)
    assert excinfo.value.code == "tts_model_missing"
    assert "flow.decoder.estimator.fp16.mygpu.plan or flow.decoder.estimator.fp32.onnx" in str(excinfo.value)
    engine_for(model_dir, load_trt=True, fp16=True, cuda_available=no_cuda)  # no CUDA, no TensorRT: fine
    (model_dir / "flow.decoder.estimator.fp16.mygpu.plan").write_bytes(b"")
    engine_for(model_dir, load_trt=True, fp16=True, cuda_available=with_cuda)


def test_missing_model_dir_is_tts_model_missing(tmp_path):
    with pytest.raises(TTSError) as excinfo:
        engine_for(tmp_path / "nowhere")
    assert excinfo.value.code == "tts_model_missing" and "iic/CosyVoice2-0.5B" in str(excinfo.value)
    with pytest.raises(TTSError) as excinfo:
        engine_for("")
    assert excinfo.value.code == "tts_model_missing"


def test_incomplete_model_dir_names_the_missing_files(model_dir):
    (model_dir / "llm.pt").unlink()
    (model_dir / "speech_tokenizer_v2.onnx").unlink()
    with pytest.raises(TTSError) as excinfo:
        engine_for(model_dir)
    assert excinfo.value.code == "tts_model_missing"
    assert "llm.pt" in str(excinfo.value) and "speech_tokenizer_v2.onnx" in str(excinfo.value)
