"""The TTS interface: text (one sentence or a few) in, PCM16 chunks out as they are produced."""

from abc import ABC, abstractmethod
from collections.abc import Iterator
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


class TTSEngine(ABC):
    name: str = ""
    sample_rate: int = 22050
    clones_voices: bool = False

    @abstractmethod
    def stream(self, text: str, voice: VoiceRef | None = None) -> Iterator[bytes]:
        """Yield mono PCM16 little-endian chunks at `self.sample_rate` as they are produced."""

    @abstractmethod
    def default_voice_name(self) -> str: ...

    def voice_info(self, voice: VoiceRef | None) -> VoiceInfo:
        if voice is not None and self.clones_voices:
            return VoiceInfo(self.name, voice.name, self.sample_rate, True)
        return VoiceInfo(self.name, self.default_voice_name(), self.sample_rate, False)

    def describe(self) -> dict:
        return {
            "engine": self.name,
            "sample_rate": self.sample_rate,
            "clones_voices": self.clones_voices,
            "default_voice": self.default_voice_name(),
        }

    def warm_up(self) -> None:
        for _ in self.stream("Hello."):
            pass
