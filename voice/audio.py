"""Audio decoding and validation with PyAV (bundled FFmpeg).

Browsers and phones send wav, webm/opus, ogg, mp3 or m4a; everything is decoded and resampled to
mono PCM16 at the rate the caller needs.
"""

import io
import wave
from dataclasses import dataclass

import av
import numpy as np


class AudioError(ValueError):
    """Audio that cannot be used; the message is safe to show to the user."""

    def __init__(self, message, code="invalid_audio"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DecodedAudio:
    pcm: bytes  # mono signed 16-bit little-endian
    sample_rate: int
    source_sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate

    def to_wav(self) -> bytes:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(self.sample_rate)
            w.writeframes(self.pcm)
        return buf.getvalue()

    def peak(self) -> int:
        if not self.pcm:
            return 0
        return int(np.abs(np.frombuffer(self.pcm, dtype="<i2").astype(np.int32)).max())


def decode_audio(data: bytes, *, sample_rate: int | None = None, max_seconds: float = 600.0) -> DecodedAudio:
    """Decode any container/codec FFmpeg knows to mono PCM16.

    `sample_rate=None` keeps the source rate. Raises AudioError for empty, undecodable or
    too long input; decoding stops as soon as `max_seconds` is exceeded.
    """
    if not data:
        raise AudioError("The audio file is empty.", code="empty_audio")
    try:
        # Tags are not needed and often not UTF-8 (a GBK title in a WAV's INFO chunk): never fail on them.
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioError("This file is not audio that can be decoded.", code="undecodable_audio") from exc
    with container:
        streams = container.streams.audio
        if not streams:
            raise AudioError("The file has no audio track.", code="undecodable_audio")
        stream = streams[0]
        source_rate = stream.rate or stream.codec_context.sample_rate or 0
        out_rate = sample_rate or source_rate
        if not out_rate:
            raise AudioError("The audio has no sample rate.", code="undecodable_audio")
        resampler = _mono_pcm16_resampler(out_rate)
        max_bytes = int(max_seconds * out_rate) * 2
        chunks, total = [], 0
        try:
            for frame in container.decode(stream):
                chunk = _resample(resampler, frame)
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    raise AudioError(f"The audio is longer than {max_seconds:g} seconds.", code="audio_too_long")
            chunk = _resample(resampler, None)
            chunks.append(chunk)
            total += len(chunk)
        except av.FFmpegError as exc:
            raise AudioError("The audio could not be decoded.", code="undecodable_audio") from exc
    pcm = b"".join(chunks)
    if len(pcm) > max_bytes:
        raise AudioError(f"The audio is longer than {max_seconds:g} seconds.", code="audio_too_long")
    if not pcm:
        raise AudioError("The file contains no audio samples.", code="empty_audio")
    return DecodedAudio(pcm=pcm, sample_rate=out_rate, source_sample_rate=source_rate)


class StreamResampler:
    """PCM16 mono at `rate` -> PCM16 mono at `target_rate`, chunk by chunk (a live microphone stream)."""

    def __init__(self, rate: int, target_rate: int):
        self.rate = rate
        self._resampler = None if rate == target_rate else _mono_pcm16_resampler(target_rate)

    def __call__(self, pcm: bytes) -> bytes:
        if self._resampler is None:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.rate
        return _resample(self._resampler, frame)


def _mono_pcm16_resampler(rate: int) -> av.AudioResampler:
    return av.AudioResampler(format="s16", layout="mono", rate=rate)


def _resample(resampler: av.AudioResampler, frame) -> bytes:
    """PCM16 bytes out of the resampler for `frame` (None flushes it)."""
    return b"".join(bytes(out.planes[0])[: out.samples * 2] for out in resampler.resample(frame))
