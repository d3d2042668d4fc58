"""CosyVoice2 and CosyVoice3 (FunAudioLLM/CosyVoice): zero-shot voice cloning on a GPU, streamed chunk by chunk.

The engine over the upstream class (upstream.py: which code, which API generation), the model directory
(model_dir.py: CosyVoice2 or CosyVoice3, told by its yaml as upstream's AutoModel tells it; the class of
that name is constructed, CosyVoice3 without load_jit and with its prompt prefix) and the registered
speaker prompts (speaker_cache.py). voice/tests/cosyvoice_real runs it
against the real upstream classes (the older API) on a CPU.

- Without the official code, or without the weights, construction raises TTSError and the registry falls
  back to the next engine.
- The model loads on first use (`stream` or `warm_up`), once, under a lock.
- The token_hop_len guard (upstream bug, open PR #1849): upstream's streaming loop doubles the *shared*
  `model.model.token_hop_len` after every chunk and never sets it back, so from the third request on first
  chunks are ~4 s long and concurrent streams change each other's hop. The adapter sets it back to its
  value after loading before (and after) every call, and runs one inference call at a time per model.
  Text is synthesised one sentence per call, so the guard holds between sentences too and concurrent
  streams take turns sentence by sentence.
- A stream closed before its end (a barge-in) or failed stops upstream's LLM thread and releases the
  request's state, which upstream leaves behind (stopping.py); the next call waits until that is done.
- `stream_text` speaks one sentence while its text is still written: upstream's bi-streaming, a
  generator as `tts_text` (text_stream.py), through the same call as `stream` (one call under the lock,
  the guard, the stop); with vLLM, which upstream's bi-streaming refuses, the text is awaited first.
"""

import importlib.util
import inspect
import logging
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path

from ... import text as voice_text
from ..base import TTSEngine, TTSError, VoiceRef, language_code
from .model_dir import COSYVOICE3, accelerated_files, check_model_dir, inspect_model_dir
from .speaker_cache import SpeakerCache, spkinfo_file_lock
from .stopping import STOP_TIMEOUT, UpstreamStop, cap_final_decode, request_ids, stop_requests
from .text_stream import TextFeed
from .upstream import (
    UPSTREAM_COMMIT,
    check_api,
    import_cosyvoice,
    import_cosyvoice2,
    prompt_form,
    register_vllm_model,
    speech_to_pcm16,
    takes_text_generator,
    torch_cuda_available,
    vllm_available,
)

logger = logging.getLogger(__package__)

MODEL_SAMPLE_RATE = 24000  # cosyvoice2.yaml sample_rate; replaced by the loaded model's value
WARMUP_TEXT = "Hello, this is a short warm-up sentence."
MIN_SENTENCE_CHARS = 12  # shorter pieces are merged with their neighbour
CHINESE_LANGUAGES = frozenset({"zh", "yue"})  # their text is normalised in Chinese chunks (text_stream.py)


def split_sentences(text: str, min_chars: int = MIN_SENTENCE_CHARS) -> list[str]:
    """The sentences the engine synthesises one per call; pieces shorter than `min_chars` join a neighbour.

    The breaks are voice.text's, those of the live voice session's SentenceSplitter."""
    return voice_text.split_sentences(text, min_chars)


