"""A tiny CosyVoice2 model directory with random weights, for testing the real upstream classes on a CPU.

It has every file `CosyVoice2(model_dir)` reads, with the official layout and the official class names,
only small: `cosyvoice2.yaml` (an inference-only subset of the official config with small dimensions),
`CosyVoice-BlankEN/` (a word-level tokenizer and a one-layer Qwen2 model), `llm.pt`, `flow.pt`,
`hift.pt` (state dicts of the modules the yaml builds), `campplus.onnx` and `speech_tokenizer_v2.onnx`
(tiny graphs with the input and output names and shapes of the real ones). Nothing is downloaded and
the result depends only on `seed`: the same seed gives the same files.

The flow encoder's width is fixed at 512 upstream (`UpsampleConformerEncoder`), so `flow.pt` stays about
43 MB: generate the folder (a test fixture does, into a temporary folder), never commit it.

Two choices make the random model usable in tests:
- the LLM never ends speech on its own (the end-of-speech logit is pushed far down), so a text of N
  tokens always gives `max_token_text_ratio` (20) x N speech tokens and enough audio for several
  streamed chunks;
- the text tokenizer makes one token per word, so texts of a few words give a few seconds of speech.

The PyPI copy of the upstream code (`cosyvoice2-fr-infer`) loads `llm-original.pt`, `flow-original.pt` and
`hift-original.pt` unless `final=True`; those names are written too, as hard links to the official ones.

By hand, in the environment of requirements-cosyvoice-test.txt:
    .venv-cosyvoice/bin/python -m voice.tests.cosyvoice_real.tiny_model /tmp/tiny-cosyvoice2
"""

import json
import os
import random
import sys
from pathlib import Path

import numpy as np

SPEECH_TOKEN_SIZE = 512  # the real model has 6561
LLM_SIZE = 32  # Qwen2 hidden size (the real model: 896)
SPK_EMBED_DIM = 192  # campplus output; fixed by the frontend's consumers
WHISPER_MELS = 128  # speech_tokenizer_v2 input: whisper log-mel, 100 frames a second
TOKEN_FRAMES = 4  # 100 Hz mel frames per 25 Hz speech token
WORDS = (  # the words the tests speak; anything else is <unk>, one token a word
    "hello there this is a test how are you today good morning my voice sounds like me "
    "the weather is mild and clear speak again please thank you very much one two three"
)
PUNCTUATION = list(".,!?;:'\"-")

