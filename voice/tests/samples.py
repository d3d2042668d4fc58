"""Audio made in the tests themselves: WAV through numpy, compressed formats through PyAV."""

import io
import wave

import av
import numpy as np


def tone(seconds, rate, freq=220.0, amplitude=0.4) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype("<i2")


def wav(channels: list[np.ndarray], rate: int) -> bytes:
    """A PCM16 WAV with one numpy array per channel (all the same length)."""
    interleaved = np.stack(channels, axis=1).astype("<i2").reshape(-1)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(interleaved.tobytes())
    return buf.getvalue()


def encoded(seconds=2.0, *, codec="libopus", container="ogg", rate=48000, freq=220.0, amplitude=0.4) -> bytes:
    """A mono clip compressed with PyAV, as a browser or phone would send it."""
    pcm = tone(seconds, rate, freq, amplitude)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        for start in range(0, len(pcm), 960):
            frame = av.AudioFrame.from_ndarray(pcm[start : start + 960].reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def opus(seconds=2.0, *, container="ogg", **kwargs) -> bytes:
    """Opus in ogg or webm, as browsers record it."""
    return encoded(seconds, codec="libopus", container=container, **kwargs)


def read_wav(data: bytes):
    """(channels, sample width, rate, samples as int16 array) of a WAV."""
    with wave.open(io.BytesIO(data), "rb") as w:
        frames = w.readframes(w.getnframes())
        return w.getnchannels(), w.getsampwidth(), w.getframerate(), np.frombuffer(frames, dtype="<i2")
