import os
import re

import pytest
from django.test import Client

from chat.models import Conversation, Message
from speakers import services
from speakers.models import Speaker, UserSettings

from .conftest import read_bytes, reference_wav, stored_files, wav_upload

pytestmark = pytest.mark.django_db

SPEAKERS = "/admin/speakers/speaker/"


@pytest.fixture
def admin_client(admin_user):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(admin_user)
    return client


def audio_url(speaker):
    return f"{SPEAKERS}{speaker.pk}/audio/"


def add(client, owner, name="Anna", prompt_text="你好，我是安娜。", audio=None):
    return client.post(
        f"{SPEAKERS}add/",
        {"owner": owner.pk, "name": name, "prompt_text": prompt_text, "upload": wav_upload(audio), "_save": "Save"},
    )


def form_errors(response) -> str:
    """The text of the error lists on an admin form page."""
    assert response.status_code == 200
    html = response.content.decode()
    return " ".join(re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', html, flags=re.S))


def test_changelist_shows_owner_name_and_player(admin_client, user, other_user, make_speaker):
    anna = make_speaker(user, name="Anna 安娜")
    bob = make_speaker(other_user, name="Bob")
    response = admin_client.get(SPEAKERS)
    assert response.status_code == 200
    html = response.content.decode()
    for speaker, owner in ((anna, user), (bob, other_user)):
        assert f'<audio controls preload="none" src="{audio_url(speaker)}"></audio>' in html
        assert speaker.name in html
        assert owner.username in html


def test_changelist_search_by_owner(admin_client, user, other_user, make_speaker):
    make_speaker(user, name="Anna")
    make_speaker(other_user, name="Bob")
    html = admin_client.get(SPEAKERS, {"q": other_user.username}).content.decode()
    assert "Bob" in html and "Anna" not in html


def test_audio_is_served_to_staff(admin_client, user, make_speaker):
    speaker = make_speaker(user)
    response = admin_client.get(audio_url(speaker))
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/wav"
    assert b"".join(response.streaming_content) == read_bytes(speaker.audio.path)


def test_audio_of_a_missing_speaker_is_404(admin_client):
    assert admin_client.get(f"{SPEAKERS}999999/audio/").status_code == 404


def test_non_staff_user_cannot_get_the_audio(client, user, make_speaker):
    speaker = make_speaker(user)
    client.force_login(user)  # even the owner: the admin view is for staff
    response = client.get(audio_url(speaker))
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert not getattr(response, "streaming", False)


def test_anonymous_cannot_get_the_audio(client, user, make_speaker):
    speaker = make_speaker(user)
    response = client.get(audio_url(speaker))
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_staff_without_speaker_permission_cannot_get_the_audio(make_user, user, make_speaker):
    speaker = make_speaker(user)
    staff = make_user("helpdesk", is_staff=True)
    client = Client()
    client.force_login(staff)
    response = client.get(audio_url(speaker))
    assert response.status_code in (403, 404)
    assert not getattr(response, "streaming", False)


def test_add_with_an_uploaded_file(admin_client, user):
    response = add(admin_client, user, name="小雨", prompt_text="今天天气真好")
    assert response.status_code == 302, form_errors(response)
    speaker = Speaker.objects.get(owner=user)
    assert (speaker.name, speaker.prompt_text, speaker.slot) == ("小雨", "今天天气真好", 1)
    assert speaker.audio_duration == pytest.approx(1.5, abs=0.01)
    assert os.path.exists(speaker.audio.path)
    assert stored_files(user) == [os.path.basename(speaker.audio.path)]
    # Same service as the API: the first speaker becomes current.
    assert UserSettings.objects.get(user=user).current_speaker_id == speaker.pk


def test_add_accepts_an_opus_recording(admin_client, user):
    from voice.tests.samples import opus

    response = add(admin_client, user, audio=opus(2.0))
    assert response.status_code == 302, form_errors(response)
    assert Speaker.objects.get(owner=user).audio_duration == pytest.approx(2.0, abs=0.03)


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        (b"garbage" * 500, "This file is not audio that can be decoded."),
        (reference_wav(seconds=0.3), "The reference audio must last at least 1 seconds."),
        (reference_wav(seconds=1.5, rate=8000), "must be sampled at 16000 Hz or more"),
        (reference_wav(seconds=1.5, amplitude=0.0), "The reference audio is silent."),
    ],
    ids=["garbage", "short", "8k", "silent"],
)
def test_add_with_bad_audio_is_a_form_error(admin_client, user, audio, message):
    response = add(admin_client, user, audio=audio)
    assert message in form_errors(response)
    assert not Speaker.objects.exists()
    assert stored_files(user) == []


