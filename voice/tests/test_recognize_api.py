"""POST /api/recognize: uploads through decoding and the streaming recognition job, with real Vosk.

Transcripts must equal direct Vosk decoding of the decoded upload, fed in the chunks that
voice.jobs.recognize sends (see test_asr.py for why the chunking matters). Jobs run in-process
here, in both test runs; the services_only test goes through a real Celery worker instead.
"""

import base64
import inspect
import json
import random
import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import Resolver404, include, path, resolve

from voice import jobs
from voice.asr.base import ASRError
from voice.audio import decode_audio
from voice.jobs import backends
from voice.tests.test_asr import PHRASES, direct_decode, fixture_bytes
from voice.urls import api_urlpatterns as voice_api

pytestmark = pytest.mark.django_db

URL = "/api/recognize"
RATE = 16000
JOB_CHUNK_BYTES = inspect.signature(jobs.recognize).parameters["chunk_bytes"].default


# Until the project's URLconf includes voice.urls, the tests mount it themselves.
urlpatterns = [path("api/", include(voice_api)), path("", include("magicmirror.urls"))]


@pytest.fixture(autouse=True)
def _routes_and_jobs(request, settings):
    try:
        resolve(URL)
    except Resolver404:
        settings.ROOT_URLCONF = __name__
    if request.node.get_closest_marker("services_only") is None:
        settings.VOICE_JOBS_IN_PROCESS = True


def expected(data: bytes, phrases=None) -> dict:
    decoded = decode_audio(data, sample_rate=RATE)
    return {
        "text": direct_decode(decoded.pcm, phrases=phrases, chunk_bytes=JOB_CHUNK_BYTES),
        "duration": round(decoded.duration, 3),
    }


def post_json(client, body, **extra):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **extra)


def post_base64(client, data: bytes, phrases=None, prefix=""):
    body = {"audio": prefix + base64.b64encode(data).decode()}
    if phrases is not None:
        body["phrases"] = phrases
    return post_json(client, body)


def post_file(client, data: bytes, name="clip.wav", content_type="audio/wav", **fields):
    return client.post(URL, {"audio": SimpleUploadedFile(name, data, content_type=content_type), **fields})


def ok(response) -> dict:
    assert response.status_code == 200, response.content
    return response.json()


def rejected(response, status, code) -> str:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert error["code"] == code, error
    assert error["message"]
    return error["message"]


# -- recognition --------------------------------------------------------------------------------
def test_base64_json_wav(api):
    data = fixture_bytes("hello.wav")
    body = ok(post_base64(api, data))
    assert body == expected(data)
    assert body["text"]
    assert body["duration"] == pytest.approx(2.898, abs=0.001)


def test_base64_data_url(api):
    data = fixture_bytes("hello.webm")
    assert ok(post_base64(api, data, prefix="data:audio/webm;codecs=opus;base64,")) == expected(data)


def test_base64_without_padding_and_with_line_breaks(api):
    data = fixture_bytes("thanks.wav")
    text = base64.b64encode(data).decode().rstrip("=")
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    assert ok(post_json(api, {"audio": wrapped})) == expected(data)


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("hello.wav", "audio/wav"), ("hello.webm", "audio/webm"), ("hello.ogg", "audio/ogg")],
)
def test_multipart(api, name, content_type):
    data = fixture_bytes(name)
    body = ok(post_file(api, data, name=name, content_type=content_type))
    assert body == expected(data)
    assert body["text"]


def test_phrases_json(api):
    data = fixture_bytes("hello.wav")
    body = ok(post_base64(api, data, phrases=PHRASES))
    assert body == expected(data, PHRASES)
    words = body["text"].split()
    assert {"안녕하세요", "좋네요"} <= set(words) <= set(PHRASES)


@pytest.mark.parametrize("phrases", [PHRASES, ",".join(PHRASES), ["안녕하세요, 오늘", "좋네요"]], ids=str)
def test_phrases_multipart_repeated_or_comma_separated(api, phrases):
    data = fixture_bytes("hello.ogg")
    body = ok(post_file(api, data, name="hello.ogg", content_type="audio/ogg", phrases=phrases))
    assert body == expected(data, PHRASES)
    assert {"안녕하세요", "좋네요"} <= set(body["text"].split()) <= set(PHRASES)


def test_blank_phrases_are_no_phrases(api):
    data = fixture_bytes("hello.wav")
    assert ok(post_base64(api, data, phrases=["", "  "])) == expected(data)


def test_silence_gives_an_empty_transcript(api):
    from devtools.samples.make import silence, wav

    assert ok(post_file(api, wav(silence(1.0)))) == {"text": "", "duration": 1.0}


# -- refusals -----------------------------------------------------------------------------------
def test_anonymous_is_refused(client):
    response = post_base64(client, fixture_bytes("hello.wav"))
    rejected(response, 403, "not_authenticated")


def test_garbage_bytes(api):
    garbage = bytes(random.Random(3).randrange(256) for _ in range(20000))
    rejected(post_base64(api, garbage), 400, "undecodable_audio")
    rejected(post_file(api, garbage), 400, "undecodable_audio")


def test_empty_audio(api):
    rejected(post_json(api, {"audio": ""}), 400, "empty_audio")
    rejected(post_file(api, b""), 400, "empty_audio")
    from devtools.samples.make import silence, wav

    rejected(post_file(api, wav(silence(0))), 400, "empty_audio")  # a WAV header and no samples


def test_missing_audio(api):
    response = post_json(api, {"phrases": PHRASES})
    rejected(response, 400, "invalid")
    assert "audio" in response.json()["error"]["fields"]
    rejected(api.post(URL, {"phrases": "오늘"}), 400, "invalid")


