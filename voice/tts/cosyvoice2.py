"""CosyVoice2 (FunAudioLLM/CosyVoice): zero-shot voice cloning on a GPU, streamed chunk by chunk.

The adapter follows the Python API of upstream commit ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40
(2026-03-16), `cosyvoice.cli.cosyvoice.CosyVoice2`, and also the older form (before upstream 622a3a1,
2025-12-08) whose prompts are 16 kHz float tensors `prompt_speech_16k` instead of WAV paths; which one is
installed is read from the parameter names of `add_zero_shot_spk` / `frontend.frontend_zero_shot`.
voice/tests/cosyvoice_real runs this adapter against the real upstream classes (the older form) on a CPU.

- The official code is not on PyPI (the package named `cosyvoice` there is a third-party wrapper): a GPU
  host installs it from git, see docs/cosyvoice2.md. Without it, or without the weights, construction raises
  TTSError and the registry falls back to the next engine.
- The model loads on first use (`stream` or `warm_up`), once, under a lock.
- Each speaker is registered once with `add_zero_shot_spk` under `mm-spk-<speaker id>-<version>` and
  persisted with `save_spkinfo()` to `{model_dir}/spk2info.pt`, which upstream loads again on the next start,
  so a restarted worker reuses it; a new version replaces the old entry.
- The token_hop_len guard (upstream bug, open PR #1849): upstream's streaming loop doubles the *shared*
  `model.model.token_hop_len` after every chunk and never sets it back, so from the third request on first
  chunks are ~4 s long and concurrent streams change each other's hop. The adapter sets it back to its
  value after loading before (and after) every call, and runs one inference call at a time per model.
  Text is synthesised one sentence per call, so the guard holds between sentences too and concurrent
  streams take turns sentence by sentence.
"""

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from ..audio import AudioError, decode_audio
from .base import TTSEngine, TTSError, VoiceRef

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None

logger = logging.getLogger(__name__)

UPSTREAM_REPOSITORY = "FunAudioLLM/CosyVoice"
UPSTREAM_COMMIT = "ace7c47f41bbd303aa6bf1ea80e6f9fbd595cd40"
MODEL_SAMPLE_RATE = 24000  # cosyvoice2.yaml sample_rate; replaced by the loaded model's value
PROMPT_16K_RATE = 16000  # the older API's prompt_speech_16k
MAX_PROMPT_SECONDS = 30.0  # upstream refuses longer prompts
REQUIRED_MODEL_FILES = (
    "cosyvoice2.yaml",
    "llm.pt",
    "flow.pt",
    "hift.pt",
    "campplus.onnx",
    "speech_tokenizer_v2.onnx",
    "CosyVoice-BlankEN",
)
REQUIRED_METHODS = ("add_zero_shot_spk", "save_spkinfo", "inference_zero_shot")
SPEAKER_ID_PREFIX = "mm-spk-"
DEFAULT_SPEAKER_PREFIX = "mm-default-"
WARMUP_TEXT = "Hello, this is a short warm-up sentence."
MIN_SENTENCE_CHARS = 12  # shorter pieces are merged with their neighbour
PROMPT_PATH = "path"  # current API: prompt_wav is a path
PROMPT_TENSOR_16K = "tensor16k"  # older API: prompt_speech_16k is a float tensor [1, T]

_CJK_STOPS = "。！？；"
_SENTENCE_BREAK = re.compile(r"(?<=[.!?;…])\s+|(?<=[" + _CJK_STOPS + r"])\s*|\s*\n+\s*")
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


# --- helpers --------------------------------------------------------------------------------------------
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
    """Raise tts_engine_missing unless `cls` has the CosyVoice2 methods the adapter calls."""
    absent = [name for name in REQUIRED_METHODS if not callable(getattr(cls, name, None))]
    if absent:
        raise _missing(
            f"The installed CosyVoice2 class lacks {', '.join(absent)}: it is not the official "
            f"{UPSTREAM_REPOSITORY} code, or it predates add_zero_shot_spk (April 2025){_installed_from()}."
        )


def import_cosyvoice2():
    """`cosyvoice.cli.cosyvoice.CosyVoice2` of the official code, or TTSError(tts_engine_missing)."""
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
    cls = getattr(module, "CosyVoice2", None)
    if cls is None:
        raise _missing(f"cosyvoice.cli.cosyvoice has no CosyVoice2 class{_installed_from()}.")
    check_api(cls)
    if importlib.util.find_spec("matcha") is None:  # imported only while the model loads: check now
        raise _missing("The CosyVoice code needs Matcha-TTS: add <checkout>/third_party/Matcha-TTS to PYTHONPATH.")
    return cls


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


