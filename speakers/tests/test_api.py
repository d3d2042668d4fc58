import json
import os

import pytest
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from speakers.models import Speaker, UserSettings
from voice.tests.samples import read_wav

from .conftest import read_bytes, reference_wav, stored_files, wav_upload

pytestmark = pytest.mark.django_db


def core(body: dict) -> dict:
    """The settings of this app in an /api/settings body (memory and persona fields are memory's)."""
    return {key: body[key] for key in ("current_speaker_id", "input_mode", "voice_output") if key in body}


def create(client, name="Anna", prompt_text="你好，我是安娜。", audio=None, **extra):
    data = {"name": name, "prompt_text": prompt_text, "audio": wav_upload(audio), **extra}
    return client.post("/api/speakers", data)


def patch_json(client, url, data):
    return client.patch(url, json.dumps(data), content_type="application/json")


def patch_multipart(client, url, data):
    return client.patch(url, encode_multipart(BOUNDARY, data), content_type=MULTIPART_CONTENT)


def error(response):
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    return body["error"]


@pytest.fixture
def other_client(other_user):
    client = Client()
    client.force_login(other_user)
    return client


def test_list_is_empty_at_first(api):
    response = api.get("/api/speakers")
    assert response.status_code == 200
    assert response.json() == {"speakers": [], "current_speaker_id": None, "limit": 3}


def test_create_first_speaker_becomes_current(api, user):
    response = create(api, name="小雨 🌧", prompt_text="今天天气真好😀")
    assert response.status_code == 201, response.content
    body = response.json()
    speaker = Speaker.objects.get(owner=user)
    assert body["id"] == speaker.pk
    assert body["name"] == "小雨 🌧" and body["prompt_text"] == "今天天气真好😀"
    assert body["audio_url"] == f"/api/speakers/{speaker.pk}/audio"
    assert body["audio_duration"] == pytest.approx(1.5, abs=0.01)
    assert body["is_current"] is True
    assert speaker.slot == 1 and speaker.audio_sample_rate == 24000
    assert UserSettings.objects.get(user=user).current_speaker_id == speaker.pk
    # Stored as 24 kHz mono PCM16.
    channels, width, rate, samples = read_wav(read_bytes(speaker.audio.path))
    assert (channels, width, rate) == (1, 2, 24000) and len(samples) == 36000


def test_names_and_prompts_are_trimmed(api, user):
    response = create(api, name="  Anna  ", prompt_text="\n 你好 \n")
    assert response.status_code == 201
    speaker = Speaker.objects.get(owner=user)
    assert (speaker.name, speaker.prompt_text) == ("Anna", "你好")


def test_later_speakers_do_not_take_over_unless_asked(api, user):
    first = create(api, name="A").json()
    second = create(api, name="B").json()
    assert second["is_current"] is False
    third = create(api, name="C", make_current="true").json()
    assert third["is_current"] is True
    listing = api.get("/api/speakers").json()
    assert listing["current_speaker_id"] == third["id"]
    assert [(s["name"], s["is_current"]) for s in listing["speakers"]] == [("A", False), ("B", False), ("C", True)]
    assert first["id"] < second["id"] < third["id"]


def test_first_speaker_with_make_current_false_is_not_current(api, user):
    body = create(api, make_current="false").json()
    assert body["is_current"] is False
    assert UserSettings.objects.get(user=user).current_speaker_id is None


def test_fourth_speaker_is_refused_with_409(api, user):
    for name in "ABC":
        assert create(api, name=name).status_code == 201
    response = create(api, name="D")
    assert response.status_code == 409
    err = error(response)
    assert err["code"] == "speaker_limit"
    assert "3" in err["message"]
    assert list(Speaker.objects.filter(owner=user).values_list("name", flat=True)) == ["A", "B", "C"]
    assert len(stored_files(user)) == 3


