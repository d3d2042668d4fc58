"""The speaker prompts registered with the loaded model, kept in `{model_dir}/spk2info.pt` across restarts.

Each speaker is registered once with `add_zero_shot_spk` under `mm-spk-<speaker id>-<version>` and
persisted with `save_spkinfo()` to `{model_dir}/spk2info.pt`, which upstream loads again on the next start,
so a restarted worker reuses it; a new version replaces the old entry. The default voice
(COSYVOICE_DEFAULT_PROMPT_WAV/_TEXT) is registered the same way under `mm-default-<digest>`. Processes
sharing the model directory serialise reading and writing spk2info.pt with `flock` on `.spk2info.lock`.
"""

import contextlib
import hashlib
import logging
import re
from collections.abc import Mapping
from pathlib import Path

from ...audio import AudioError
from ..base import TTSError, VoiceRef
from .model_dir import COSYVOICE2, ModelKind, with_prompt_prefix
from .upstream import PROMPT_PATH, as_model_tensor, read_prompt_16k

try:
    import fcntl
except ImportError:  # not POSIX
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__package__)

SPEAKER_ID_PREFIX = "mm-spk-"
DEFAULT_SPEAKER_PREFIX = "mm-default-"

_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def speaker_cache_id(voice: VoiceRef) -> str:
    """The stable zero_shot_spk_id of a speaker version."""
    version = _UNSAFE_ID_CHARS.sub("_", str(voice.version)) or "0"
    return f"{SPEAKER_ID_PREFIX}{voice.speaker_id}-{version}"


@contextlib.contextmanager
def spkinfo_file_lock(model_dir: Path):
    """Serialise reading and writing spk2info.pt between processes sharing the model dir (POSIX)."""
    with contextlib.ExitStack() as stack:
        if fcntl is not None:
            try:
                handle = stack.enter_context((model_dir / ".spk2info.lock").open("a+b"))
            except OSError:  # a read-only model dir: nothing is written there either
                handle = None
            if handle is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # released when the file closes
        yield


class SpeakerCache:
    """The zero_shot_spk_ids of one engine's model. Not thread-safe: the engine calls it with its
    inference lock held."""

    def __init__(
        self,
        model_dir: Path,
        *,
        default_prompt_wav: str = "",
        default_prompt_text: str = "",
        model_kind: ModelKind = COSYVOICE2,
    ):
        self.model_dir = model_dir
        self.model_kind = model_kind  # CosyVoice3 prompts carry its prefix
        self.default_prompt_wav = str(default_prompt_wav or "")
        self.default_prompt_text = str(default_prompt_text or "").strip()
        self.prompt_form = PROMPT_PATH  # the engine sets the installed code's form once the model is loaded
        self._registered: set[str] = set()  # used only if the model has no frontend.spk2info

    def speaker_id(self, model, voice: VoiceRef | None) -> str:
        """The zero_shot_spk_id for `voice` (None: the default voice), registered first if it is new."""
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

    def _known(self, model, spk_id: str) -> bool:
        spk2info = getattr(getattr(model, "frontend", None), "spk2info", None)
        if isinstance(spk2info, Mapping):
            return spk_id in spk2info
        return spk_id in self._registered

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

    def prompt_text(self, model, transcript: str) -> str:
        """The prompt text registered for a transcript: CosyVoice3's prefix first (with_prompt_prefix), then
        upstream's normalisation of a prompt given per call, which add_zero_shot_spk does not apply itself
        (and which upstream's text_normalize skips for a text with `<|...|>` in it, CosyVoice3's prefix)."""
        return self._normalise_prompt_text(model, with_prompt_prefix(self.model_kind, transcript))

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
        """Register a prompt once under `spk_id` (kept in spk2info across restarts)."""
        if self._known(model, spk_id):
            return spk_id
        path = Path(audio_path) if audio_path else None
        if path is None or not path.is_file():
            raise TTSError(
                f"The reference recording of {who} is missing ({audio_path or 'no file'}): upload or record it again.",
                code="speaker_audio_missing",
            )
        try:
            prompt = str(path) if self.prompt_form == PROMPT_PATH else as_model_tensor(read_prompt_16k(path))
        except AudioError as exc:
            raise TTSError(
                f"The reference recording of {who} cannot be used: {exc}", code="speaker_audio_invalid"
            ) from exc
        logger.info("CosyVoice2: registering %s as %s", who, spk_id)
        try:
            model.add_zero_shot_spk(self.prompt_text(model, prompt_text or ""), prompt, spk_id)
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
                del spk2info[stale]  # type: ignore[attr-defined]  # an older version of the same voice
        if isinstance(spk2info, Mapping):
            # Upstream's frontend_zero_shot writes each request's text into the speaker's own entry (it
            # rewrites it every call); after a text stream that is a generator, which torch.save cannot
            # pickle, and the half-written file would lose every speaker at the next start.
            for entry in spk2info.values():
                if isinstance(entry, dict):
                    entry.pop("text", None)
                    entry.pop("text_len", None)
        try:
            with spkinfo_file_lock(self.model_dir):
                model.save_spkinfo()
        except Exception:
            logger.warning("CosyVoice2: could not save spk2info.pt in %s", self.model_dir, exc_info=True)
        return spk_id
