"""Regenerate the speech samples in devtools/samples/ (the tests' and the benchmark's).

    .venv/bin/python -m devtools.samples.make        # from the repository root

Needs the `espeak-ng` program (Debian package espeak-ng, voice `ko`) and PyAV. Writes:

    hello.wav         "안녕하세요 오늘 날씨가 좋네요": 0.25 s of silence, then espeak-ng's speech as it comes
                      (its own ~0.3 s quiet tail included); 16 kHz mono PCM16
    hello_padded.wav  hello.wav followed by 1.5 s of digital silence (the VAD's end-of-utterance test)
    hello.webm        hello.wav's speech as Opus in WebM at 48 kHz, as browsers record it (upload path)
    hello.ogg         the same as Opus in Ogg
    thanks.wav        "감사합니다", laid out like hello.wav

Reruns give byte-identical files (espeak-ng's output is deterministic for a given espeak-ng version;
the Opus containers are written bitexact, without random serials). The small Korean Vosk model
decodes the speech as garbled but deterministic words. The tests never hard-code the garbled transcripts:
they compare the app's result with direct Vosk decoding of the same audio, and assert exact words
only with a phrase list (grammar). So regenerating the files with another espeak-ng version is safe.
"""

import io
import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import av
import numpy as np

SAMPLES = Path(__file__).resolve().parent
RATE = 16000
LEAD_SILENCE_S = 0.25
PAD_SILENCE_S = 1.5

UTTERANCES = {
    "hello": "안녕하세요 오늘 날씨가 좋네요",
    "thanks": "감사합니다",
}


def espeak(text: str, voice: str = "ko") -> bytes:
    """espeak-ng's WAV (22050 Hz mono PCM16) for `text`."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)  # noqa: S603, S607 - espeak-ng
        return path.read_bytes()


def resample(wav_bytes: bytes, rate: int) -> np.ndarray:
    """Mono int16 samples of a WAV at `rate` (FFmpeg's resampler through PyAV)."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    chunks = []
    with av.open(io.BytesIO(wav_bytes)) as container:
        for frame in container.decode(audio=0):
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
    chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(chunks).astype("<i2")


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(round(seconds * rate), dtype="<i2")


def wav(samples: np.ndarray, rate: int = RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return buf.getvalue()


def opus(samples: np.ndarray, rate: int, container: str) -> bytes:
    """Mono Opus in `container` (webm or ogg), 20 ms frames."""
    buf = io.BytesIO()
    frame_samples = rate // 50
    # bitexact: no random stream serials/UIDs or version strings, so reruns give identical files.
    with av.open(buf, "w", format=container, container_options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream("libopus", rate=rate)
        stream.layout = "mono"
        stream.bit_rate = 32000
        for start in range(0, len(samples), frame_samples):
            piece = samples[start : start + frame_samples]
            frame = av.AudioFrame.from_ndarray(piece.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def build() -> dict[str, bytes]:
    files = {}
    for name, text in UTTERANCES.items():
        source = espeak(text)
        speech = np.concatenate([silence(LEAD_SILENCE_S), resample(source, RATE)])
        files[f"{name}.wav"] = wav(speech)
        if name == "hello":
            files["hello_padded.wav"] = wav(np.concatenate([speech, silence(PAD_SILENCE_S)]))
            speech48 = np.concatenate([silence(LEAD_SILENCE_S, 48000), resample(source, 48000)])
            files["hello.webm"] = opus(speech48, 48000, "webm")
            files["hello.ogg"] = opus(speech48, 48000, "ogg")
    return files


def main() -> int:
    total = 0
    for name, data in build().items():
        (SAMPLES / name).write_bytes(data)
        total += len(data)
        print(f"{name:18} {len(data):8d} bytes")
    print(f"{'total':18} {total:8d} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
