"""Bad uploads: a 4xx JSON error with a readable message, and nothing created or changed."""

import json
import os
import random

import pytest

from magicmirror.errors import ApplicationError
from speakers.models import Speaker, UserSettings
from speakers.services import reference_audio_prepare
from voice.tests.samples import opus, read_wav, tone, wav

from .conftest import read_bytes, reference_wav, stored_files, wav_upload
from .test_api import create, error, patch_multipart

pytestmark = pytest.mark.django_db


def assert_nothing_created(user):
    assert not Speaker.objects.filter(owner=user).exists()
    assert stored_files(user) == []
    current = UserSettings.objects.filter(user=user).values_list("current_speaker_id", flat=True).first()
    assert current is None


def rejected(response, status, code):
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    err = error(response)
    assert err["code"] == code, err
    return err["message"]


def test_garbage_bytes(api, user):
    garbage = bytes(random.Random(3).randrange(256) for _ in range(20000))
    message = rejected(create(api, audio=garbage), 400, "undecodable_audio")
    assert message == "This file is not audio that can be decoded."
    assert_nothing_created(user)


def test_text_file_named_wav(api, user):
    rejected(create(api, audio=b"<html><body>not audio</body></html>" * 30), 400, "undecodable_audio")
    assert_nothing_created(user)


def test_zero_length_file(api, user):
    response = api.post(
        "/api/speakers", {"name": "Anna", "prompt_text": "你好", "audio": wav_upload(b"")}, HTTP_ACCEPT_LANGUAGE="en"
    )
    message = rejected(response, 400, "invalid")
    assert message == "audio: The submitted file is empty."
    assert "audio" in response.json()["error"]["fields"]
    assert_nothing_created(user)


def test_oversized_file_is_413(api, user, settings):
    settings.SPEAKER_MAX_UPLOAD_BYTES = 20 * 1024
    data = reference_wav(seconds=1.5)
    assert len(data) > 20 * 1024
    message = rejected(create(api, audio=data), 413, "audio_too_large")
    assert "too large" in message and "20 KB" in message
    assert_nothing_created(user)


def test_file_at_the_size_limit_is_accepted(api, user, settings):
    data = reference_wav(seconds=1.5)
    settings.SPEAKER_MAX_UPLOAD_BYTES = len(data)
    assert create(api, audio=data).status_code == 201


@pytest.mark.parametrize(("limit", "shown"), [(10 * 1024 * 1024, "10 MB"), (1536 * 1024, "1.5 MB"), (512, "512 bytes")])
def test_size_limit_message_is_readable(settings, limit, shown):
    settings.SPEAKER_MAX_UPLOAD_BYTES = limit
    with pytest.raises(ApplicationError) as excinfo:
        reference_audio_prepare(data=b"x", size=limit + 1)
    assert excinfo.value.message == f"The audio file is too large (limit {shown})."
    assert (excinfo.value.code, excinfo.value.status_code) == ("audio_too_large", 413)


def test_too_short(api, user):
    message = rejected(create(api, audio=reference_wav(seconds=0.3)), 400, "audio_too_short")
    assert "at least 1 seconds" in message
    assert_nothing_created(user)


def test_too_long(api, user, settings):
    settings.SPEAKER_MAX_SECONDS = 2.0
    message = rejected(create(api, audio=reference_wav(seconds=2.5)), 400, "audio_too_long")
    assert "longer than 2 seconds" in message
    assert_nothing_created(user)


def test_sample_rate_below_16k(api, user):
    message = rejected(create(api, audio=reference_wav(seconds=1.5, rate=8000)), 400, "audio_rate_too_low")
    assert "16000 Hz" in message and "8000 Hz" in message
    assert_nothing_created(user)


def test_16k_is_enough(api, user):
    assert create(api, audio=reference_wav(seconds=1.5, rate=16000)).status_code == 201


@pytest.mark.parametrize("amplitude", [0.0, 0.005])
def test_silent_audio(api, user, amplitude):
    message = rejected(create(api, audio=reference_wav(seconds=1.5, amplitude=amplitude)), 400, "audio_silent")
    assert "silent" in message
    assert_nothing_created(user)


@pytest.mark.parametrize("missing", ["name", "prompt_text", "audio"])
def test_missing_fields(api, user, missing):
    data = {"name": "Anna", "prompt_text": "你好", "audio": wav_upload()}
    del data[missing]
    response = api.post("/api/speakers", data, HTTP_ACCEPT_LANGUAGE="en")
    message = rejected(response, 400, "invalid")
    expected = "No file was submitted." if missing == "audio" else "This field is required."
    assert message == f"{missing}: {expected}"
    assert response.json()["error"]["fields"] == {missing: [expected]}
    assert_nothing_created(user)


def test_validation_messages_follow_the_default_language(api, user):
    # The site defaults to Simplified Chinese; the field errors are translated.
    response = api.post("/api/speakers", {"prompt_text": "你好", "audio": wav_upload()})
    assert rejected(response, 400, "invalid") == "name: 该字段是必填项。"


@pytest.mark.parametrize("field", ["name", "prompt_text"])
def test_blank_fields(api, user, field):
    data = {"name": "Anna", "prompt_text": "你好", "audio": wav_upload(), field: "   "}
    message = rejected(api.post("/api/speakers", data), 400, "invalid")
    assert message.startswith(f"{field}:")
    assert_nothing_created(user)


