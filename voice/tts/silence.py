"""A TTS engine that speaks silence instantly: for load tests and benchmarks of the pipeline around
the engines (VOICE_TTS_ENGINES=silence). Never in a real deployment's chain."""

from .base import TTSEngine


class SilenceEngine(TTSEngine):
    name = "silence"
    clones_voices = False
    sample_rate = 16000

    def __init__(self, seconds_per_sentence: float = 0.1):
        self.samples = int(self.sample_rate * seconds_per_sentence)

    def speaks(self, language: str) -> bool:
        return True  # every language: the benchmarks measure the pipeline, not the voice

    def default_voice_name(self, language=None) -> str:
        return "silence"

    def stream(self, text, voice=None, language=None):
        if (text or "").strip():
            yield b"\0\0" * self.samples

    def warm_up(self) -> None:
        pass
