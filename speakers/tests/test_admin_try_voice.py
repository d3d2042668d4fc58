"""Try-a-voice, the re-register button and the problems filter of the speaker admin.

The synthesis goes through the job path the run is configured with, as the site's own: the real Celery
worker under `env $(./dev services) pytest` (the test process then loads no engine), threads of this
process on the embedded default."""

import io
import json
import wave

import numpy as np
import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from speakers import services
from speakers.models import Speaker

from .conftest import reference_wav

# The job reads the speaker from the database on another connection (a worker, or a job thread).
pytestmark = pytest.mark.django_db(transaction=True)

SPEAKERS = "/admin/speakers/speaker/"
ENGLISH = "Hello, how are you?"


def try_url(speaker_id):
    return f"{SPEAKERS}{speaker_id}/try/"


@pytest.fixture
def job_path(request, settings, monkeypatch):
    """ "workers" or "in-process": the site's job path in this run."""
    if settings.VOICE_JOBS_IN_PROCESS:
        return "in-process"
    request.getfixturevalue("celery_worker_process")

    def no_engines_here(*args, **kwargs):
        raise AssertionError("with workers the web process must not load a TTS engine")

    monkeypatch.setattr("voice.tts.registry._build", no_engines_here)
    return "workers"


@pytest.fixture
def make_staff(make_user):
    def make(*codenames, username="staff"):
        staff = make_user(username, is_staff=True)
        staff.user_permissions.add(
            *Permission.objects.filter(content_type__app_label="speakers", codename__in=codenames)
        )
        return staff

    return make


def login(user, language="zh-CN"):
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


@pytest.fixture
def staff_client(make_staff):
    """Staff with the change permission on speakers (not a superuser)."""
    return login(make_staff("view_speaker", "change_speaker"))


def wav_of(response):
    with wave.open(io.BytesIO(response.content)) as w:
        return w.getframerate(), w.getnframes(), np.frombuffer(w.readframes(w.getnframes()), "<i2")


def rms(samples) -> float:
    return float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))) if samples.size else 0.0


def test_the_change_page_offers_the_default_sentence_and_it_is_spoken(staff_client, job_path, user, make_speaker):
    speaker = make_speaker(user, prompt_text=ENGLISH)
    html = staff_client.get(f"{SPEAKERS}{speaker.pk}/change/").content.decode()
    assert f'action="{try_url(speaker.pk)}"' in html
    assert services.TRY_SENTENCES["en"] in html  # in the prompt's language
    for label in ("试听这个声音：Anna", "要朗读的句子", "朗读", "在引擎中重新注册"):
        assert label in html, label
    assert "这不是克隆：这是引擎自带的声音" in html  # the script's strings, translated on the page

    response = staff_client.post(try_url(speaker.pk), {"text": services.TRY_SENTENCES["en"]})
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "audio/wav"
    # On this CPU host Piper speaks English in its own voice: the answer says it did not clone.
    assert (response["X-TTS-Engine"], response["X-TTS-Voice"], response["X-TTS-Clones"]) == (
        "piper",
        "en_US-joe-medium",
        "false",
    )
    rate, frames, samples = wav_of(response)
    assert rate == 22050 and frames / rate > 1.5
    assert float(response["X-Duration"]) == pytest.approx(frames / rate, abs=0.001)
    assert rms(samples) > 1000
    # Not a clone: the speaker's clone status is left as it was.
    assert Speaker.objects.get(pk=speaker.pk).cloned_at is None


def test_a_chinese_speaker_is_tried_with_a_chinese_sentence(staff_client, job_path, user, make_speaker):
    speaker = make_speaker(user, prompt_text="你好，我是安娜。")
    assert services.speaker_try_sentence(speaker) == services.TRY_SENTENCES["zh"]
    assert services.TRY_SENTENCES["zh"] in staff_client.get(f"{SPEAKERS}{speaker.pk}/change/").content.decode()
    response = staff_client.post(try_url(speaker.pk), {"text": "今天天气很好。"})
    assert response.status_code == 200, response.content[:300]
    assert response["X-TTS-Language"] == "zh" and response["X-TTS-Clones"] == "false"
    assert rms(wav_of(response)[2]) > 500


def test_an_unknown_speaker_is_404(staff_client):
    assert staff_client.post(try_url(999999), {"text": "Hello."}).status_code == 404
    assert staff_client.post(f"{SPEAKERS}999999/reregister/").status_code == 404


def test_non_staff_and_anonymous_are_sent_to_the_admin_login(client, user, make_speaker):
    speaker = make_speaker(user)
    anonymous = client.post(try_url(speaker.pk), {"text": "Hello."})
    client.force_login(user)  # even the speaker's owner: the admin is for staff
    for response in (anonymous, client.post(try_url(speaker.pk), {"text": "Hello."})):
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
        assert response["Content-Type"] != "audio/wav"
    assert client.post(f"{SPEAKERS}{speaker.pk}/reregister/").status_code == 302