def split_sentences(text: str, min_chars: int = MIN_SENTENCE_CHARS) -> list[str]:
    """Sentences to synthesise one per call; pieces shorter than `min_chars` join a neighbour."""
    text = (text or "").strip()
    if not text:
        return []
    sentences: list[str] = []
    buffer = ""
    for piece in _SENTENCE_BREAK.split(text):
        piece = piece.strip()
        if not piece:
            continue
        buffer = _join(buffer, piece) if buffer else piece
        if len(buffer) >= min_chars:
            sentences.append(buffer)
            buffer = ""
    if buffer:
        if sentences:
            sentences[-1] = _join(sentences[-1], buffer)
        else:
            sentences.append(buffer)
    return sentences


def _join(left: str, right: str) -> str:
    return left + right if left[-1] in _CJK_STOPS else f"{left} {right}"


def speaker_cache_id(voice: VoiceRef) -> str:
    """The stable zero_shot_spk_id of a speaker version."""
    version = _UNSAFE_ID_CHARS.sub("_", str(voice.version)) or "0"
    return f"{SPEAKER_ID_PREFIX}{voice.speaker_id}-{version}"


# --- the engine -----------------------------------------------------------------------------------------
class CosyVoice2Engine(TTSEngine):
    name = "cosyvoice2"
    clones_voices = True
    sample_rate = MODEL_SAMPLE_RATE

    def __init__(
        self,
        model_dir,
        *,
        load_jit: bool = False,
        load_trt: bool = False,
        fp16: bool = False,
        load_vllm: bool = False,
        trt_concurrent: int = 1,
        warmup: bool = True,
        default_prompt_wav: str = "",
        default_prompt_text: str = "",
        cosyvoice_cls=None,
        cuda_available: Callable[[], bool] | None = None,
    ):
        if cosyvoice_cls is None and importlib.util.find_spec("cosyvoice") is None:
            import_cosyvoice2()  # cheap check first: raises with the full explanation
        check_model_dir(model_dir)  # before the slow import of torch
        if cosyvoice_cls is None:
            cosyvoice_cls = import_cosyvoice2()
        else:
            check_api(cosyvoice_cls)
        self._cls = cosyvoice_cls
        self.cuda = bool((cuda_available or torch_cuda_available)())
        self.requested = {"load_jit": load_jit, "load_trt": load_trt, "fp16": fp16, "load_vllm": load_vllm}
        use_vllm = bool(load_vllm and self.cuda)
        if use_vllm and not vllm_available():
            logger.warning("COSYVOICE_LOAD_VLLM is set but vllm is not installed: CosyVoice2 runs without it.")
            use_vllm = False
        self.options = self._constructor_options(
            load_jit=bool(load_jit and self.cuda),
            load_trt=bool(load_trt and self.cuda),
            fp16=bool(fp16 and self.cuda),
            load_vllm=use_vllm,
            trt_concurrent=max(1, int(trt_concurrent)),
        )
        self.model_dir = check_model_dir(model_dir, self._accelerated_files())
        self.warmup = bool(warmup)
        self.default_prompt_wav = str(default_prompt_wav or "")
        self.default_prompt_text = str(default_prompt_text or "").strip()
        self._model = None
        self._hop_len_after_load = None
        self._prompt_form = PROMPT_PATH
        self._registered: set[str] = set()  # used only if the model has no frontend.spk2info
        self._load_lock = threading.Lock()
        self._lock = threading.Lock()  # one inference call (and speaker registration) at a time

    @classmethod
    def from_settings(cls, **overrides) -> "CosyVoice2Engine":
        from django.conf import settings

        kwargs = {
            "model_dir": settings.COSYVOICE_MODEL_DIR,
            "load_jit": settings.COSYVOICE_LOAD_JIT,
            "load_trt": settings.COSYVOICE_LOAD_TRT,
            "fp16": settings.COSYVOICE_FP16,
            "load_vllm": settings.COSYVOICE_LOAD_VLLM,
            "trt_concurrent": settings.COSYVOICE_TRT_CONCURRENT,
            "warmup": settings.COSYVOICE_WARMUP,
            "default_prompt_wav": getattr(settings, "COSYVOICE_DEFAULT_PROMPT_WAV", "") or "",
            "default_prompt_text": getattr(settings, "COSYVOICE_DEFAULT_PROMPT_TEXT", "") or "",
        }
        kwargs.update(overrides)
        return cls(**kwargs)

    # --- construction ---------------------------------------------------------------------------------
    def _constructor_options(self, **wanted) -> dict:
        """The options the installed class accepts (older releases lack load_vllm, trt_concurrent)."""
        try:
            parameters = inspect.signature(self._cls).parameters
        except (TypeError, ValueError):
            return {k: wanted[k] for k in ("load_jit", "load_trt", "fp16")}
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        options = {k: v for k, v in wanted.items() if takes_any or k in parameters}
        dropped = [k for k, v in wanted.items() if k not in options and v not in (False, 1)]
        if dropped:
            logger.warning("The installed CosyVoice2 does not accept %s; ignored.", ", ".join(dropped))
        turned_off = [k for k, v in self.requested.items() if v and not self.cuda]
        if turned_off:
            logger.info("No CUDA device: CosyVoice2 runs without %s.", ", ".join(turned_off))
        return options

    def _accelerated_files(self) -> tuple[tuple[str, ...], ...]:
        precision = "fp16" if self.options.get("fp16") else "fp32"
        groups = []
        if self.options.get("load_trt"):
            # Upstream builds the plan from the ONNX file on first load when the plan is missing.
            groups.append((f"flow.decoder.estimator.{precision}.mygpu.plan", "flow.decoder.estimator.fp32.onnx"))
        if self.options.get("load_jit"):
            groups.append((f"flow.encoder.{precision}.zip",))
        return tuple(groups)

    # --- loading --------------------------------------------------------------------------------------
    @property
    def loaded(self) -> bool:
        return self._model is not None

    def _ensure_loaded(self):
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def _load(self):
        logger.info("Loading CosyVoice2 from %s with %s", self.model_dir, self.options)
        try:
            if self.options.get("load_vllm") and getattr(self._cls, "__module__", "").startswith("cosyvoice."):
                register_vllm_model()
            with self._spkinfo_file_lock():  # upstream reads spk2info.pt while it loads
                model = self._cls(str(self.model_dir), **self.options)
        except TTSError:
            raise
        except Exception as exc:
            raise TTSError(
                f"CosyVoice2 could not load the model in {self.model_dir}: {type(exc).__name__}: {exc}",
                code="tts_load_failed",
            ) from exc
        self.sample_rate = int(getattr(model, "sample_rate", MODEL_SAMPLE_RATE))
        self._hop_len_after_load = getattr(getattr(model, "model", None), "token_hop_len", None)
        self._prompt_form = prompt_form(model)
        logger.info(
            "CosyVoice2 loaded: %d Hz, token_hop_len %s, prompts as %s",
            self.sample_rate,
            self._hop_len_after_load,
            self._prompt_form,
        )
        return model

    @contextlib.contextmanager
    def _spkinfo_file_lock(self):
        """Serialise reading and writing spk2info.pt between processes sharing the model dir (POSIX)."""
        with contextlib.ExitStack() as stack:
            if fcntl is not None:
                try:
                    handle = stack.enter_context((self.model_dir / ".spk2info.lock").open("a+b"))
                except OSError:  # a read-only model dir: nothing is written there either
                    handle = None
                if handle is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file closes
            yield

    # --- speakers -------------------------------------------------------------------------------------
    def _known(self, model, spk_id: str) -> bool:
        spk2info = getattr(getattr(model, "frontend", None), "spk2info", None)
        if isinstance(spk2info, Mapping):
            return spk_id in spk2info
        return spk_id in self._registered

    def _speaker_id(self, model, voice: VoiceRef | None) -> str:
        if voice is None:
            return self._default_speaker_id(model)
        return self._register(
            model,
            speaker_cache_id(voice),
            prompt_text=voice.prompt_text,
            audio_path=voice.audio_path,
            who=f"the speaker {voice.name!r}",
            stale_prefix=f"{SPEAKER_ID_PREFIX}{voice.speaker_id}-",
        )

    def _default_speaker_id(self, model) -> str:
        if not self.default_prompt_wav:
            raise TTSError(
                "CosyVoice2 has no built-in voices: choose a speaker with a reference recording, or set "
                "COSYVOICE_DEFAULT_PROMPT_WAV and COSYVOICE_DEFAULT_PROMPT_TEXT for a default voice.",
                code="no_speaker",
            )
        if not self.default_prompt_text:
            raise TTSError(
                "COSYVOICE_DEFAULT_PROMPT_TEXT must hold the transcript of COSYVOICE_DEFAULT_PROMPT_WAV.",
                code="no_speaker",
            )
        path = Path(self.default_prompt_wav).expanduser().resolve()
        try:
            stat = path.stat()
        except OSError:
            stat = None
        key = f"{path}|{stat.st_size if stat else 0}|{stat.st_mtime_ns if stat else 0}|{self.default_prompt_text}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return self._register(
            model,
            f"{DEFAULT_SPEAKER_PREFIX}{digest}",
            prompt_text=self.default_prompt_text,
            audio_path=str(path),
            who="the default voice (COSYVOICE_DEFAULT_PROMPT_WAV)",
            stale_prefix=DEFAULT_SPEAKER_PREFIX,
        )

    @staticmethod
    def _normalise_prompt_text(model, text: str) -> str:
        """The transcript as upstream normalises a prompt given per call (add_zero_shot_spk does not)."""
        normalise = getattr(getattr(model, "frontend", None), "text_normalize", None)
        if not callable(normalise) or not text:
            return text
        try:
            normalised = normalise(text, split=False, text_frontend=True)
        except Exception:
            logger.warning("CosyVoice2: could not normalise a prompt transcript", exc_info=True)
            return text
        return normalised if isinstance(normalised, str) and normalised else text

    def _register(self, model, spk_id: str, *, prompt_text: str, audio_path: str, who: str, stale_prefix: str) -> str:
        """Register a prompt once under `spk_id` (kept in spk2info across restarts). Call with self._lock held."""
        if self._known(model, spk_id):
            return spk_id
        path = Path(audio_path) if audio_path else None
        if path is None or not path.is_file():
            raise TTSError(
                f"The reference recording of {who} is missing ({audio_path or 'no file'}): upload or record it again.",
                code="speaker_audio_missing",
            )
        try:
            prompt = str(path) if self._prompt_form == PROMPT_PATH else as_model_tensor(read_prompt_16k(path))
        except AudioError as exc:
            raise TTSError(
                f"The reference recording of {who} cannot be used: {exc}", code="speaker_audio_invalid"
            ) from exc
        logger.info("CosyVoice2: registering %s as %s", who, spk_id)
        try:
            model.add_zero_shot_spk(self._normalise_prompt_text(model, prompt_text or ""), prompt, spk_id)
        except (AssertionError, ValueError, OSError) as exc:
            raise TTSError(
                f"CosyVoice2 cannot use the reference recording of {who}: {exc or type(exc).__name__}",
                code="speaker_audio_invalid",
            ) from exc
        except Exception as exc:
            raise TTSError(f"CosyVoice2 failed on the reference recording of {who}: {exc}", code="tts_failed") from exc
        self._registered.add(spk_id)
        spk2info = getattr(getattr(model, "frontend", None), "spk2info", None)
        if isinstance(spk2info, Mapping):
            for stale in [k for k in spk2info if k.startswith(stale_prefix) and k != spk_id]:
                del spk2info[stale]  # an older version of the same voice
        try:
            with self._spkinfo_file_lock():
                model.save_spkinfo()
        except Exception:
            logger.warning("CosyVoice2: could not save spk2info.pt in %s", self.model_dir, exc_info=True)
        return spk_id

    # --- synthesis ------------------------------------------------------------------------------------
    def _reset_hop_len(self, model) -> None:
        inner = getattr(model, "model", None)
        if self._hop_len_after_load is not None and hasattr(inner, "token_hop_len"):
            inner.token_hop_len = self._hop_len_after_load

    def stream(self, text: str, voice: VoiceRef | None = None) -> Iterator[bytes]:
        sentences = split_sentences(text)
        if not sentences:
            return
        model = self._ensure_loaded()
        for sentence in sentences:
            with self._lock:
                spk_id = self._speaker_id(model, voice)
                yield from self._synthesise(model, sentence, spk_id)

    def _synthesise(self, model, sentence: str, spk_id: str) -> Iterator[bytes]:
        """One streamed inference call. Call with self._lock held."""
        self._reset_hop_len(model)  # the token_hop_len guard
        outputs = None
        try:
            outputs = model.inference_zero_shot(sentence, "", "", zero_shot_spk_id=spk_id, stream=True)
            for item in outputs:
                pcm = speech_to_pcm16(item["tts_speech"])
                if pcm:
                    yield pcm
        except TTSError:
            raise
        except Exception as exc:
            raise TTSError(f"CosyVoice2 synthesis failed: {type(exc).__name__}: {exc}", code="tts_failed") from exc
        finally:
            close = getattr(outputs, "close", None)
            if callable(close):
                close()  # a consumer that stopped early also stops upstream's generator
            self._reset_hop_len(model)

    # --- the rest of the interface --------------------------------------------------------------------
    def default_voice_name(self) -> str:
        if self.default_prompt_wav:
            return f"default prompt ({Path(self.default_prompt_wav).stem})"
        return "none (a reference recording is needed)"

    def warm_up(self, voice: VoiceRef | None = None) -> None:
        """Load the model (TensorRT plans are built now on first use) and synthesise a short text."""
        if not self.warmup:
            return
        self._ensure_loaded()
        if voice is None and not (self.default_prompt_wav and self.default_prompt_text):
            logger.info("CosyVoice2 loaded; warm-up synthesis skipped: no default prompt is configured.")
            return
        for _ in self.stream(WARMUP_TEXT, voice):
            pass

    def describe(self) -> dict:
        info = super().describe()
        info.update(
            {
                "loaded": self.loaded,
                "cuda": self.cuda,
                "options": dict(self.options),
                "model_dir": str(self.model_dir),
                "upstream_commit": UPSTREAM_COMMIT,
            }
        )
        return info
