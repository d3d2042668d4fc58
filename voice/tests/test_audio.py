import random
import struct

import numpy as np
import pytest

from voice.audio import AudioError, DecodedAudio, decode_audio

from .samples import encoded, opus, read_wav, tone, wav


def dominant_frequency(decoded: DecodedAudio) -> float:
    samples = np.frombuffer(decoded.pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.argmax(spectrum) * decoded.sample_rate / len(samples))


def test_stereo_44k_wav_becomes_mono_at_the_requested_rate():
    left = tone(2.0, 44100, freq=440.0)
    right = tone(2.0, 44100, freq=440.0, amplitude=0.2)
    decoded = decode_audio(wav([left, right], 44100), sample_rate=24000)

    assert decoded.sample_rate == 24000
    assert decoded.source_sample_rate == 44100
    assert decoded.duration == pytest.approx(2.0, abs=0.005)
    assert len(decoded.pcm) % 2 == 0
    # Same pitch after resampling (a wrong rate would shift it), and really downmixed: loud.
    assert dominant_frequency(decoded) == pytest.approx(440.0, abs=2.0)
    assert decoded.peak() > 5000


def test_wav_keeps_its_rate_when_none_is_requested():
    decoded = decode_audio(wav([tone(1.0, 16000)], 16000))
    assert decoded.sample_rate == 16000 == decoded.source_sample_rate
    assert len(decoded.pcm) == 16000 * 2
    # Mono s16 in, mono s16 out at the same rate: the samples are untouched.
    assert decoded.pcm == tone(1.0, 16000).tobytes()


def test_to_wav_is_mono_pcm16_at_the_decoded_rate():
    decoded = decode_audio(wav([tone(1.5, 48000)], 48000), sample_rate=24000)
    channels, width, rate, samples = read_wav(decoded.to_wav())
    assert (channels, width, rate) == (1, 2, 24000)
    assert len(samples) == pytest.approx(36000, abs=48)
    assert samples.tobytes() == decoded.pcm


@pytest.mark.parametrize("container", ["ogg", "webm"])
def test_opus_decodes(container):
    data = opus(2.0, container=container, freq=330.0)
    assert data[:4] == (b"OggS" if container == "ogg" else b"\x1a\x45\xdf\xa3")
    decoded = decode_audio(data, sample_rate=24000)
    assert decoded.source_sample_rate == 48000
    assert decoded.sample_rate == 24000
    assert decoded.duration == pytest.approx(2.0, abs=0.03)
    assert dominant_frequency(decoded) == pytest.approx(330.0, abs=2.0)
    assert 0.3 * 32767 < decoded.peak() < 0.5 * 32767


@pytest.mark.parametrize(
    ("codec", "container", "rate"),
    [("libmp3lame", "mp3", 44100), ("aac", "ipod", 44100), ("aac", "mp4", 48000), ("flac", "flac", 22050)],
    ids=["mp3", "m4a", "mp4", "flac"],
)
def test_other_upload_formats_decode(codec, container, rate):
    decoded = decode_audio(encoded(2.0, codec=codec, container=container, rate=rate, freq=330.0), sample_rate=24000)
    assert decoded.source_sample_rate == rate
    assert decoded.sample_rate == 24000
    # mp3 and aac add some encoder delay/padding at the ends.
    assert decoded.duration == pytest.approx(2.0, abs=0.06)
    assert dominant_frequency(decoded) == pytest.approx(330.0, abs=2.0)


def test_wav_with_non_utf8_tags_decodes():
    """Recorders on Chinese systems write GBK titles into the INFO chunk: the audio is still fine."""
    plain = wav([tone(1.0, 24000)], 24000)
    title = "测试录音".encode("gbk") + b"\x00"
    info = b"INFO" + b"INAM" + struct.pack("<I", len(title)) + title
    body = plain[12:] + b"LIST" + struct.pack("<I", len(info)) + info
    tagged = b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body
    decoded = decode_audio(tagged, sample_rate=24000)
    assert decoded.duration == pytest.approx(1.0)
    assert decoded.pcm == tone(1.0, 24000).tobytes()


@pytest.mark.parametrize(
    "data",
    [
        b"this is not audio, just some text " * 40,
        bytes(random.Random(7).randrange(256) for _ in range(8000)),
        b"\x00" * 4096,
        b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00garbage",
        b"OggS" + bytes(200),
    ],
    ids=["text", "random", "zeros", "broken-wav-header", "broken-ogg"],
)
def test_garbage_raises_undecodable(data):
    with pytest.raises(AudioError) as excinfo:
        decode_audio(data, sample_rate=24000)
    assert excinfo.value.code == "undecodable_audio"
    assert str(excinfo.value)  # a message that can be shown


def test_empty_input_raises_empty_audio():
    with pytest.raises(AudioError) as excinfo:
        decode_audio(b"", sample_rate=24000)
    assert excinfo.value.code == "empty_audio"
    assert "empty" in str(excinfo.value)


def test_wav_without_samples_raises_empty_audio():
    with pytest.raises(AudioError) as excinfo:
        decode_audio(wav([np.zeros(0, dtype="<i2")], 24000), sample_rate=24000)
    assert excinfo.value.code == "empty_audio"


def test_too_long_raises_audio_too_long():
    with pytest.raises(AudioError) as excinfo:
        decode_audio(wav([tone(3.0, 24000)], 24000), sample_rate=24000, max_seconds=2.0)
    assert excinfo.value.code == "audio_too_long"
    assert "2 seconds" in str(excinfo.value)


def test_too_long_compressed_raises_audio_too_long():
    with pytest.raises(AudioError) as excinfo:
        decode_audio(opus(3.0), sample_rate=16000, max_seconds=1.5)
    assert excinfo.value.code == "audio_too_long"


def test_exactly_the_maximum_length_is_accepted():
    decoded = decode_audio(wav([tone(2.0, 24000)], 24000), sample_rate=24000, max_seconds=2.0)
    assert decoded.duration == pytest.approx(2.0)


def test_peak_of_silence_is_zero_and_of_a_tone_its_amplitude():
    silent = decode_audio(wav([np.zeros(24000, dtype="<i2")], 24000))
    assert silent.peak() == 0
    loud = decode_audio(wav([tone(1.0, 24000, amplitude=0.5)], 24000))
    assert loud.peak() == pytest.approx(0.5 * 32767, abs=2)
    assert DecodedAudio(pcm=b"", sample_rate=24000, source_sample_rate=24000).peak() == 0


def test_damaged_files_decode_or_raise_audio_error_only():
    """Truncated or bit-flipped uploads never escape as anything but AudioError."""
    clean = opus(1.0)
    rng = random.Random(1234)
    variants = [clean[:n] for n in (10, 60, 200, len(clean) // 2, len(clean) - 7)]
    for _ in range(15):
        damaged = bytearray(clean)
        for _ in range(20):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        variants.append(bytes(damaged))
    for data in variants:
        try:
            decoded = decode_audio(data, sample_rate=24000, max_seconds=5)
        except AudioError as exc:
            assert exc.code in {"undecodable_audio", "empty_audio"}
        else:
            assert 0 < decoded.duration <= 5
