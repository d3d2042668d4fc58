"""POST /api/tts/stream and POST /api/tts, through Django's ASGI handler as under daphne."""

import io
import struct
import wave

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from django.urls import Resolver404, include, path, resolve

from speakers.services import speaker_create
from voice.tts import TTSError, registry
from voice.tts_api import tts_api_urlpatterns

from .samples import tone, wav
from .test_tts import FakeEngine, rms

pytestmark = pytest.mark.django_db(transaction=True)

SENTENCES = "Good morning. The weather is mild today. There is a light breeze. Enjoy your walk."

# Until the project's URLconf includes the TTS routes, the tests mount them themselves.
urlpatterns = [path("api/", include(tts_api_urlpatterns)), path("", include("magicmirror.urls"))]


@pytest.fixture(autouse=True)
def _routes_and_jobs(settings, tmp_path, monkeypatch):
    try:
        resolve("/api/tts/stream")
    except Resolver404:
        settings.ROOT_URLCONF = __name__
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.VOICE_JOBS_IN_PROCESS = True  # the worker path has its own test below
    # Whatever the chain would pick on this host, these tests speak with Piper.
    monkeypatch.setitem(registry._engines, "default", registry.get_tts_engine("piper"))


@pytest.fixture
async def api(async_client, user):
    await async_client.aforce_login(user)
    return async_client


async def post(client, url, payload=None, *, raw=None):
    body = raw if raw is not None else payload
    return await client.post(url, body, content_type="application/json")


async def body_parts(response) -> list[bytes]:
    return [part async for part in response.streaming_content]


def parse_stream_header(data: bytes):
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt " and data[36:40] == b"data"
    riff_size, data_size = struct.unpack("<I", data[4:8])[0], struct.unpack("<I", data[40:44])[0]
    fmt, channels, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", data[20:36])
    assert byte_rate == rate * channels * bits // 8 and align == channels * bits // 8
    return {"riff": riff_size, "data": data_size, "fmt": fmt, "channels": channels, "rate": rate, "bits": bits}


def make_speaker(user, name="Anna"):
    audio = wav([tone(1.5, 24000)], 24000)
    return speaker_create(user=user, name=name, prompt_text="你好，我是安娜。", audio_data=audio)


# -- streaming ----------------------------------------------------------------------------------
async def test_stream_is_a_wav_of_unknown_length_sent_as_produced(api):
    response = await post(api, "/api/tts/stream", {"text": SENTENCES})
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    assert response["X-TTS-Engine"] == "piper" and response["X-TTS-Voice"] == "en_US-joe-medium"
    assert response["X-Sample-Rate"] == "22050"
    assert not response.has_header("Content-Length")
    parts = await body_parts(response)
    assert len(parts) > 5  # header, then chunk after chunk
    data = b"".join(parts)
    header = parse_stream_header(data)
    assert header == {"riff": 0xFFFFFFFF, "data": 0xFFFFFFFF, "fmt": 1, "channels": 1, "rate": 22050, "bits": 16}
    pcm = data[44:]
    assert len(pcm) % 2 == 0 and len(pcm) / 2 / 22050 > 3
    assert rms(pcm) > 1000


async def test_stream_as_raw_pcm(api):
    response = await post(api, "/api/tts/stream", {"text": "Hello there.", "format": "pcm"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert (response["X-Sample-Rate"], response["X-Channels"], response["X-Audio-Format"]) == ("22050", "1", "s16le")
    pcm = b"".join(await body_parts(response))
    assert not pcm.startswith(b"RIFF") and len(pcm) % 2 == 0
    assert 0.3 < len(pcm) / 2 / 22050 < 4 and rms(pcm) > 1000


async def test_stream_with_my_own_speaker(api, user):
    speaker = await sync_to_async(make_speaker)(user)
    response = await post(api, "/api/tts/stream", {"text": "Hello.", "speaker_id": speaker.pk})
    assert response.status_code == 200
    assert response["X-TTS-Clones"] == "false"  # Piper speaks every speaker with its own voice
    assert rms(b"".join(await body_parts(response))[44:]) > 1000


async def test_another_users_speaker_is_not_found(api, other_user):
    theirs = await sync_to_async(make_speaker)(other_user)
    response = await post(api, "/api/tts/stream", {"text": "Hello.", "speaker_id": theirs.pk})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "speaker_not_found"
    response = await post(api, "/api/tts", {"text": "Hello.", "speaker_id": 987654})
    assert response.status_code == 404


async def test_anonymous_is_refused(async_client):
    for url in ("/api/tts/stream", "/api/tts"):
        response = await post(async_client, url, {"text": "Hello."})
        assert response.status_code == 403


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"text": ""}, "tts_empty_text"),
        ({"text": "   "}, "tts_empty_text"),
        ({"text": "x" * 21}, "tts_text_too_long"),
        ({}, "invalid"),
        ({"text": 42}, "invalid"),
        ({"text": "Hi.", "format": "mp3"}, "invalid"),
        ({"text": "Hi.", "speaker_id": "abc"}, "invalid"),
    ],
)
async def test_bad_input_is_400_before_any_audio(api, settings, payload, code):
    settings.TTS_MAX_CHARS = 20
    response = await post(api, "/api/tts/stream", payload)
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code


async def test_malformed_json_is_400(api):
    for url in ("/api/tts/stream", "/api/tts"):
        response = await post(api, url, raw='{"text": "Hello.",')
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "parse_error"