def test_get_one(api, user):
    created = create(api).json()
    response = api.get(f"/api/speakers/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


def test_get_missing_is_404(api):
    response = api.get("/api/speakers/999999")
    assert response.status_code == 404
    assert error(response)["code"] == "speaker_not_found"


def test_rename_and_correct_transcript(api, user):
    created = create(api).json()
    speaker = Speaker.objects.get(pk=created["id"])
    response = patch_json(api, f"/api/speakers/{speaker.pk}", {"name": "Bella 🎤", "prompt_text": "改过的文字"})
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["name"], body["prompt_text"]) == ("Bella 🎤", "改过的文字")
    assert body["is_current"] is True
    fresh = Speaker.objects.get(pk=speaker.pk)
    assert (fresh.name, fresh.prompt_text) == ("Bella 🎤", "改过的文字")
    assert fresh.audio.name == speaker.audio.name  # audio untouched


def test_patch_only_the_prompt_keeps_the_name(api):
    created = create(api, name="Anna").json()
    response = patch_json(api, f"/api/speakers/{created['id']}", {"prompt_text": "新的"})
    assert response.status_code == 200
    assert Speaker.objects.get(pk=created["id"]).name == "Anna"


def test_rename_to_own_name_with_other_case_is_fine(api):
    created = create(api, name="Anna").json()
    response = patch_json(api, f"/api/speakers/{created['id']}", {"name": "ANNA"})
    assert response.status_code == 200
    assert Speaker.objects.get(pk=created["id"]).name == "ANNA"


def test_replace_audio_deletes_the_old_file(api, user, django_capture_on_commit_callbacks):
    created = create(api).json()
    old_path = Speaker.objects.get(pk=created["id"]).audio.path
    with django_capture_on_commit_callbacks(execute=True):
        response = patch_multipart(
            api, f"/api/speakers/{created['id']}", {"audio": wav_upload(reference_wav(seconds=2.5, freq=330.0))}
        )
    assert response.status_code == 200, response.content
    assert response.json()["audio_duration"] == pytest.approx(2.5, abs=0.01)
    speaker = Speaker.objects.get(pk=created["id"])
    assert speaker.audio.path != old_path
    assert not os.path.exists(old_path)
    assert os.path.exists(speaker.audio.path)
    assert stored_files(user) == [os.path.basename(speaker.audio.path)]
    assert speaker.audio_duration == pytest.approx(2.5, abs=0.01)
    assert speaker.name == "Anna"  # only the audio changed


def test_rename_and_replace_audio_in_one_multipart_patch(api, user):
    created = create(api).json()
    response = patch_multipart(
        api, f"/api/speakers/{created['id']}", {"name": "Clara", "audio": wav_upload(reference_wav(seconds=2.0))}
    )
    assert response.status_code == 200
    speaker = Speaker.objects.get(pk=created["id"])
    assert speaker.name == "Clara" and speaker.audio_duration == pytest.approx(2.0, abs=0.01)


def test_rename_to_a_taken_name_is_409(api):
    create(api, name="Anna")
    bella = create(api, name="Bella").json()
    response = patch_json(api, f"/api/speakers/{bella['id']}", {"name": "anna"})
    assert response.status_code == 409
    assert error(response)["code"] == "duplicate_name"
    assert Speaker.objects.get(pk=bella["id"]).name == "Bella"


def test_delete(api, user, django_capture_on_commit_callbacks):
    created = create(api).json()
    path = Speaker.objects.get(pk=created["id"]).audio.path
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/speakers/{created['id']}")
    assert response.status_code == 204
    assert not Speaker.objects.filter(pk=created["id"]).exists()
    assert not os.path.exists(path)
    assert api.get("/api/speakers").json() == {"speakers": [], "current_speaker_id": None, "limit": 3}
    assert api.get(f"/api/speakers/{created['id']}").status_code == 404


def test_switch(api, user):
    first = create(api, name="A").json()
    second = create(api, name="B").json()
    response = api.post(f"/api/speakers/{second['id']}/switch")
    assert response.status_code == 200
    assert core(response.json()) == {"current_speaker_id": second["id"], "input_mode": "ptt", "voice_output": True}
    assert UserSettings.objects.get(user=user).current_speaker_id == second["id"]
    assert api.get("/api/settings").json()["current_speaker_id"] == second["id"]
    assert api.get(f"/api/speakers/{first['id']}").json()["is_current"] is False
    assert api.get(f"/api/speakers/{second['id']}").json()["is_current"] is True


