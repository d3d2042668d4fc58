"""espeak-ng: formant synthesis from Debian's package. Robotic, but covers Mandarin and is tiny."""

import shutil
import subprocess

from .base import TTSEngine, TTSError

CHUNK_BYTES = 4096


class EspeakEngine(TTSEngine):
    name = "espeak-ng"
    clones_voices = False
    sample_rate = 22050

    def __init__(self, voice: str = "cmn", binary: str = "espeak-ng"):
        self.binary = shutil.which(binary)
        if self.binary is None:
            raise TTSError("espeak-ng is not installed (apt-get install espeak-ng).", code="tts_engine_missing")
        self.voice = voice

    def default_voice_name(self) -> str:
        return self.voice

    def stream(self, text, voice=None):
        text = (text or "").strip()
        if not text:
            return
        # --stdout writes a WAV; skip its 44-byte header and pass the PCM on as it arrives.
        process = subprocess.Popen(  # noqa: S603 - fixed binary, text via stdin, no shell
            [self.binary, "-v", self.voice, "--stdout", "--stdin"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            process.stdin.write(text.encode("utf-8"))
            process.stdin.close()
            header = process.stdout.read(44)
            if len(header) < 44:
                raise TTSError("espeak-ng produced no audio.", code="tts_failed")
            pending = b""
            while chunk := process.stdout.read(CHUNK_BYTES):
                data = pending + chunk
                cut = len(data) - len(data) % 2
                pending = data[cut:]
                if cut:
                    yield data[:cut]
            if process.wait(timeout=30) != 0:
                raise TTSError(f"espeak-ng failed: {process.stderr.read().decode(errors='replace')[:200]}", code="tts_failed")
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
