"""The speaker and chat admin in the staff member's language, clone status and recording problems."""

import re
import subprocess
from pathlib import Path

import pytest
from django.test import Client

from speakers import services
from speakers.models import Speaker

from .conftest import reference_wav, wav_upload

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
SPEAKERS = "/admin/speakers/speaker/"


def test_the_catalogue_translates_every_string_of_these_apps(tmp_path):
    # Note: a helper of issue 14 adds UserSettings strings ("I speak") that they translate themselves.
    sources = [
        str(p.relative_to(ROOT))
        for app in ("speakers", "chat")
        for p in sorted((ROOT / app).rglob("*.py"))
        if "tests" not in p.parts and "migrations" not in p.parts
    ]
    pot = tmp_path / "apps.pot"
    subprocess.run(
        [
            "xgettext",
            "-L",
            "Python",
            "--from-code=UTF-8",
            "-o",
            str(pot),
            "--keyword=gettext_lazy",
            "--keyword=ngettext:1,2",
            "--keyword=_",
            *sources,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    # msgcmp fails for every msgid of the sources that the catalogue lacks or leaves untranslated/fuzzy.
    result = subprocess.run(["msgcmp", str(PO), str(pot)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def zh_admin(admin_user):
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-CN")
    client.force_login(admin_user)
    return client


@pytest.mark.django_db
def test_the_speaker_pages_read_in_chinese(zh_admin, user, make_speaker):
    speaker = make_speaker(user, audio=reference_wav(seconds=1.5))
    html = zh_admin.get(SPEAKERS).content.decode()
    for label in (
        "说话人",
        "所有者",
        "位置",
        "语言",
        "克隆状态",
        "问题",
        "时长与采样率",
        "未注册",
        "在引擎中重新注册",
        "中文",
    ):
        assert label in html, label
    assert "太短：1.5 秒" in html  # the problem found when the recording was checked
    change = zh_admin.get(f"{SPEAKERS}{speaker.pk}/change/").content.decode()
    for label in ("提示文本", "参考音频", "录音与克隆", "选择一个文件以替换当前录音。"):
        assert label in change, label
    # One field: the player of the recording beside the upload (the other <audio> is try-a-voice's).
    assert change.count(f'src="{SPEAKERS}{speaker.pk}/audio/"') == 1
    assert change.count("<audio") == 2 and 'class="mm-try-audio"' in change
    assert "聊天" in zh_admin.get("/admin/").content.decode()


@pytest.mark.django_db
def test_validation_errors_are_in_chinese(zh_admin, user):
    response = zh_admin.post(
        f"{SPEAKERS}add/",
        {"owner": user.pk, "name": "A", "prompt_text": "你好", "upload": wav_upload(reference_wav(seconds=0.3))},
    )
    assert "参考音频至少要 1 秒长。" in response.content.decode()
    assert not Speaker.objects.exists()


@pytest.mark.django_db
def test_clone_status_follows_the_recording(user, make_speaker):
    speaker = make_speaker(user)
    assert not services.speaker_is_registered(speaker)
    assert services.speaker_clone_record(speaker_id=speaker.pk, version=speaker.voice_version, engine="cosyvoice2")
    assert not services.speaker_clone_record(speaker_id=speaker.pk, version=speaker.voice_version, engine="cosyvoice2")
    speaker.refresh_from_db()
    assert services.speaker_is_registered(speaker) and speaker.clone_engine == "cosyvoice2"
    # A stale version is never recorded; a new recording clears the status.
    assert not services.speaker_clone_record(speaker_id=speaker.pk, version="old", engine="cosyvoice2")
    updated = services.speaker_update(user=user, speaker_id=speaker.pk, audio_data=reference_wav(seconds=2.0))
    assert updated.cloned_at is None and updated.voice_version != speaker.voice_version
    # Re-registering gives a new version, so the engine registers it afresh.
    before = updated.voice_version
    reset = services.speaker_clone_reset(speaker_id=speaker.pk)
    assert reset.voice_version != before and reset.cloned_at is None


@pytest.mark.django_db
def test_reregister_action(zh_admin, user, make_speaker):
    speaker = make_speaker(user)
    services.speaker_clone_record(speaker_id=speaker.pk, version=speaker.voice_version, engine="cosyvoice2")
    assert "已于" in zh_admin.get(SPEAKERS).content.decode()
    response = zh_admin.post(SPEAKERS, {"action": "reregister", "_selected_action": [speaker.pk]}, follow=True)
    assert "1 个说话人将在克隆引擎下次用其声音说话时重新注册。" in response.content.decode()
    assert Speaker.objects.get(pk=speaker.pk).cloned_at is None
    assert "已于" not in zh_admin.get(SPEAKERS, {"registered": "yes"}).content.decode()


@pytest.mark.parametrize(
    ("audio", "problems"),
    [
        (reference_wav(seconds=4.0), []),
        (reference_wav(seconds=4.0, amplitude=1.5), ["clipped"]),
        (reference_wav(seconds=4.0, rate=16000), ["low_sample_rate"]),
        (reference_wav(seconds=2.0), ["short"]),
    ],
    ids=["clean", "clipped", "16k", "short"],
)
def test_problems_found_at_validation(audio, problems):
    assert services.reference_audio_problems(services.reference_audio_prepare(data=audio)) == problems


def test_mostly_silence_is_a_problem():
    import numpy as np

    from voice.tests.samples import tone, wav

    audio = wav([np.concatenate([tone(1.0, 24000, 220.0, 0.4), tone(3.0, 24000, 220.0, 0.0)])], 24000)
    assert "silence" in services.reference_audio_problems(services.reference_audio_prepare(data=audio))


def test_non_staff_get_no_admin(client, user):
    client.force_login(user)
    response = client.get(SPEAKERS)
    assert response.status_code == 302 and re.match(r"/admin/login/", response["Location"])
