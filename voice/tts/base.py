"""The TTS interface: text (one sentence or a few) in, PCM16 chunks out as they are produced.

`stream_text` is the same for one sentence whose text is still being written (an LLM's reply): an
engine with `takes_text_stream` starts speaking it before its last piece exists; any other engine waits
for the whole sentence, then speaks it as `stream` does."""

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


class TTSError(Exception):
    def __init__(self, message, code="tts_error"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class VoiceRef:
    """What an engine needs of a speaker; None means the engine's default voice."""

    speaker_id: int
    name: str
    prompt_text: str
    audio_path: str  # 24 kHz mono PCM16 WAV (speakers.services.REFERENCE_SAMPLE_RATE)
    version: str  # changes whenever the audio or the prompt text changes


@dataclass(frozen=True)
class VoiceInfo:
    engine: str
    voice: str
    sample_rate: int
    clones: bool  # True when the speaker's own voice is used
    language: str = ""  # the language spoken ("zh", "en", ...)


def language_code(tag: str) -> str:
    """A language tag as the engines are routed by: zh_CN, zh-Hans, cmn -> zh; en_US -> en; yue stays."""
    base = (tag or "").strip().lower().replace("_", "-").split("-")[0]
    return {"cmn": "zh", "zh": "zh"}.get(base, base)


class TTSEngine(ABC):
    name: str = ""
    sample_rate: int = 22050
    clones_voices: bool = False
    # The languages this engine speaks (language_code form); a sentence in another goes to the next
    # engine of the chain. `reads_numbers`: it has its own text frontend (numbers, dates), so the
    # number pass of voice.speech_text is left out for it.
    languages: frozenset[str] = frozenset()
    reads_numbers: bool = False

    @abstractmethod
    def stream(self, text: str, voice: VoiceRef | None = None, language: str | None = None) -> Iterator[bytes]:
        """Yield mono PCM16 little-endian chunks at `self.rate(language)` as they are produced."""

    @property
    def takes_text_stream(self) -> bool:
        """True where `stream_text` starts speaking a sentence before its whole text is known: a caller
        then hands it the pieces as they are written instead of waiting for the sentence's end."""
        return False

    def stream_text(
        self, pieces: Iterable[str], voice: VoiceRef | None = None, language: str | None = None
    ) -> Iterator[bytes]:
        """Speak ONE sentence whose text arrives in `pieces` (iterating may block while the text is written).

        The pieces joined are the sentence, spaces included (no separator is added). By default the whole
        text is awaited, then spoken by `stream`; nothing is spoken when it is blank."""
        text = "".join(pieces)
        if text.strip():
            yield from self.stream(text, voice, language)

    @abstractmethod
    def default_voice_name(self, language: str | None = None) -> str: ...

    def speaks(self, language: str) -> bool:
        return language in self.languages

    def rate(self, language: str | None = None) -> int:
        """The sample rate of the audio in `language` (Piper voices differ)."""
        return self.sample_rate

    def voice_info(self, voice: VoiceRef | None, language: str | None = None) -> VoiceInfo:
        rate, lang = self.rate(language), language or ""
        if voice is not None and self.clones_voices:
            return VoiceInfo(self.name, voice.name, rate, True, lang)
        return VoiceInfo(self.name, self.default_voice_name(language), rate, False, lang)

    def voices(self) -> dict[str, str]:
        """Language -> the voice that speaks it."""
        return {lang: self.default_voice_name(lang) for lang in sorted(self.languages)}

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "sample_rate": self.sample_rate,
            "clones_voices": self.clones_voices,
            "default_voice": self.default_voice_name(),
            "languages": sorted(self.languages),
            "voices": self.voices(),
        }

    def warm_up(self) -> None:
        for _ in self.stream("Hello."):
            pass