def test_too_long(api, settings):
    settings.ASR_MAX_SECONDS = 1.0
    message = rejected(post_base64(api, fixture_bytes("hello.wav")), 400, "audio_too_long")
    assert "1 seconds" in message
    rejected(post_file(api, fixture_bytes("hello.webm"), name="a.webm"), 400, "audio_too_long")


@pytest.mark.parametrize("limit", [20_000, 60_000], ids=["body-checked-first", "audio-checked"])
def test_too_large(api, settings, limit):
    # 20 KB: the request body alone is over the limit; 60 KB: the body is within what a 60 KB
    # recording in base64 could take, the audio in it is not.
    settings.ASR_MAX_UPLOAD_BYTES = limit
    data = fixture_bytes("hello.wav")  # 92 KB
    rejected(post_base64(api, data), 413, "audio_too_large")
    message = rejected(post_file(api, data), 413, "audio_too_large")
    assert "KB" in message


def test_just_under_the_size_limit(api, settings):
    data = fixture_bytes("thanks.wav")
    settings.ASR_MAX_UPLOAD_BYTES = len(data)
    assert ok(post_base64(api, data)) == expected(data)
    settings.ASR_MAX_UPLOAD_BYTES = len(data) - 1
    rejected(post_base64(api, data), 413, "audio_too_large")


@pytest.mark.parametrize(
    "audio",
    ["not base64 at all!", "QUJD$$$", "data:audio/wav,plain-text", "data:audio/wav;base64", "QUJDR"],
)
def test_bad_base64(api, audio):
    rejected(post_json(api, {"audio": audio}), 400, "invalid_base64")


def test_malformed_json(api):
    response = api.post(URL, data='{"audio": "QUJD", ', content_type="application/json")
    rejected(response, 400, "parse_error")


@pytest.mark.parametrize("body", [["audio"], "audio", 42])
def test_json_that_is_not_an_object(api, body):
    rejected(post_json(api, body), 400, "invalid")


@pytest.mark.parametrize("audio", [42, ["QUJD"], {"data": "QUJD"}])
def test_audio_of_the_wrong_type(api, audio):
    rejected(post_json(api, {"audio": audio}), 400, "invalid")


@pytest.mark.parametrize("phrases", [42, [1, 2], [["오늘"]], ["오늘"] * 101, ["가" * 101]], ids=str)
def test_bad_phrases(api, phrases):
    rejected(post_base64(api, fixture_bytes("thanks.wav"), phrases=phrases), 400, "invalid_phrases")


def test_unsupported_content_type(api):
    response = api.post(URL, data=fixture_bytes("thanks.wav"), content_type="audio/wav")
    rejected(response, 415, "unsupported_media_type")


def test_rate_limited(api, settings):
    settings.RATELIMIT_CHAT = "2/h"
    for _ in range(2):
        rejected(post_json(api, {"audio": ""}), 400, "empty_audio")
    rejected(post_base64(api, fixture_bytes("thanks.wav")), 429, "rate_limited")


# -- the job fails ------------------------------------------------------------------------------
def test_worker_timeout(api, settings, monkeypatch):
    settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT = 0.5
    release = threading.Event()

    def stuck(*, send, job_id, phrases=None):  # a worker that never answers
        release.wait(30)
        list(backends.current().audio.items(job_id, idle_timeout=1))  # drain the job's audio

    monkeypatch.setattr("voice.jobs.runners.asr_run", stuck)
    try:
        message = rejected(post_base64(api, fixture_bytes("thanks.wav")), 503, "voice_worker_timeout")
    finally:
        release.set()
    assert "did not answer" in message


def test_asr_model_missing(api, monkeypatch):
    def no_model(language=None):
        raise ASRError("No Vosk model found.", code="asr_model_missing")

    monkeypatch.setattr("voice.jobs.runners.get_asr_engine", no_model)
    assert rejected(post_base64(api, fixture_bytes("thanks.wav")), 503, "asr_model_missing") == "No Vosk model found."


def test_asr_crash(api, monkeypatch):
    class Broken:
        def open_stream(self, phrases=None):
            raise RuntimeError("segfault-ish")

    monkeypatch.setattr("voice.jobs.runners.get_asr_engine", lambda language=None: Broken())
    message = rejected(post_base64(api, fixture_bytes("thanks.wav")), 502, "asr_failed")
    assert "segfault" not in message


def test_job_not_started(api, monkeypatch):
    async def broker_down(**kwargs):
        raise jobs.JobNotStarted("The voice service cannot be reached right now.")

    monkeypatch.setattr("voice.jobs.requester.asr_start", broker_down)
    message = rejected(post_base64(api, fixture_bytes("thanks.wav")), 503, "voice_unavailable")
    assert message == "The voice service cannot be reached right now."


def test_voice_backend_down(api, monkeypatch):
    async def down(**kwargs):
        raise ConnectionError("redis is gone")

    monkeypatch.setattr(jobs, "recognize", down)
    message = rejected(post_base64(api, fixture_bytes("thanks.wav")), 503, "voice_unavailable")
    assert "redis" not in message


# -- through a real Celery worker (services run) ------------------------------------------------
@pytest.mark.services_only
def test_recognition_on_the_celery_worker(api, settings, celery_worker_process):
    assert not settings.VOICE_JOBS_IN_PROCESS
    wav, webm = fixture_bytes("hello.wav"), fixture_bytes("hello.webm")
    assert ok(post_base64(api, wav)) == expected(wav)
    assert ok(post_file(api, webm, name="hello.webm", content_type="audio/webm")) == expected(webm)
    assert ok(post_base64(api, wav, phrases=PHRASES)) == expected(wav, PHRASES)