def test_audio_sent_as_a_text_field(api, user):
    response = api.post("/api/speakers", {"name": "Anna", "prompt_text": "你好", "audio": "not a file"})
    rejected(response, 400, "invalid")
    assert_nothing_created(user)


def test_name_too_long(api, user):
    message = rejected(create(api, name="名" * 65), 400, "invalid")
    assert message.startswith("name:") and "64" in message
    assert_nothing_created(user)


def test_name_of_64_characters_is_accepted(api, user):
    assert create(api, name="名" * 63 + "😀").status_code == 201
    assert Speaker.objects.get(owner=user).name == "名" * 63 + "😀"


def test_prompt_text_too_long(api, user):
    message = rejected(create(api, prompt_text="字" * 501), 400, "invalid")
    assert message.startswith("prompt_text:") and "500" in message
    assert_nothing_created(user)


def test_duplicate_name_is_409(api, user):
    create(api, name="Anna")
    message = rejected(create(api, name="Anna"), 409, "duplicate_name")
    assert "already have a speaker with this name" in message
    assert Speaker.objects.filter(owner=user).count() == 1
    assert len(stored_files(user)) == 1


def test_json_create_without_a_file_is_rejected(api, user):
    body = json.dumps({"name": "Anna", "prompt_text": "你好", "audio": "x"})
    response = api.post("/api/speakers", body, content_type="application/json")
    rejected(response, 400, "invalid")
    assert_nothing_created(user)


@pytest.fixture
def speaker(api, user):
    body = create(api, name="Anna", prompt_text="原文").json()
    return Speaker.objects.get(pk=body["id"])


def assert_unchanged(speaker, user):
    fresh = Speaker.objects.get(pk=speaker.pk)
    assert (fresh.name, fresh.prompt_text, fresh.audio.name, fresh.audio_duration) == (
        speaker.name,
        speaker.prompt_text,
        speaker.audio.name,
        speaker.audio_duration,
    )
    assert stored_files(user) == [os.path.basename(speaker.audio.path)]


@pytest.mark.parametrize("body", ['{"name": "Bella"', "not json", '["name"]', "{'name': 'x'}"])
def test_malformed_json_patch(api, user, speaker, body):
    response = api.patch(f"/api/speakers/{speaker.pk}", body, content_type="application/json")
    assert response.status_code == 400
    assert error(response)["code"] in {"parse_error", "invalid"}
    assert_unchanged(speaker, user)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"name": ""}, "invalid"),
        ({"name": "n" * 65}, "invalid"),
        ({"prompt_text": "   "}, "invalid"),
        ({"prompt_text": "p" * 501}, "invalid"),
        ({"name": None}, "invalid"),
    ],
)
def test_bad_json_patch_values(api, user, speaker, payload, code):
    response = api.patch(f"/api/speakers/{speaker.pk}", json.dumps(payload), content_type="application/json")
    assert response.status_code == 400
    assert error(response)["code"] == code
    assert_unchanged(speaker, user)


@pytest.mark.parametrize(
    ("audio", "code", "status"),
    [
        (b"garbage" * 1000, "undecodable_audio", 400),
        (reference_wav(seconds=0.3), "audio_too_short", 400),
        (reference_wav(seconds=1.5, rate=8000), "audio_rate_too_low", 400),
        (reference_wav(seconds=1.5, amplitude=0.0), "audio_silent", 400),
    ],
    ids=["garbage", "short", "8k", "silent"],
)
def test_bad_audio_in_patch_changes_nothing(api, user, speaker, audio, code, status):
    # A valid rename in the same request is not applied either.
    response = patch_multipart(api, f"/api/speakers/{speaker.pk}", {"name": "Bella", "audio": wav_upload(audio)})
    assert response.status_code == status
    assert error(response)["code"] == code
    assert_unchanged(speaker, user)


def test_oversized_audio_in_patch_is_413(api, user, speaker, settings):
    settings.SPEAKER_MAX_UPLOAD_BYTES = 1000
    response = patch_multipart(api, f"/api/speakers/{speaker.pk}", {"audio": wav_upload()})
    assert response.status_code == 413
    assert error(response)["code"] == "audio_too_large"
    assert_unchanged(speaker, user)


@pytest.mark.parametrize("container", ["ogg", "webm"])
def test_browser_opus_recording_is_accepted(api, user, container):
    data = opus(2.0, container=container)
    response = api.post(
        "/api/speakers",
        {
            "name": "Opus",
            "prompt_text": "录音",
            "audio": wav_upload(data, name=f"rec.{container}", content_type=f"audio/{container}"),
        },
    )
    assert response.status_code == 201, response.content
    assert response.json()["audio_duration"] == pytest.approx(2.0, abs=0.03)
    speaker = Speaker.objects.get(owner=user)
    assert speaker.audio.name.endswith(".wav")
    channels, width, rate, samples = read_wav(read_bytes(speaker.audio.path))
    assert (channels, width, rate) == (1, 2, 24000)
    assert len(samples) == pytest.approx(48000, abs=720)
    assert int(abs(samples.astype(int)).max()) > 10000


def test_stereo_44k_wav_is_accepted_and_stored_mono_24k(api, user):
    data = wav([tone(1.5, 44100, 440.0), tone(1.5, 44100, 440.0)], 44100)
    response = create(api, audio=data)
    assert response.status_code == 201
    speaker = Speaker.objects.get(owner=user)
    channels, _, rate, samples = read_wav(read_bytes(speaker.audio.path))
    assert (channels, rate) == (1, 24000) and len(samples) == pytest.approx(36000, abs=48)