def test_switch_to_missing_speaker_is_404_and_keeps_current(api, user):
    first = create(api).json()
    response = api.post("/api/speakers/999999/switch")
    assert response.status_code == 404
    assert UserSettings.objects.get(user=user).current_speaker_id == first["id"]


def test_audio_download_is_24k_mono_wav(api):
    created = create(api, audio=reference_wav(seconds=2.0, rate=48000)).json()
    response = api.get(created["audio_url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    data = b"".join(response.streaming_content)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    channels, width, rate, samples = read_wav(data)
    assert (channels, width, rate) == (1, 2, 24000)
    assert len(samples) == pytest.approx(48000, abs=48)
    assert int(abs(samples.astype(int)).max()) > 10000


def test_settings_defaults(api, user):
    response = api.get("/api/settings")
    assert response.status_code == 200
    assert core(response.json()) == {"current_speaker_id": None, "input_mode": "ptt", "voice_output": True}


def test_settings_patch(api, user):
    response = patch_json(api, "/api/settings", {"input_mode": "handsfree", "voice_output": False})
    assert response.status_code == 200
    assert core(response.json()) == {"current_speaker_id": None, "input_mode": "handsfree", "voice_output": False}
    row = UserSettings.objects.get(user=user)
    assert (row.input_mode, row.voice_output) == ("handsfree", False)
    # A partial change leaves the rest alone.
    response = patch_json(api, "/api/settings", {"voice_output": True})
    assert core(response.json()) == {"current_speaker_id": None, "input_mode": "handsfree", "voice_output": True}


def test_settings_patch_current_speaker_id(api, user, other_user, make_speaker):
    """docs/api.md: `current_speaker_id` is writable here; null goes back to the default voice."""
    mine = make_speaker(user)
    theirs = make_speaker(other_user, name="Theirs")
    response = patch_json(api, "/api/settings", {"current_speaker_id": mine.pk})
    assert response.status_code == 200 and response.json()["current_speaker_id"] == mine.pk
    response = patch_json(api, "/api/settings", {"current_speaker_id": theirs.pk})
    assert response.status_code == 404 and error(response)["code"] == "speaker_not_found"
    assert UserSettings.objects.get(user=user).current_speaker_id == mine.pk
    response = patch_json(api, "/api/settings", {"current_speaker_id": None})
    assert response.status_code == 200 and response.json()["current_speaker_id"] is None
    assert UserSettings.objects.get(user=user).current_speaker_id is None


def test_settings_patch_as_a_form_changes_only_what_it_sends(api, user):
    # A form that leaves a boolean out must not read as false (DRF's HTML-form default).
    response = api.patch("/api/settings", "input_mode=handsfree", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert core(response.json()) == {"current_speaker_id": None, "input_mode": "handsfree", "voice_output": True}
    assert UserSettings.objects.get(user=user).voice_output is True


@pytest.mark.parametrize("payload", [{"input_mode": "always"}, {"voice_output": "maybe"}])
def test_settings_patch_rejects_bad_values(api, user, payload):
    response = patch_json(api, "/api/settings", payload)
    assert response.status_code == 400
    err = error(response)
    assert err["code"] == "invalid"
    assert next(iter(payload)) in err["fields"]
    row, _ = UserSettings.objects.get_or_create(user=user)
    assert (row.input_mode, row.voice_output) == ("ptt", True)


ROUTES = [
    ("get", "/api/speakers"),
    ("post", "/api/speakers"),
    ("get", "/api/speakers/{id}"),
    ("patch", "/api/speakers/{id}"),
    ("delete", "/api/speakers/{id}"),
    ("post", "/api/speakers/{id}/switch"),
    ("get", "/api/speakers/{id}/audio"),
    ("get", "/api/settings"),
    ("patch", "/api/settings"),
]


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_anonymous_gets_403_json(client, user, make_speaker, method, route):
    speaker = make_speaker(user)
    response = getattr(client, method)(route.format(id=speaker.pk))
    assert response.status_code == 403
    assert response["Content-Type"] == "application/json"
    assert error(response)["code"] == "not_authenticated"
    assert Speaker.objects.get(pk=speaker.pk).name == "Anna"


OTHERS_ROUTES = [
    ("get", "/api/speakers/{id}", None),
    ("patch", "/api/speakers/{id}", {"name": "Hacked", "prompt_text": "hacked"}),
    ("patch", "/api/speakers/{id}", "multipart"),
    ("delete", "/api/speakers/{id}", None),
    ("post", "/api/speakers/{id}/switch", None),
    ("get", "/api/speakers/{id}/audio", None),
]


@pytest.mark.parametrize(("method", "route", "body"), OTHERS_ROUTES)
def test_another_users_speaker_is_404_and_unchanged(
    api, user, other_user, make_speaker, django_capture_on_commit_callbacks, method, route, body
):
    theirs = make_speaker(other_user, name="Theirs", prompt_text="他们的")
    mine = make_speaker(user, name="Mine")
    before = read_bytes(theirs.audio.path)
    url = route.format(id=theirs.pk)
    with django_capture_on_commit_callbacks(execute=True):
        if body == "multipart":
            response = patch_multipart(api, url, {"name": "Hacked", "audio": wav_upload(reference_wav(seconds=2.0))})
        elif body is not None:
            response = patch_json(api, url, body)
        else:
            response = getattr(api, method)(url)
    assert response.status_code == 404
    err = error(response)
    assert err["code"] == "speaker_not_found"
    assert "Theirs" not in response.content.decode()

    fresh = Speaker.objects.get(pk=theirs.pk)
    assert (fresh.name, fresh.prompt_text, fresh.audio.name) == ("Theirs", "他们的", theirs.audio.name)
    assert read_bytes(fresh.audio.path) == before
    assert stored_files(other_user) == [os.path.basename(theirs.audio.path)]
    assert UserSettings.objects.get(user=other_user).current_speaker_id == theirs.pk
    assert UserSettings.objects.get(user=user).current_speaker_id == mine.pk


def test_another_users_speakers_are_not_listed(api, other_user, make_speaker):
    make_speaker(other_user, name="Theirs")
    assert api.get("/api/speakers").json()["speakers"] == []


@pytest.fixture
def csrf_client(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def test_post_without_csrf_token_is_rejected(csrf_client, user):
    response = create(csrf_client)
    assert response.status_code == 403
    err = error(response)
    assert err["code"] == "permission_denied"
    assert "CSRF" in err["message"]
    assert not Speaker.objects.exists()
    assert stored_files(user) == []


def test_patch_and_delete_without_csrf_token_are_rejected(csrf_client, user, make_speaker):
    speaker = make_speaker(user)
    assert patch_json(csrf_client, f"/api/speakers/{speaker.pk}", {"name": "X"}).status_code == 403
    assert csrf_client.delete(f"/api/speakers/{speaker.pk}").status_code == 403
    assert csrf_client.post(f"/api/speakers/{speaker.pk}/switch").status_code == 403
    assert Speaker.objects.get(pk=speaker.pk).name == "Anna"


def test_post_with_csrf_token_is_accepted(csrf_client, user):
    token = _get_new_csrf_string()
    csrf_client.cookies["csrftoken"] = token
    data = {"name": "Anna", "prompt_text": "你好", "audio": wav_upload()}
    response = csrf_client.post("/api/speakers", data, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content
    assert Speaker.objects.filter(owner=user).count() == 1


def test_audio_download_with_the_file_gone_is_404_json(api, user):
    created = create(api).json()
    os.remove(Speaker.objects.get(pk=created["id"]).audio.path)
    response = api.get(created["audio_url"])
    assert response.status_code == 404
    assert error(response)["code"] == "audio_missing"


def test_settings_patch_switches_speaker_and_back_to_default(api, user, other_user, make_speaker):
    mine = make_speaker(user, name="Mine")
    theirs = make_speaker(other_user, name="Theirs")
    response = api.patch("/api/settings", {"current_speaker_id": None}, content_type="application/json")
    assert response.status_code == 200 and response.json()["current_speaker_id"] is None
    response = api.patch("/api/settings", {"current_speaker_id": mine.pk}, content_type="application/json")
    assert response.json()["current_speaker_id"] == mine.pk
    response = api.patch("/api/settings", {"current_speaker_id": theirs.pk}, content_type="application/json")
    assert response.status_code == 404
    assert UserSettings.objects.get(user=user).current_speaker_id == mine.pk