def test_add_with_an_oversized_file_is_a_form_error(admin_client, user, settings):
    settings.SPEAKER_MAX_UPLOAD_BYTES = 2048
    response = add(admin_client, user)
    assert "The audio file is too large (limit 2 KB)." in form_errors(response)
    assert not Speaker.objects.exists()


def test_add_with_an_empty_file_is_a_form_error(admin_client, user):
    response = add(admin_client, user, audio=b"")
    assert form_errors(response)
    assert not Speaker.objects.exists()


def test_add_without_a_file_is_a_form_error(admin_client, user):
    response = admin_client.post(
        f"{SPEAKERS}add/", {"owner": user.pk, "name": "Anna", "prompt_text": "你好", "_save": "Save"}
    )
    assert "A reference clip is required." in form_errors(response)
    assert not Speaker.objects.exists()


def test_add_with_a_taken_name_is_a_form_error(admin_client, user, make_speaker):
    make_speaker(user, name="Anna")
    response = add(admin_client, user, name="anna")
    assert "already" in form_errors(response)
    assert Speaker.objects.filter(owner=user).count() == 1


def test_fourth_speaker_in_admin_is_a_form_error(admin_client, user, other_user, make_speaker):
    for name in "ABC":
        make_speaker(user, name=name)
    response = add(admin_client, user, name="D")
    assert f"{user.username} already has 3 speakers; delete one first." in form_errors(response)
    assert Speaker.objects.filter(owner=user).count() == 3
    assert len(stored_files(user)) == 3
    # Someone else can still get one.
    assert add(admin_client, other_user, name="D").status_code == 302


def test_change_page_loads_with_player(admin_client, user, make_speaker):
    speaker = make_speaker(user)
    response = admin_client.get(f"{SPEAKERS}{speaker.pk}/change/")
    assert response.status_code == 200
    assert audio_url(speaker) in response.content.decode()


def test_change_renames_and_replaces_audio(admin_client, user, make_speaker, django_capture_on_commit_callbacks):
    speaker = make_speaker(user)
    old_path = speaker.audio.path
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            f"{SPEAKERS}{speaker.pk}/change/",
            {"name": "Bella", "prompt_text": "新的", "upload": wav_upload(reference_wav(seconds=2.5)), "_save": "Save"},
        )
    assert response.status_code == 302, form_errors(response)
    fresh = Speaker.objects.get(pk=speaker.pk)
    assert (fresh.name, fresh.prompt_text, fresh.owner_id, fresh.slot) == ("Bella", "新的", user.pk, 1)
    assert fresh.audio_duration == pytest.approx(2.5, abs=0.01)
    assert not os.path.exists(old_path)
    assert stored_files(user) == [os.path.basename(fresh.audio.path)]


def test_change_without_a_new_file_keeps_the_audio(admin_client, user, make_speaker):
    speaker = make_speaker(user)
    response = admin_client.post(
        f"{SPEAKERS}{speaker.pk}/change/", {"name": "Bella", "prompt_text": "新的", "_save": "Save"}
    )
    assert response.status_code == 302, form_errors(response)
    fresh = Speaker.objects.get(pk=speaker.pk)
    assert fresh.name == "Bella" and fresh.audio.name == speaker.audio.name


