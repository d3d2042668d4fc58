"""End of utterance for hands-free mode: webrtcvad (webrtcvad-wheels) over 16 kHz PCM16.

Vosk 0.3.45 has no configurable endpointer, so the web process decides when the user has stopped
talking. Feed the microphone audio as it arrives, in chunks of any size (an odd byte is kept for
the next chunk); it is cut into frames internally. Each frame is speech when it is louder than the
energy floor and webrtcvad calls it speech.

    detector = EndOfUtteranceDetector.from_settings()
    for pcm in chunks:
        if detector.feed(pcm):   # True once the utterance is over (and from then on)
            break
    detector.reset()             # ready for the next utterance

Knobs (settings in brackets; `from_settings()` reads them, keyword overrides win):

aggressiveness [VAD_AGGRESSIVENESS, 0-3, default 2]
    webrtcvad's mode: higher calls fewer frames speech (less noise taken for speech, more soft
    speech taken for silence). 3 splits espeak-ng's speech with single silent frames.
silence_ms [VAD_SILENCE_MS, default 700]
    how long the quiet after speech must last to end the utterance. This is the delay between the
    end of speech and the end of the utterance (plus up to one frame); shorter cuts users off in
    mid-sentence pauses.
min_speech_ms [VAD_MIN_SPEECH_MS, default 250]
    how much speech (frames counted while no silence of `silence_ms` came between them) makes an
    utterance. Speech shorter than that followed by `silence_ms` of quiet (a cough, a click, a
    door) is forgotten: the detector goes on waiting for speech.
energy_floor_dbfs [VAD_ENERGY_FLOOR_DBFS, default -55; None turns it off]
    frames whose RMS is below this level (dB relative to full scale) are silence whatever
    webrtcvad says. webrtcvad adapts to the noise level it hears; after digital silence (exact
    zeros, as sent by some browsers and by muted microphones) it takes faint hiss for speech and
    the utterance never ends.
frame_ms [10, 20 or 30; default 30], sample_rate [8000, 16000, 32000 or 48000; default 16000]
    what webrtcvad accepts.

`reset()` also starts a fresh webrtcvad instance, so each utterance is judged the same way
whatever came before. Not thread-safe: one detector per audio stream.
"""

import numpy as np
import webrtcvad
from django.conf import settings

FRAME_MS_CHOICES = (10, 20, 30)
SAMPLE_RATES = (8000, 16000, 32000, 48000)
DEFAULT_ENERGY_FLOOR_DBFS = -55.0


class EndOfUtteranceDetector:
    def __init__(
        self,
        *,
        aggressiveness: int = 2,
        silence_ms: int = 700,
        min_speech_ms: int = 250,
        energy_floor_dbfs: float | None = DEFAULT_ENERGY_FLOOR_DBFS,
        sample_rate: int = 16000,
        frame_ms: int = 30,
    ):
        if aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"aggressiveness must be 0-3, not {aggressiveness!r}")
        if frame_ms not in FRAME_MS_CHOICES:
            raise ValueError(f"frame_ms must be one of {FRAME_MS_CHOICES}, not {frame_ms!r}")
        if sample_rate not in SAMPLE_RATES:
            raise ValueError(f"sample_rate must be one of {SAMPLE_RATES}, not {sample_rate!r}")
        if silence_ms <= 0 or min_speech_ms < 0:
            raise ValueError("silence_ms must be positive and min_speech_ms not negative")
        self.aggressiveness = aggressiveness
        self.silence_ms = silence_ms
        self.min_speech_ms = min_speech_ms
        self.energy_floor_dbfs = energy_floor_dbfs
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.frame_bytes = sample_rate * frame_ms // 1000 * 2
        # Compare mean squares, not decibels: no log per frame.
        self._floor_ms = None if energy_floor_dbfs is None else (32768.0 * 10 ** (energy_floor_dbfs / 20)) ** 2
        self.reset()

    @classmethod
    def from_settings(cls, **overrides) -> "EndOfUtteranceDetector":
        options = {
            "aggressiveness": settings.VAD_AGGRESSIVENESS,
            "silence_ms": settings.VAD_SILENCE_MS,
            "min_speech_ms": settings.VAD_MIN_SPEECH_MS,
            "energy_floor_dbfs": getattr(settings, "VAD_ENERGY_FLOOR_DBFS", DEFAULT_ENERGY_FLOOR_DBFS),
        }
        return cls(**{**options, **overrides})

    def reset(self) -> None:
        """Forget everything: the next audio is the start of a new utterance."""
        self._vad = webrtcvad.Vad(self.aggressiveness)
        self._buffer = b""
        self._speech_started = False
        self._ended = False
        self.speech_ms = 0  # speech in the current stretch (the utterance once it started)
        self.trailing_silence_ms = 0  # silence since the last speech frame
        self.processed_ms = 0  # audio judged so far
        self.end_ms: int | None = None  # processed_ms when the utterance ended

    @property
    def speech_started(self) -> bool:
        """At least `min_speech_ms` of speech has been heard."""
        return self._speech_started

    @property
    def ended(self) -> bool:
        """The utterance is over: speech, then `silence_ms` of silence."""
        return self._ended

    def is_speech(self, frame: bytes) -> bool:
        """One frame of exactly `frame_bytes`: above the energy floor and speech to webrtcvad."""
        if self._floor_ms is not None:
            samples = np.frombuffer(frame, dtype="<i2").astype(np.float64)
            if float(np.dot(samples, samples)) / len(samples) < self._floor_ms:
                return False
        return self._vad.is_speech(frame, self.sample_rate)

    def feed(self, pcm: bytes) -> bool:
        """Judge more audio (PCM16 mono at `sample_rate`); True once the utterance has ended.

        Audio after the end is ignored until `reset()`.
        """
        if self._ended:
            return True
        data = self._buffer + pcm if self._buffer else pcm
        n = self.frame_bytes
        usable = len(data) - len(data) % n
        for start in range(0, usable, n):
            self._frame(data[start : start + n])
            if self._ended:
                self._buffer = b""
                return True
        self._buffer = data[usable:]
        return False

    def _frame(self, frame: bytes) -> None:
        self.processed_ms += self.frame_ms
        if self.is_speech(frame):
            self.speech_ms += self.frame_ms
            self.trailing_silence_ms = 0
            if self.speech_ms >= self.min_speech_ms:
                self._speech_started = True
            return
        self.trailing_silence_ms += self.frame_ms
        if self.trailing_silence_ms >= self.silence_ms:
            if self._speech_started:
                self._ended = True
                self.end_ms = self.processed_ms
            else:
                self.speech_ms = 0  # a blip too short to be an utterance, long over