# --- the engine -----------------------------------------------------------------------------------------
class CosyVoice2Engine(TTSEngine):
    name = "cosyvoice2"
    clones_voices = True
    sample_rate = MODEL_SAMPLE_RATE
    # Upstream's languages, each in the speaker's own timbre; its text frontend reads numbers itself.
    languages = frozenset({"zh", "en", "ja", "ko", "yue"})
    reads_numbers = True

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
        # Before the slow import of torch. The folder's yaml says which generation it is (as AutoModel).
        _path, self.model_kind = inspect_model_dir(model_dir)
        if cosyvoice_cls is None:
            cosyvoice_cls = import_cosyvoice(self.model_kind.name)
        else:
            check_api(cosyvoice_cls)
        self._cls = cosyvoice_cls
        self.languages = self.model_kind.languages
        self.cuda = bool((cuda_available or torch_cuda_available)())
        self.requested = {"load_jit": load_jit, "load_trt": load_trt, "fp16": fp16, "load_vllm": load_vllm}
        use_vllm = bool(load_vllm and self.cuda)
        if use_vllm and not vllm_available():
            logger.warning(
                "COSYVOICE_LOAD_VLLM is set but vllm is not installed: %s runs without it.", self.model_kind.name
            )
            use_vllm = False
        self.options = self._constructor_options(
            load_jit=bool(load_jit and self.cuda),
            load_trt=bool(load_trt and self.cuda),
            fp16=bool(fp16 and self.cuda),
            load_vllm=use_vllm,
            trt_concurrent=max(1, int(trt_concurrent)),
        )
        self.model_dir = check_model_dir(model_dir, accelerated_files(self.options))
        if self.model_kind is COSYVOICE3 and self.options.get("load_trt") and self.options.get("fp16"):
            # upstream's own warning, said here before the (long) plan build too
            logger.warning(
                "CosyVoice3 with TensorRT in fp16: upstream warns that its DiT fp16 engine has performance "
                "issues; COSYVOICE_FP16=false builds and uses the fp32 plan (docs/cosyvoice2.md#cosyvoice3)."
            )
        self.warmup = bool(warmup)
        self._speakers = SpeakerCache(
            self.model_dir,
            default_prompt_wav=default_prompt_wav,
            default_prompt_text=default_prompt_text,
            model_kind=self.model_kind,
        )
        self._model = None
        self._hop_len_after_load = None
        self._load_lock = threading.Lock()
        self._lock = threading.Lock()  # one inference call (and speaker registration) at a time
        self._stopping: UpstreamStop | None = None  # the last closed call's upstream work, being stopped

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
            return {k: wanted[k] for k in ("load_jit", "load_trt", "fp16") if k != "load_jit" or self.model_kind.jit}
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        options = {k: v for k, v in wanted.items() if takes_any or k in parameters}
        if not self.model_kind.jit:  # CosyVoice3 has no TorchScript parts: load_jit is never passed
            options.pop("load_jit", None)
            if self.requested["load_jit"]:
                logger.info("COSYVOICE_LOAD_JIT is ignored: %s has no load_jit.", self.model_kind.name)
        ignored = set() if self.model_kind.jit else {"load_jit"}  # said above
        dropped = [k for k, v in wanted.items() if k not in options and v not in (False, 1) and k not in ignored]
        if dropped:
            logger.warning("The installed %s does not accept %s; ignored.", self.model_kind.name, ", ".join(dropped))
        turned_off = [k for k, v in self.requested.items() if v and not self.cuda]
        if turned_off:
            logger.info("No CUDA device: %s runs without %s.", self.model_kind.name, ", ".join(turned_off))
        return options

    @property
    def default_prompt_wav(self) -> str:
        return self._speakers.default_prompt_wav

    @property
    def default_prompt_text(self) -> str:
        return self._speakers.default_prompt_text

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
        logger.info("Loading %s from %s with %s", self.model_kind.name, self.model_dir, self.options)
        try:
            if self.options.get("load_vllm") and getattr(self._cls, "__module__", "").startswith("cosyvoice."):
                register_vllm_model()
            with spkinfo_file_lock(self.model_dir):  # upstream reads spk2info.pt while it loads
                model = self._cls(str(self.model_dir), **self.options)
        except TTSError:
            raise
        except Exception as exc:
            raise TTSError(
                f"{self.model_kind.name} could not load the model in {self.model_dir}: {type(exc).__name__}: {exc}",
                code="tts_load_failed",
            ) from exc
        self.sample_rate = int(getattr(model, "sample_rate", MODEL_SAMPLE_RATE))
        self._hop_len_after_load = getattr(getattr(model, "model", None), "token_hop_len", None)
        self._speakers.prompt_form = prompt_form(model)
        logger.info(
            "%s loaded: %d Hz, token_hop_len %s, prompts as %s",
            self.model_kind.name,
            self.sample_rate,
            self._hop_len_after_load,
            self._prompt_form,
        )
        return model

    @property
    def _prompt_form(self) -> str:
        return self._speakers.prompt_form

    # --- speakers -------------------------------------------------------------------------------------
    def _speaker_id(self, model, voice: VoiceRef | None) -> str:
        """The registered zero_shot_spk_id of `voice` (speaker_cache.py). Call with self._lock held."""
        return self._speakers.speaker_id(model, voice)

    # --- synthesis ------------------------------------------------------------------------------------
    def _reset_hop_len(self, model) -> None:
        inner = getattr(model, "model", None)
        if self._hop_len_after_load is not None and hasattr(inner, "token_hop_len"):
            inner.token_hop_len = self._hop_len_after_load

    def stream(self, text: str, voice: VoiceRef | None = None, language: str | None = None) -> Iterator[bytes]:
        sentences = split_sentences(text)
        if not sentences:
            return
        model = self._ensure_loaded()
        spk_id = None  # registered once per stream (the default voice hashes its prompt file)
        for sentence in sentences:
            with self._lock:
                if spk_id is None:
                    spk_id = self._speaker_id(model, voice)
                yield from self._synthesise(model, sentence, spk_id)

    @property
    def takes_text_stream(self) -> bool:
        """Upstream's bi-streaming, where it is there: never with vLLM (upstream's llm_job refuses a text
        generator then); every upstream the adapter accepts has it (text_stream.py), and a loaded model
        is asked itself (upstream.takes_text_generator)."""
        if self.options.get("load_vllm"):
            return False
        model = self._model
        return model is None or takes_text_generator(model)

    def stream_text(
        self, pieces: Iterable[str], voice: VoiceRef | None = None, language: str | None = None
    ) -> Iterator[bytes]:
        """One sentence as it is written: upstream reads its text while it speaks (text_stream.py)."""
        if not self.takes_text_stream:
            yield from super().stream_text(pieces, voice, language)  # vLLM: the whole sentence first
            return
        model = self._ensure_loaded()
        if not takes_text_generator(model):  # learnt while loading
            yield from super().stream_text(pieces, voice, language)
            return
        normalise = model.frontend.text_normalize
        before: set[str] = set()  # the requests upstream held before this call's (_synthesise fills it)
        feed = TextFeed(
            pieces,
            normalise=lambda chunk: normalise(chunk, split=False, text_frontend=True),
            chinese=language_code(language or "") in CHINESE_LANGUAGES,
            # upstream's decode after the text has no length limit: bound it as its whole-text one is
            on_end=lambda text: cap_final_decode(model, before, _text_tokens(model, text)),
        )
        try:
            if not feed.wait_for_text():  # the lock is taken once there is something to say
                return
            with self._lock:
                spk_id = self._speaker_id(model, voice)
                synthesis = self._synthesise(model, feed.text(), spk_id, held_before=before)
                try:
                    for pcm in synthesis:
                        feed.raise_failure()  # the caller's own error, as its pieces raised it
                        yield pcm
                    feed.raise_failure()
                finally:
                    feed.close()  # first: upstream's LLM thread, maybe waiting for text, stops now
                    synthesis.close()
        finally:
            feed.close()

    def _synthesise(
        self, model, tts_text, spk_id: str, held_before: set[str] | None = None
    ) -> Generator[bytes, None, None]:
        """One streamed inference call: `tts_text` is a sentence, or a generator of its text (bi-streaming).
        Call with self._lock held. `held_before` gets the requests upstream held before this call's, as
        soon as they are known (before upstream starts this call's LLM thread)."""
        self._wait_for_stopped()
        self._reset_hop_len(model)  # the token_hop_len guard
        before = request_ids(model)
        if held_before is not None:
            held_before |= before
        outputs = None
        try:
            outputs = model.inference_zero_shot(tts_text, "", "", zero_shot_spk_id=spk_id, stream=True)
            for item in outputs:
                pcm = speech_to_pcm16(item["tts_speech"])
                if pcm:
                    yield pcm
        except TTSError:
            raise
        except Exception as exc:
            raise TTSError(
                f"{self.model_kind.name} synthesis failed: {type(exc).__name__}: {exc}", code="tts_failed"
            ) from exc
        finally:
            close = getattr(outputs, "close", None)
            if callable(close):
                close()  # a consumer that stopped early also stops upstream's generator
            # ... but not its LLM thread, nor does it release the request's state: stop both.
            self._stopping = stop_requests(model, before)
            self._reset_hop_len(model)

    def _wait_for_stopped(self) -> None:
        """Let a closed call's upstream work end before the next call enters the model. With self._lock held."""
        stopping, self._stopping = self._stopping, None
        if stopping is not None and not stopping.wait(STOP_TIMEOUT):
            logger.warning(
                "CosyVoice2: the LLM thread of a closed stream (%s) did not stop within %g s; going on beside it.",
                ", ".join(sorted(stopping.ids)),
                STOP_TIMEOUT,
            )

    def settle(self, timeout: float | None = STOP_TIMEOUT) -> bool:
        """True once the upstream work of the last stream closed early has stopped and its state is released.

        Closing a stream never waits for that (the next call does); this is for tests and shutdown."""
        stopping = self._stopping
        return stopping is None or stopping.wait(timeout)

    # --- the rest of the interface --------------------------------------------------------------------
    def default_voice_name(self, language: str | None = None) -> str:
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
                "model": self.model_kind.name,
                "model_id": self.model_kind.model_id,
                "loaded": self.loaded,
                "cuda": self.cuda,
                "options": dict(self.options),
                "model_dir": str(self.model_dir),
                "upstream_commit": UPSTREAM_COMMIT,
            }
        )
        return info


def _text_tokens(model, text: str) -> int:
    """How many text tokens upstream's frontend makes of `text` (its own tokenizer; else one per character,
    which is never fewer)."""
    frontend = getattr(model, "frontend", None)
    tokenizer = getattr(frontend, "tokenizer", None)
    if tokenizer is None:
        return len(text)
    return len(tokenizer.encode(text, allowed_special=getattr(frontend, "allowed_special", "all")))