def test_change_to_a_taken_name_is_a_form_error(admin_client, user, make_speaker):
    make_speaker(user, name="Anna")
    bella = make_speaker(user, name="Bella")
    response = admin_client.post(f"{SPEAKERS}{bella.pk}/change/", {"name": "Anna", "prompt_text": "x", "_save": "Save"})
    assert "already" in form_errors(response)
    assert Speaker.objects.get(pk=bella.pk).name == "Bella"


def test_change_with_bad_audio_is_a_form_error(admin_client, user, make_speaker):
    speaker = make_speaker(user)
    response = admin_client.post(
        f"{SPEAKERS}{speaker.pk}/change/",
        {"name": "Bella", "prompt_text": "x", "upload": wav_upload(b"junk" * 100), "_save": "Save"},
    )
    assert "This file is not audio that can be decoded." in form_errors(response)
    fresh = Speaker.objects.get(pk=speaker.pk)
    assert (fresh.name, fresh.audio.name) == ("Anna", speaker.audio.name)
    assert len(stored_files(user)) == 1


def test_delete_in_admin_removes_the_file(admin_client, user, make_speaker, django_capture_on_commit_callbacks):
    speaker = make_speaker(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"{SPEAKERS}{speaker.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Speaker.objects.exists()
    assert not os.path.exists(speaker.audio.path)
    assert UserSettings.objects.get(user=user).current_speaker_id is None


@pytest.fixture
def conversations(user, other_user):
    talk = Conversation.objects.create(owner=user, title="天气")
    Message.objects.create(conversation=talk, role="user", content="今天会下雨吗？")
    Message.objects.create(conversation=talk, role="assistant", content="可能会有小雨，带把伞吧。")
    other = Conversation.objects.create(owner=other_user, title="Cooking")
    Message.objects.create(conversation=other, role="user", content="How long do I boil an egg?")
    return talk, other


def test_conversation_shows_messages_inline_read_only(admin_client, conversations):
    talk, _ = conversations
    response = admin_client.get(f"/admin/chat/conversation/{talk.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "今天会下雨吗？" in html and "可能会有小雨，带把伞吧。" in html
    assert "How long do I boil an egg?" not in html
    # Shown, not editable: no inputs for the inline's fields, no add/delete.
    assert 'name="messages-0-content"' not in html
    assert 'name="messages-0-DELETE"' not in html
    assert 'name="messages-TOTAL_FORMS" value="2"' in html


def test_conversation_change_keeps_messages(admin_client, user, conversations):
    talk, _ = conversations
    response = admin_client.post(
        f"/admin/chat/conversation/{talk.pk}/change/",
        {
            "owner": user.pk,
            "title": "新标题",
            "title_is_final": "on",
            "messages-TOTAL_FORMS": "2",
            "messages-INITIAL_FORMS": "2",
            "messages-MIN_NUM_FORMS": "0",
            "messages-MAX_NUM_FORMS": "1000",
            "messages-0-id": str(talk.messages.all()[0].pk),
            "messages-0-conversation": str(talk.pk),
            "messages-1-id": str(talk.messages.all()[1].pk),
            "messages-1-conversation": str(talk.pk),
            "_save": "Save",
        },
    )
    assert response.status_code == 302, form_errors(response)
    talk.refresh_from_db()
    assert talk.title == "新标题"
    assert list(talk.messages.values_list("content", flat=True)) == ["今天会下雨吗？", "可能会有小雨，带把伞吧。"]


@pytest.mark.parametrize(
    ("query", "found", "not_found"),
    [
        ("下雨", "天气", "Cooking"),  # message content
        ("egg", "Cooking", "天气"),
        ("mallory", "Cooking", "天气"),  # owner
        ("天气", "天气", "Cooking"),  # title
    ],
)
def test_conversation_search(admin_client, conversations, query, found, not_found):
    response = admin_client.get("/admin/chat/conversation/", {"q": query})
    assert response.status_code == 200
    html = response.content.decode()
    assert found in html
    assert not_found not in html


def test_conversation_search_lists_a_match_once(admin_client, user):
    talk = Conversation.objects.create(owner=user, title="Rainy")
    for _ in range(3):
        Message.objects.create(conversation=talk, role="user", content="umbrella please")
    response = admin_client.get("/admin/chat/conversation/", {"q": "umbrella"})
    assert response.content.decode().count(f"/admin/chat/conversation/{talk.pk}/change/") == 1


def test_user_settings_admin_pages(admin_client, user, other_user, make_speaker):
    mine = make_speaker(user, name="MineVoice")
    theirs = make_speaker(other_user, name="TheirVoice")
    row = UserSettings.objects.get(user=user)
    assert admin_client.get("/admin/speakers/usersettings/").status_code == 200
    assert admin_client.get("/admin/speakers/usersettings/add/").status_code == 200
    response = admin_client.get(f"/admin/speakers/usersettings/{row.pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    # The current-speaker choice offers only this user's own speakers.
    select = re.search(r'<select name="current_speaker".*?</select>', html, flags=re.S).group(0)
    assert re.findall(r'<option value="(\d*)"', select) == ["", str(mine.pk)]
    assert f'<option value="{mine.pk}" selected>MineVoice</option>' in select
    assert "TheirVoice" not in html and theirs.pk != mine.pk


def test_user_settings_admin_change(admin_client, user, make_speaker):
    make_speaker(user, name="A")
    second = make_speaker(user, name="B")
    row = UserSettings.objects.get(user=user)
    response = admin_client.post(
        f"/admin/speakers/usersettings/{row.pk}/change/",
        {"user": user.pk, "current_speaker": second.pk, "input_mode": "handsfree", "_save": "Save"},
    )
    assert response.status_code == 302, form_errors(response)
    row.refresh_from_db()
    assert (row.current_speaker_id, row.input_mode, row.voice_output) == (second.pk, "handsfree", False)


def test_user_settings_admin_refuses_another_users_speaker(admin_client, user, other_user, make_speaker):
    mine = make_speaker(user, name="A")
    theirs = make_speaker(other_user, name="B")
    row = UserSettings.objects.get(user=user)
    response = admin_client.post(
        f"/admin/speakers/usersettings/{row.pk}/change/",
        {"user": user.pk, "current_speaker": theirs.pk, "input_mode": "ptt", "voice_output": "on", "_save": "Save"},
    )
    assert form_errors(response)
    assert UserSettings.objects.get(pk=row.pk).current_speaker_id == mine.pk


def test_services_used_by_admin_are_the_same_as_the_api(user):
    # Guard: the admin form validates through services.reference_audio_prepare.
    with pytest.raises(services.ApplicationError) as excinfo:
        services.reference_audio_prepare(data=b"junk" * 100)
    assert excinfo.value.code == "undecodable_audio"


def test_admin_audio_with_the_file_gone_is_404(admin_client, user, make_speaker):
    speaker = make_speaker(user)
    os.remove(speaker.audio.path)
    assert admin_client.get(audio_url(speaker)).status_code == 404


def test_user_settings_user_cannot_be_moved_to_someone_else(admin_client, user, other_user, make_speaker):
    mine = make_speaker(user, name="A")
    row = UserSettings.objects.get(user=user)
    response = admin_client.post(
        f"/admin/speakers/usersettings/{row.pk}/change/",
        {"user": other_user.pk, "current_speaker": mine.pk, "input_mode": "ptt", "_save": "Save"},
    )
    assert response.status_code == 302, form_errors(response)
    row.refresh_from_db()
    assert (row.user_id, row.current_speaker_id) == (user.pk, mine.pk)


def test_user_settings_admin_with_a_bad_id_redirects(admin_client):
    response = admin_client.get("/admin/speakers/usersettings/abc/change/")
    assert response.status_code == 302
