"""espeak-ng: formant synthesis from Debian's package. Robotic, but tiny, with a voice per language
(Mandarin, English, Japanese, Korean, Cantonese, ...)."""

import logging
import shutil
import struct
import subprocess
import tempfile

from .base import TTSEngine, TTSError, language_code

logger = logging.getLogger(__name__)

CHUNK_BYTES = 4096
WAV_HEADER_BYTES = 44  # espeak-ng --stdout writes a canonical 44-byte header (sizes unknown: 0x7ffff...)


def _header_rate(header: bytes) -> int:
    """The sample rate of espeak-ng's WAV header; TTSError unless it is mono PCM16."""
    if len(header) < WAV_HEADER_BYTES or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise TTSError("espeak-ng produced no audio.", code="tts_failed")
    fmt, channels, rate, _byte_rate, _align, bits = struct.unpack("<HHIIHH", header[20:36])
    if fmt != 1 or channels != 1 or bits != 16:
        raise TTSError("espeak-ng produced audio in an unexpected format.", code="tts_failed")
    return rate


# The default voice per language. Mandarin is `cmn-latn-pinyin`: espeak-ng 1.51's `cmn` reads
# Chinese characters through English rules (letter names); this one gives Mandarin phonemes.
DEFAULT_VOICES = {"zh": "cmn-latn-pinyin", "en": "en-us", "ja": "ja", "ko": "ko", "yue": "yue"}


class EspeakEngine(TTSEngine):
    name = "espeak-ng"
    clones_voices = False
    sample_rate = 22050

    def __init__(self, voices: dict[str, str] | str | None = None, binary: str = "espeak-ng"):
        """`voices`: language -> espeak-ng voice (a single voice name: Mandarin only, as before)."""
        self.binary = shutil.which(binary)
        if self.binary is None:
            raise TTSError("espeak-ng is not installed (apt-get install espeak-ng).", code="tts_engine_missing")
        if isinstance(voices, str):
            voices = {"zh": voices}
        self.voice_by_language: dict[str, str] = {}
        problems = []
        for language, voice in (voices if voices is not None else DEFAULT_VOICES).items():
            try:
                rate = self._probe(voice)
            except TTSError as exc:
                problems.append(str(exc))
                continue
            if self.voice_by_language and rate != self.sample_rate:
                problems.append(f"espeak-ng voice {voice!r} speaks at {rate} Hz, the others at {self.sample_rate}.")
                continue
            self.sample_rate = rate
            self.voice_by_language[language_code(language)] = voice
        for problem in problems:
            logger.warning("%s", problem)
        if not self.voice_by_language:
            raise TTSError("; ".join(problems) or "No espeak-ng voice is configured.", code="tts_engine_missing")
        self.languages = frozenset(self.voice_by_language)

    def _probe(self, voice: str) -> int:
        """One short synthesis checks the voice exists and gives its real rate (mbrola voices are 16 kHz)."""
        assert self.binary is not None
        probe = subprocess.run(  # noqa: S603 - fixed binary, no shell
            [self.binary, "-v", voice, "--stdout", "a"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode != 0 or len(probe.stdout) < WAV_HEADER_BYTES:
            detail = probe.stderr.decode(errors="replace").strip()[:200]
            raise TTSError(f"espeak-ng cannot speak with voice {voice!r}: {detail}", code="tts_engine_missing")
        return _header_rate(probe.stdout[:WAV_HEADER_BYTES])

    def _voice(self, language: str | None) -> str:
        if language in self.voice_by_language:
            return self.voice_by_language[language]
        return next(iter(self.voice_by_language.values()))

    def default_voice_name(self, language=None) -> str:
        return self._voice(language)

    def stream(self, text, voice=None, language=None):
        text = (text or "").strip()
        if not text:
            return
        # --stdout writes a WAV; skip its header and pass the PCM on as it arrives. stderr goes to a
        # file so a chatty espeak-ng can never block on a full pipe nobody reads.
        with tempfile.TemporaryFile() as errors:
            process = subprocess.Popen(  # noqa: S603 - fixed binary, text via stdin, no shell
                [self.binary, "-v", self._voice(language), "--stdout", "--stdin"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
            try:
                # TTS_MAX_CHARS keeps the text far below a pipe's buffer: this write cannot block.
                process.stdin.write(text.encode("utf-8"))
                process.stdin.close()
                header = process.stdout.read(WAV_HEADER_BYTES)
                if len(header) < WAV_HEADER_BYTES:
                    process.wait(timeout=30)
                    errors.seek(0)
                    detail = errors.read().decode(errors="replace").strip()[:200]
                    raise TTSError(f"espeak-ng produced no audio. {detail}".strip(), code="tts_failed")
                if _header_rate(header) != self.sample_rate:
                    raise TTSError("espeak-ng changed its sample rate.", code="tts_failed")
                pending = b""
                while chunk := process.stdout.read1(CHUNK_BYTES):
                    data = pending + chunk
                    cut = len(data) - len(data) % 2
                    pending = data[cut:]
                    if cut:
                        yield data[:cut]
                if process.wait(timeout=30) != 0:
                    errors.seek(0)
                    detail = errors.read().decode(errors="replace").strip()[:200]
                    raise TTSError(f"espeak-ng failed: {detail}", code="tts_failed")
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
                process.stdout.close()
