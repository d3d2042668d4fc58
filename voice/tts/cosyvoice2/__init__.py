"""CosyVoice2 and CosyVoice3 (FunAudioLLM/CosyVoice): zero-shot voice cloning on a GPU, streamed chunk by
chunk (docs/cosyvoice2.md). One engine (`cosyvoice2`) drives either model; the folder's yaml says which.

- engine.py: `CosyVoice2Engine`, loading and inference, with the token_hop_len guard;
- upstream.py: importing and checking the official code, vLLM and torch, the two API generations;
- model_dir.py: which model the directory holds (CosyVoice2 or CosyVoice3) and what it must hold;
- speaker_cache.py: the registered speaker prompts in spk2info.pt, and its file lock;
- stopping.py: stopping upstream's LLM thread and releasing its per-request state after an early close.

The names below are what the rest of the project and the tests use. A test that replaces one with
monkeypatch patches the module that uses it (e.g. `engine.vllm_available`), not this package.
"""

from .engine import MIN_SENTENCE_CHARS, MODEL_SAMPLE_RATE, WARMUP_TEXT, CosyVoice2Engine, split_sentences
from .model_dir import (
    COSYVOICE2,
    COSYVOICE3,
    COSYVOICE3_PROMPT_PREFIX,
    MODEL_KINDS,
    REQUIRED_MODEL_FILES,
    ModelKind,
    check_model_dir,
    inspect_model_dir,
    model_kind,
)
from .speaker_cache import DEFAULT_SPEAKER_PREFIX, SPEAKER_ID_PREFIX, speaker_cache_id
from .upstream import (
    PROMPT_PATH,
    PROMPT_TENSOR_16K,
    UPSTREAM_COMMIT,
    UPSTREAM_REPOSITORY,
    import_cosyvoice,
    import_cosyvoice2,
    prompt_form,
    speech_to_pcm16,
    torch_cuda_available,
)

__all__ = [
    "COSYVOICE2",
    "COSYVOICE3",
    "COSYVOICE3_PROMPT_PREFIX",
    "DEFAULT_SPEAKER_PREFIX",
    "MIN_SENTENCE_CHARS",
    "MODEL_KINDS",
    "MODEL_SAMPLE_RATE",
    "PROMPT_PATH",
    "PROMPT_TENSOR_16K",
    "REQUIRED_MODEL_FILES",
    "SPEAKER_ID_PREFIX",
    "UPSTREAM_COMMIT",
    "UPSTREAM_REPOSITORY",
    "WARMUP_TEXT",
    "CosyVoice2Engine",
    "ModelKind",
    "check_model_dir",
    "import_cosyvoice",
    "import_cosyvoice2",
    "inspect_model_dir",
    "model_kind",
    "prompt_form",
    "speaker_cache_id",
    "speech_to_pcm16",
    "split_sentences",
    "torch_cuda_available",
]