YAML = """\
# A tiny CosyVoice2 for tests (voice/tests/cosyvoice_real/tiny_model.py): the official
# cosyvoice2.yaml's inference part, with small dimensions.
sample_rate: 24000
llm_input_size: {llm_size}
llm_output_size: {llm_size}
spk_embed_dim: {spk_embed_dim}
qwen_pretrain_path: ''
token_frame_rate: 25
token_mel_ratio: 2

llm: !new:cosyvoice.llm.llm.Qwen2LM
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_output_size>
    speech_token_size: {speech_tokens}
    length_normalized_loss: True
    lsm_weight: 0
    mix_ratio: [5, 15]
    llm: !new:cosyvoice.llm.llm.Qwen2Encoder
        pretrain_path: !ref <qwen_pretrain_path>
    sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: 25
        win_size: 10
        tau_r: 0.1

flow: !new:cosyvoice.flow.flow.CausalMaskedDiffWithXvec
    input_size: 512
    output_size: 80
    spk_embed_dim: !ref <spk_embed_dim>
    output_type: 'mel'
    vocab_size: {speech_tokens}
    input_frame_rate: !ref <token_frame_rate>
    only_mask_loss: True
    token_mel_ratio: !ref <token_mel_ratio>
    pre_lookahead_len: 3
    encoder: !new:cosyvoice.transformer.upsample_encoder.UpsampleConformerEncoder
        output_size: 512
        attention_heads: 2
        linear_units: 32
        num_blocks: 1
        dropout_rate: 0.1
        positional_dropout_rate: 0.1
        attention_dropout_rate: 0.1
        normalize_before: True
        input_layer: 'linear'
        pos_enc_layer_type: 'rel_pos_espnet'
        selfattention_layer_type: 'rel_selfattn'
        input_size: 512
        use_cnn_module: False
        macaron_style: False
        use_dynamic_chunk: True
    decoder: !new:cosyvoice.flow.flow_matching.CausalConditionalCFM
        in_channels: 240
        n_spks: 1
        spk_emb_dim: 80
        cfm_params: !new:omegaconf.DictConfig
            content:
                sigma_min: 1e-06
                solver: 'euler'
                t_scheduler: 'cosine'
                training_cfg_rate: 0.2
                inference_cfg_rate: 0.7
                reg_loss_type: 'l1'
        estimator: !new:cosyvoice.flow.decoder.CausalConditionalDecoder
            in_channels: 320
            out_channels: 80
            channels: [16]
            dropout: 0.0
            attention_head_dim: 8
            n_blocks: 1
            num_mid_blocks: 1
            num_heads: 2
            act_fn: 'gelu'
            static_chunk_size: !ref <token_frame_rate> * <token_mel_ratio>
            num_decoding_left_chunks: 2

hift: !new:cosyvoice.hifigan.generator.HiFTGenerator
    in_channels: 80
    base_channels: 16
    nb_harmonics: 8
    sampling_rate: !ref <sample_rate>
    nsf_alpha: 0.1
    nsf_sigma: 0.003
    nsf_voiced_threshold: 10
    upsample_rates: [8, 5, 3]
    upsample_kernel_sizes: [16, 11, 7]
    istft_params:
        n_fft: 16
        hop_len: 4
    resblock_kernel_sizes: [3]
    resblock_dilation_sizes: [[1]]
    source_resblock_kernel_sizes: [7, 7, 11]
    source_resblock_dilation_sizes: [[1], [1], [1]]
    lrelu_slope: 0.1
    audio_limit: 0.99
    f0_predictor: !new:cosyvoice.hifigan.f0_predictor.ConvRNNF0Predictor
        num_class: 1
        in_channels: 80
        cond_channels: 16

get_tokenizer: !name:cosyvoice.tokenizer.tokenizer.get_qwen_tokenizer
    token_path: !ref <qwen_pretrain_path>
    skip_special_tokens: True
allowed_special: 'all'
feat_extractor: !name:matcha.utils.audio.mel_spectrogram
    n_fft: 1920
    num_mels: 80
    sampling_rate: !ref <sample_rate>
    hop_size: 480
    win_size: 1920
    fmin: 0
    fmax: 8000
    center: False
"""

STATE_DICTS = ("llm", "flow", "hift")
PYPI_COPY_SUFFIX = "-original"  # cosyvoice2-fr-infer reads llm-original.pt etc. (see the module docstring)


def write_tokenizer(folder: Path) -> int:
    """A word-level tokenizer that AutoTokenizer loads; returns its vocabulary size (before specials)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<|endoftext|>": 1}
    for word in [*WORDS.split(), *PUNCTUATION]:
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()])
    tokenizer.normalizer = normalizers.Lowercase()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<|endoftext|>")
    fast.save_pretrained(str(folder))
    return len(vocab)


def write_qwen2(folder: Path, vocab_size: int) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab_size + 64,  # room for the special tokens upstream's QwenTokenizer adds
        hidden_size=LLM_SIZE,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )
    torch.manual_seed(1)
    Qwen2ForCausalLM(config).save_pretrained(str(folder), safe_serialization=True)


def write_state_dicts(model_dir: Path, seed: int) -> None:
    import torch
    from hyperpyyaml import load_hyperpyyaml

    torch.manual_seed(seed)
    with (model_dir / "cosyvoice2.yaml").open() as f:
        configs = load_hyperpyyaml(f, overrides={"qwen_pretrain_path": str(model_dir / "CosyVoice-BlankEN")})
    with torch.no_grad():
        # Never end speech early: the end-of-speech token and the two tokens above it lose every draw.
        configs["llm"].llm_decoder.bias[SPEECH_TOKEN_SIZE:] = -1.0e4
    for name in STATE_DICTS:
        path = model_dir / f"{name}.pt"
        torch.save(configs[name].state_dict(), path)
        os.link(path, model_dir / f"{name}{PYPI_COPY_SUFFIX}.pt")


def write_campplus(path: Path, rng: np.random.Generator) -> None:
    """Speaker embedding: fbank [1, T, 80] -> [1, 192] (mean over time, then a fixed projection)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(rng.standard_normal((80, SPK_EMBED_DIM)).astype(np.float32), "weight")
    axes = numpy_helper.from_array(np.array([1], dtype=np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input", "axes"], ["mean"], keepdims=0),
            helper.make_node("MatMul", ["mean", "weight"], ["embedding"]),
        ],
        "campplus_tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, "T", 80])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, SPK_EMBED_DIM])],
        [weight, axes],
    )
    _save_onnx(graph, path)