def test_staff_who_may_only_view_speakers_are_refused(make_staff, user, make_speaker):
    speaker = make_speaker(user)
    services.speaker_clone_record(speaker_id=speaker.pk, version=speaker.voice_version, engine="cosyvoice2")
    viewer = login(make_staff("view_speaker"))
    assert viewer.post(try_url(speaker.pk), {"text": "Hello."}).status_code == 403
    assert viewer.post(try_url(999999), {"text": "Hello."}).status_code == 403  # 403 first: ids cannot be probed
    assert viewer.post(f"{SPEAKERS}{speaker.pk}/reregister/").status_code == 403
    assert Speaker.objects.get(pk=speaker.pk).cloned_at is not None
    html = viewer.get(f"{SPEAKERS}{speaker.pk}/change/").content.decode()
    assert "mm-try-voice" not in html and "mm-reregister" not in html
    assert 'value="try_voice"' not in viewer.get(SPEAKERS).content.decode()  # nor the list action


def test_only_post_is_answered(staff_client, user, make_speaker):
    speaker = make_speaker(user)
    assert staff_client.get(try_url(speaker.pk), {"text": "Hello."}).status_code == 405
    assert staff_client.get(f"{SPEAKERS}{speaker.pk}/reregister/").status_code == 405


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("   ", "tts_empty_text", "请写一句要朗读的话。"),
        ("长" * 5001, "tts_text_too_long", "这句话超过了 5000 个字符。"),
    ],
    ids=["empty", "too-long"],
)
def test_a_bad_sentence_is_a_400_in_the_staff_members_language(
    staff_client, settings, user, make_speaker, text, code, message
):
    settings.TTS_MAX_CHARS = 5000
    speaker = make_speaker(user)
    response = staff_client.post(try_url(speaker.pk), {"text": text})
    assert response.status_code == 400
    assert response.json() == {"error": {"code": code, "message": message}}


def test_tries_share_the_tts_routes_rate_limit(staff_client, settings, user, make_speaker):
    settings.RATELIMIT_TTS = "2/m"
    speaker = make_speaker(user)
    for _ in range(2):  # an empty sentence still counts, as a rejected request does on the API
        assert staff_client.post(try_url(speaker.pk), {"text": ""}).status_code == 400
    limited = staff_client.post(try_url(speaker.pk), {"text": "Hello."}, HTTP_ACCEPT="audio/wav, application/json")
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "rate_limited"
    # One counter with POST /api/tts: the staff member's budget there is spent too.
    api = staff_client.post("/api/tts", json.dumps({"text": "Hello."}), content_type="application/json")
    assert api.status_code == 429


def test_the_list_action_opens_a_try_form_per_speaker(staff_client, user, other_user, make_speaker):
    anna = make_speaker(user, name="Anna", prompt_text="你好，我是安娜。")
    bob = make_speaker(other_user, name="Bob", prompt_text=ENGLISH)
    changelist = staff_client.get(SPEAKERS).content.decode()
    assert '<option value="try_voice">试听这个声音</option>' in changelist
    response = staff_client.post(SPEAKERS, {"action": "try_voice", "_selected_action": [anna.pk, bob.pk]})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('<form class="mm-try-voice') == 2
    for speaker in (anna, bob):
        assert f'action="{try_url(speaker.pk)}"' in html
    assert services.TRY_SENTENCES["zh"] in html and services.TRY_SENTENCES["en"] in html
    assert "试听这个声音：Anna" in html and "返回说话人列表" in html
    assert 'src="/static/js/admin/try_voice.js"' in html


def test_the_reregister_button(staff_client, user, make_speaker):
    speaker = make_speaker(user)
    services.speaker_clone_record(speaker_id=speaker.pk, version=speaker.voice_version, engine="cosyvoice2")
    html = staff_client.get(f"{SPEAKERS}{speaker.pk}/change/").content.decode()
    assert f'action="{SPEAKERS}{speaker.pk}/reregister/"' in html and "已于" in html
    response = staff_client.post(f"{SPEAKERS}{speaker.pk}/reregister/", follow=True)
    assert response.redirect_chain == [(f"{SPEAKERS}{speaker.pk}/change/", 302)]
    page = response.content.decode()
    assert "1 个说话人将在克隆引擎下次用其声音说话时重新注册。" in page
    fresh = Speaker.objects.get(pk=speaker.pk)
    assert fresh.cloned_at is None and fresh.voice_version != speaker.voice_version


def test_reregister_service_counts_and_resets(user, make_speaker):
    speakers = [make_speaker(user, name=name) for name in "AB"]
    for speaker in speakers:
        services.speaker_clone_record(speaker_id=speaker.pk, version=speaker.voice_version, engine="cosyvoice2")
    assert services.speakers_reregister(speaker_ids=[s.pk for s in speakers]) == 2
    assert not Speaker.objects.filter(cloned_at__isnull=False).exists()


def test_the_problems_filter(staff_client, user, make_speaker):
    make_speaker(user, name="Clean", audio=reference_wav(seconds=4.0))
    make_speaker(user, name="Short", audio=reference_wav(seconds=1.5))
    old = make_speaker(user, name="Old", audio=reference_wav(seconds=4.0))
    Speaker.objects.filter(pk=old.pk).update(source_sample_rate=0, audio_problems=[])  # added before the checks

    def listed(value):
        html = staff_client.get(SPEAKERS, {"problems": value}).content.decode()
        return {name for name in ("Clean", "Short", "Old") if f">{name}</a>" in html}

    assert listed("yes") == {"Short"}
    assert listed("no") == {"Clean"}
    assert listed("unchecked") == {"Old"}
    html = staff_client.get(SPEAKERS).content.decode()
    for label in ("有问题", "没有问题", "未检查"):
        assert label in html, label
