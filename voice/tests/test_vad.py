"""End-of-utterance detection (voice/asr/vad.py) on espeak-ng speech, silence and seeded noise."""

import numpy as np
import pytest

from voice.asr.vad import EndOfUtteranceDetector
from voice.tests.test_asr import fixture_pcm

RATE = 16000
SILENCE_MS, MIN_SPEECH_MS = 700, 250
FRAME_MS = 30


def detector(**options) -> EndOfUtteranceDetector:
    options = {"aggressiveness": 2, "silence_ms": SILENCE_MS, "min_speech_ms": MIN_SPEECH_MS, **options}
    return EndOfUtteranceDetector(**options)


def silence(ms: int) -> bytes:
    return b"\0\0" * (RATE * ms // 1000)


def noise(ms: int, dbfs: float, seed: int = 0) -> bytes:
    """White noise at `dbfs` RMS, the same every run."""
    samples = np.random.default_rng(seed).normal(0.0, 32768 * 10 ** (dbfs / 20), RATE * ms // 1000)
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


def ms_of(nbytes: int) -> float:
    return nbytes / 2 / RATE * 1000


def speech_end_ms(pcm: bytes) -> float:
    """Where the last audible sample (above 1 % of full scale) is."""
    samples = np.abs(np.frombuffer(pcm, dtype="<i2").astype(np.int32))
    return np.nonzero(samples > 327)[0][-1] / RATE * 1000


def feed_in_chunks(d, pcm: bytes, chunk_bytes: int):
    """Feed `pcm`; returns the audio position (ms) at which feed() first said True, or None."""
    for start in range(0, len(pcm), chunk_bytes):
        if d.feed(pcm[start : start + chunk_bytes]):
            return ms_of(min(start + chunk_bytes, len(pcm)))
    return None


def test_the_utterance_ends_after_the_speech_and_the_silence():
    pcm = fixture_pcm("hello_padded.wav")  # the sentence, then 1.5 s of silence
    end_of_speech = speech_end_ms(pcm)
    d = detector()
    said_at = feed_in_chunks(d, pcm, 3200)  # 100 ms chunks, as a browser sends them
    assert d.ended and d.speech_started
    assert said_at is not None
    # At least SILENCE_MS after the last speech, and at most a couple of frames of webrtcvad's
    # hangover later; reported in the chunk that completed it.
    assert end_of_speech + SILENCE_MS <= d.end_ms <= end_of_speech + SILENCE_MS + 3 * FRAME_MS
    assert d.end_ms <= said_at < d.end_ms + 100
    assert d.speech_ms >= 2000


def test_not_during_speech():
    pcm = fixture_pcm("hello.wav")  # the sentence with only ~0.3 s of quiet after it
    d = detector()
    positions = [d.feed(pcm[start : start + 960]) for start in range(0, len(pcm), 960)]
    assert not any(positions)
    assert d.speech_started and not d.ended
    assert d.end_ms is None
    assert 0 < d.trailing_silence_ms < SILENCE_MS


def test_the_silence_must_last_silence_ms():
    pcm = fixture_pcm("hello.wav")
    short, enough = detector(), detector()
    assert not short.feed(pcm + silence(SILENCE_MS - 400))
    assert enough.feed(pcm + silence(SILENCE_MS))


@pytest.mark.parametrize("audio", [silence(3000), noise(3000, -70), noise(3000, -40)], ids=["zeros", "-70dB", "-40dB"])
def test_not_on_silence_or_steady_noise(audio):
    d = detector()
    assert feed_in_chunks(d, audio, 3200) is None
    assert not d.speech_started and not d.ended
    assert d.processed_ms == 3000


def test_not_on_a_blip_shorter_than_min_speech():
    pcm = fixture_pcm("hello.wav")
    start = RATE * 2  # 1 s in: the middle of the sentence
    blip = pcm[start : start + RATE * 2 * 150 // 1000]  # 150 ms of speech
    d = detector()
    assert not d.feed(silence(1000) + blip)
    assert d.speech_ms >= 90  # the blip was heard as speech ...
    assert not d.feed(silence(2000))
    assert not d.speech_started and not d.ended  # ... but too short to be an utterance
    assert d.speech_ms == 0  # and forgotten after SILENCE_MS
    # A real utterance afterwards still ends.
    assert d.feed(fixture_pcm("hello_padded.wav"))


def test_min_speech_ms_is_the_shortest_utterance():
    thanks = fixture_pcm("thanks.wav") + silence(1500)  # about 1.1 s of speech
    assert detector(min_speech_ms=500).feed(thanks)
    d = detector(min_speech_ms=2000)
    assert not d.feed(thanks)
    assert not d.speech_started


@pytest.mark.parametrize("chunk_bytes", [1, 7, 333, 960, 3200, 10**7])
def test_any_chunk_size_gives_the_same_end(chunk_bytes):
    pcm = fixture_pcm("hello_padded.wav")
    whole = detector()
    assert whole.feed(pcm)
    d = detector()
    assert feed_in_chunks(d, pcm, chunk_bytes) is not None
    assert d.end_ms == whole.end_ms
    assert d.speech_ms == whole.speech_ms


def test_the_end_is_kept_until_reset():
    d = detector()
    assert d.feed(fixture_pcm("hello_padded.wav"))
    end_ms = d.end_ms
    assert d.feed(fixture_pcm("thanks.wav"))  # later audio is ignored
    assert d.end_ms == end_ms
    d.reset()
    assert not d.ended and not d.speech_started and d.end_ms is None and d.processed_ms == 0
    thanks = fixture_pcm("thanks.wav")
    assert not d.feed(thanks)
    assert d.feed(silence(SILENCE_MS + 60))
    assert d.end_ms == pytest.approx(speech_end_ms(thanks) + SILENCE_MS, abs=3 * FRAME_MS)


def test_the_energy_floor_ends_utterances_followed_by_faint_noise():
    # After speech, webrtcvad takes faint hiss for speech: without the floor the utterance
    # never ends in a quiet room.
    audio = fixture_pcm("hello.wav") + noise(2000, -60)
    with_floor = detector(energy_floor_dbfs=-55)
    assert with_floor.feed(audio)
    without_floor = detector(energy_floor_dbfs=None)
    assert not without_floor.feed(audio)


def test_a_louder_floor_ignores_quiet_speech():
    quiet = (np.frombuffer(fixture_pcm("hello.wav"), dtype="<i2") // 10).astype("<i2").tobytes()  # 20 dB down
    assert detector().feed(quiet + silence(1000))
    d = detector(energy_floor_dbfs=-30)
    assert not d.feed(quiet + silence(1000))
    assert not d.speech_started


def test_from_settings(settings):
    settings.VAD_AGGRESSIVENESS = 3
    settings.VAD_SILENCE_MS = 300
    settings.VAD_MIN_SPEECH_MS = 100
    d = EndOfUtteranceDetector.from_settings()
    assert (d.aggressiveness, d.silence_ms, d.min_speech_ms) == (3, 300, 100)
    assert EndOfUtteranceDetector.from_settings(silence_ms=500).silence_ms == 500
    # A shorter silence ends the same utterance sooner, by the difference.
    assert d.feed(fixture_pcm("hello_padded.wav"))
    assert detector_end(fixture_pcm("hello_padded.wav"), aggressiveness=3) - d.end_ms == pytest.approx(
        SILENCE_MS - 300, abs=2 * FRAME_MS
    )


@pytest.mark.parametrize(
    "options",
    [{"aggressiveness": 4}, {"frame_ms": 25}, {"sample_rate": 22050}, {"silence_ms": 0}, {"min_speech_ms": -1}],
)
def test_bad_options(options):
    with pytest.raises(ValueError):
        detector(**options)


def test_other_frame_sizes_and_rates():
    pcm16 = fixture_pcm("hello_padded.wav")
    expected = detector_end(pcm16)
    assert detector_end(pcm16, frame_ms=10) == pytest.approx(expected, abs=2 * FRAME_MS)
    assert detector_end(pcm16, frame_ms=20) == pytest.approx(expected, abs=2 * FRAME_MS)
    pcm8 = np.frombuffer(pcm16, dtype="<i2")[::2].tobytes()  # crude 8 kHz: enough for a VAD
    assert detector_end(pcm8, sample_rate=8000) == pytest.approx(expected, abs=2 * FRAME_MS)


def detector_end(pcm: bytes, **options) -> int | None:
    d = detector(**options)
    d.feed(pcm)
    return d.end_ms