async def test_a_failure_before_any_audio_is_a_json_error(api, monkeypatch):
    monkeypatch.setitem(registry._engines, "default", FakeEngine(error=TTSError("It broke.", code="tts_failed")))
    for url in ("/api/tts/stream", "/api/tts"):
        response = await post(api, url, {"text": "Hello."})
        assert response.status_code == 502
        assert response.json()["error"] == {"code": "tts_failed", "message": "It broke."}


async def test_no_voice_service_is_503(api, settings, monkeypatch):
    from kombu.exceptions import OperationalError

    from voice.jobs.tasks import tts_synthesize

    def refuse(*args, **kwargs):
        raise OperationalError("Connection refused.")

    settings.VOICE_JOBS_IN_PROCESS = False
    monkeypatch.setattr(tts_synthesize, "apply_async", refuse)
    response = await post(api, "/api/tts", {"text": "Hello."})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "voice_unavailable"


async def test_rate_limited(api, settings):
    settings.RATELIMIT_TTS = "2/h"  # an hour window: a minute boundary mid-test would reset the count
    codes = [(await post(api, "/api/tts/stream", {"text": ""})).status_code for _ in range(3)]
    assert codes == [400, 400, 429]


# -- whole file -------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["/api/tts", "/api/tts/stream"])
async def test_a_text_with_nothing_to_speak_is_silence(api, url):
    # Piper makes no samples of a character it has no sound for: no audio is not a failed synthesis.
    response = await post(api, url, {"text": "\U0008a2ca\x16"})
    assert response.status_code == 200, response.content
    # No letters: the user's language (zh by default) decides, and here only espeak-ng speaks Mandarin.
    assert response["Content-Type"] == "audio/wav" and response["X-TTS-Engine"] == "espeak-ng"
    data = b"".join(await body_parts(response)) if response.streaming else response.content
    assert len(data) == 44 and parse_stream_header(data)["rate"] == 22050  # a header, no samples
    if url == "/api/tts":
        assert parse_stream_header(data)["data"] == 0 and response["X-Duration"] == "0.000"


async def test_whole_wav_file(api):
    response = await post(api, "/api/tts", {"text": "Hello there. How are you?"})
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    assert int(response["Content-Length"]) == len(response.content)
    assert response["X-TTS-Engine"] == "piper"
    with wave.open(io.BytesIO(response.content)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 22050)
        frames = w.readframes(w.getnframes())
    assert w.getnframes() * 2 == len(response.content) - 44 == len(frames)
    assert 1.0 < w.getnframes() / 22050 < 6
    assert float(response["X-Duration"]) == pytest.approx(w.getnframes() / 22050, abs=0.001)
    assert rms(frames) > 1000
    assert np.abs(np.frombuffer(frames, "<i2")).max() < 32767  # headroom: no clipping


def test_under_wsgi_the_stream_comes_whole(client, user):
    """WSGI (tooling only) cannot stream: the same endpoint answers the whole audio at once."""
    client.force_login(user)
    response = client.post("/api/tts/stream", {"text": "Hello there."}, content_type="application/json")
    assert response.status_code == 200 and not response.streaming
    assert parse_stream_header(response.content)["data"] == len(response.content) - 44
    assert rms(response.content[44:]) > 1000


# -- through a real Celery worker ----------------------------------------------------------------
@pytest.mark.services_only
async def test_stream_through_the_worker(api, settings, monkeypatch, celery_worker_process):
    settings.VOICE_JOBS_IN_PROCESS = False

    def no_engines_here(*args, **kwargs):
        raise AssertionError("the web process must not load a TTS engine")

    monkeypatch.setattr("voice.jobs.runners.engine_for", no_engines_here)
    monkeypatch.setattr("voice.tts.registry._build", no_engines_here)
    response = await post(api, "/api/tts/stream", {"text": SENTENCES})
    assert response.status_code == 200
    assert response["X-TTS-Engine"] == "piper"
    data = b"".join(await body_parts(response))
    assert parse_stream_header(data)["rate"] == 22050
    assert rms(data[44:]) > 1000


async def test_the_engine_reads_the_text_for_the_ear(api, monkeypatch):
    heard = []

    class Recording(FakeEngine):
        def stream(self, text, voice=None, language=None):
            heard.append(text)
            yield from super().stream(text, voice)

    monkeypatch.setitem(registry._engines, "default", Recording([b"\1\0" * 2205]))
    for url in ("/api/tts/stream", "/api/tts"):
        response = await post(api, url, {"text": "# 提醒\n- 明天**8:00**开会，带上50%的资料 😀"})
        assert response.status_code == 200
        if url.endswith("stream"):
            await body_parts(response)  # the job runs while the body streams
    assert heard == ["提醒\n明天八点开会，带上百分之五十的资料"] * 2


async def test_a_text_within_the_limit_is_spoken_even_when_its_words_are_longer(api, settings, monkeypatch):
    settings.TTS_MAX_CHARS = 40
    heard = []

    class Recording(FakeEngine):
        def stream(self, text, voice=None, language=None):
            heard.append(text)
            yield from super().stream(text, voice)

    monkeypatch.setitem(registry._engines, "default", Recording([b"\1\0" * 2205]))
    text = "On 2024-03-05 at 14:30, 75% of 1200 km."  # 39 characters; far longer read as words
    response = await post(api, "/api/tts", {"text": text})
    assert response.status_code == 200, response.content[:300]
    assert len(heard) == 1 and len(heard[0]) > settings.TTS_MAX_CHARS and "percent" in heard[0]