def write_speech_tokenizer(path: Path) -> None:
    """Speech tokens: whisper mel feats [1, 128, T] + feats_length [1] -> [1, T/4] int tokens."""
    from onnx import TensorProto, helper, numpy_helper

    constants = [
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_mel"),
        numpy_helper.from_array(np.array([0], dtype=np.int64), "start"),
        numpy_helper.from_array(np.array([2**62], dtype=np.int64), "end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis_time"),
        numpy_helper.from_array(np.array([TOKEN_FRAMES], dtype=np.int64), "step"),
        numpy_helper.from_array(np.array(997.0, dtype=np.float32), "scale"),
        numpy_helper.from_array(np.array(SPEECH_TOKEN_SIZE, dtype=np.int64), "vocab"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["feats", "axis_mel"], ["level"], keepdims=0),  # [1, T]
            helper.make_node("Slice", ["level", "start", "end", "axis_time", "step"], ["frames"]),  # [1, T/4]
            helper.make_node("Mul", ["frames", "scale"], ["scaled"]),
            helper.make_node("Abs", ["scaled"], ["magnitude"]),
            helper.make_node("Cast", ["magnitude"], ["integer"], to=TensorProto.INT64),
            helper.make_node("Mod", ["integer", "vocab"], ["tokens"]),
        ],
        "speech_tokenizer_tiny",
        [
            helper.make_tensor_value_info("feats", TensorProto.FLOAT, [1, WHISPER_MELS, "T"]),
            helper.make_tensor_value_info("feats_length", TensorProto.INT32, [1]),
        ],
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, [1, "N"])],
        constants,
    )
    _save_onnx(graph, path)


def _save_onnx(graph, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="magicmirror-tests")
    model.ir_version = 8  # readable by every onnxruntime this project may meet
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_tiny_model(model_dir, seed: int = 0) -> Path:
    """Write a tiny random-weight CosyVoice2 model into `model_dir` (created; must not hold one yet)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    random.seed(seed)
    rng = np.random.default_rng(seed)
    blank_en = model_dir / "CosyVoice-BlankEN"
    blank_en.mkdir()
    vocab_size = write_tokenizer(blank_en)
    write_qwen2(blank_en, vocab_size)
    (model_dir / "cosyvoice2.yaml").write_text(
        YAML.format(llm_size=LLM_SIZE, spk_embed_dim=SPK_EMBED_DIM, speech_tokens=SPEECH_TOKEN_SIZE)
    )
    write_state_dicts(model_dir, seed)
    write_campplus(model_dir / "campplus.onnx", rng)
    write_speech_tokenizer(model_dir / "speech_tokenizer_v2.onnx")
    (model_dir / "configuration.json").write_text(json.dumps({"framework": "pytorch", "task": "text-to-speech"}))
    return model_dir


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m voice.tests.cosyvoice_real.tiny_model OUT_DIR")
    print(build_tiny_model(sys.argv[1]))
