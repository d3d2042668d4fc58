import os
import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction

from chat.models import Conversation, Message
from speakers import services
from speakers.models import Speaker, UserSettings

from .conftest import reference_wav, stored_files

pytestmark = pytest.mark.django_db


def test_chinese_and_emoji_round_trip(user, make_speaker):
    name = "小雨🌧️"
    prompt = "今天天气真好，我们去公园散步吧！😀👍 «quotes» and 𠀋 (a 4-byte CJK character)."
    speaker = make_speaker(user, name=name, prompt_text=prompt)
    fresh = Speaker.objects.get(pk=speaker.pk)
    assert fresh.name == name
    assert fresh.prompt_text == prompt
    # Looked up by the 4-byte characters too, not only read back.
    assert Speaker.objects.filter(owner=user, prompt_text__contains="😀👍").get() == fresh


def test_first_speaker_is_slot_one_and_current(user, make_speaker):
    first = make_speaker(user, name="A")
    second = make_speaker(user, name="B")
    assert (first.slot, second.slot) == (1, 2)
    assert UserSettings.objects.get(user=user).current_speaker == first
    assert first.audio.name.startswith(f"speakers/{user.pk}/") and first.audio.name.endswith(".wav")
    assert os.path.exists(first.audio.path)


def test_a_freed_slot_is_reused(user, make_speaker):
    speakers = [make_speaker(user, name=n) for n in "ABC"]
    services.speaker_delete(user=user, speaker_id=speakers[1].pk)
    again = make_speaker(user, name="D")
    assert again.slot == 2
    assert sorted(Speaker.objects.filter(owner=user).values_list("slot", flat=True)) == [1, 2, 3]


def test_service_refuses_a_fourth_speaker(user, make_speaker):
    for n in "ABC":
        make_speaker(user, name=n)
    with pytest.raises(services.SpeakerLimitReached) as excinfo:
        make_speaker(user, name="D")
    assert excinfo.value.code == "speaker_limit" and excinfo.value.status_code == 409
    assert Speaker.objects.filter(owner=user).count() == 3
    assert len(stored_files(user)) == 3  # no file left behind by the refused one


def test_other_users_have_their_own_three(user, other_user, make_speaker):
    for n in "ABC":
        make_speaker(user, name=n)
    # Same names, same slots, another owner: allowed.
    for n in "ABC":
        make_speaker(other_user, name=n)
    assert Speaker.objects.filter(owner=other_user).count() == 3


def _direct(owner, slot, name):
    return Speaker.objects.create(owner=owner, slot=slot, name=name, prompt_text="x", audio="speakers/x.wav")


@pytest.mark.parametrize("slot", [4, 0])
def test_database_refuses_a_slot_outside_one_to_three(user, slot):
    for n, s in (("A", 1), ("B", 2), ("C", 3)):
        _direct(user, s, n)
    with pytest.raises(IntegrityError), transaction.atomic():
        _direct(user, slot, "D")
    assert Speaker.objects.filter(owner=user).count() == 3


def test_database_refuses_a_duplicate_slot(user):
    _direct(user, 1, "A")
    with pytest.raises(IntegrityError), transaction.atomic():
        _direct(user, 1, "B")
    assert list(Speaker.objects.filter(owner=user).values_list("name", flat=True)) == ["A"]


def test_database_refuses_a_duplicate_name(user, other_user):
    _direct(user, 1, "Anna")
    with pytest.raises(IntegrityError), transaction.atomic():
        _direct(user, 2, "Anna")
    _direct(other_user, 1, "Anna")  # another owner may use it
    assert Speaker.objects.filter(name="Anna").count() == 2


@pytest.mark.services_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_stop_at_three(user):
    audio = reference_wav()
    threads_n = 6
    barrier = threading.Barrier(threads_n)
    results = [None] * threads_n

    def worker(i):
        try:
            barrier.wait(timeout=30)
            speaker = services.speaker_create(user=user, name=f"voice {i}", prompt_text="同时创建", audio_data=audio)
            results[i] = ("ok", speaker.slot)
        except services.SpeakerLimitReached:
            results[i] = ("limit", None)
        except Exception as exc:  # reported in the assertion below
            results[i] = ("error", repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    outcomes = sorted(r[0] for r in results)
    assert outcomes == ["limit"] * 3 + ["ok"] * 3, results
    assert sorted(r[1] for r in results if r[0] == "ok") == [1, 2, 3]
    assert sorted(Speaker.objects.filter(owner=user).values_list("slot", flat=True)) == [1, 2, 3]
    assert len(stored_files(user)) == 3  # the refused ones left no file behind
    assert UserSettings.objects.filter(user=user).count() == 1
    assert UserSettings.objects.get(user=user).current_speaker.owner_id == user.pk


@pytest.mark.services_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_with_one_name_make_one_speaker(user):
    audio = reference_wav()
    threads_n = 4
    barrier = threading.Barrier(threads_n)
    results = [None] * threads_n

    def worker(i):
        try:
            barrier.wait(timeout=30)
            services.speaker_create(user=user, name="Same", prompt_text="同名", audio_data=audio)
            results[i] = "ok"
        except services.ApplicationError as exc:
            results[i] = exc.code
        except Exception as exc:  # reported in the assertion below
            results[i] = repr(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["duplicate_name"] * 3 + ["ok"], results
    assert Speaker.objects.filter(owner=user).count() == 1
    assert len(stored_files(user)) == 1


def _voice_conversation(user, speaker):
    conversation = Conversation.objects.create(owner=user, title="对话")
    Message.objects.create(conversation=conversation, role="user", content="你好")
    reply = Message.objects.create(
        conversation=conversation, role="assistant", content="你好呀", source="voice", speaker=speaker
    )
    return conversation, reply


def test_deleting_a_user_cascades_to_rows_and_files(user, other_user, make_speaker, django_capture_on_commit_callbacks):
    speakers = [make_speaker(user, name=n) for n in ("A", "B")]
    conversation, _reply = _voice_conversation(user, speakers[0])
    services.user_settings_update(user=user, input_mode="handsfree")
    kept_speaker = make_speaker(other_user, name="A")
    kept_conversation, _kept_reply = _voice_conversation(other_user, kept_speaker)
    paths = [s.audio.path for s in speakers]
    assert all(os.path.exists(p) for p in paths)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        get_user_model().objects.get(pk=user.pk).delete()

    assert len(callbacks) == 2  # the two speakers' recordings
    assert not Speaker.objects.filter(owner_id=user.pk).exists()
    assert not Conversation.objects.filter(owner_id=user.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()
    assert not UserSettings.objects.filter(user_id=user.pk).exists()
    assert [os.path.exists(p) for p in paths] == [False, False]
    # The other user's rows and files are untouched.
    assert Speaker.objects.get(pk=kept_speaker.pk).audio.name == kept_speaker.audio.name
    assert os.path.exists(kept_speaker.audio.path)
    assert Message.objects.filter(conversation=kept_conversation).count() == 2
    assert UserSettings.objects.get(user=other_user).current_speaker_id == kept_speaker.pk


@pytest.mark.django_db(transaction=True)
def test_deleting_a_user_removes_files_after_commit(user, make_speaker):
    speaker = make_speaker(user)
    _voice_conversation(user, speaker)
    paths = [speaker.audio.path]

    with transaction.atomic():
        get_user_model().objects.filter(pk=user.pk).delete()
        # Not yet committed: the files are still there.
        assert all(os.path.exists(p) for p in paths)
    assert not any(os.path.exists(p) for p in paths)
    assert Speaker.objects.count() == 0 and Message.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_delete_keeps_the_files(user, make_speaker):
    speaker = make_speaker(user)
    with pytest.raises(RuntimeError), transaction.atomic():
        get_user_model().objects.get(pk=user.pk).delete()
        raise RuntimeError("roll back")
    assert os.path.exists(speaker.audio.path)
    assert Speaker.objects.get(pk=speaker.pk).audio.name == speaker.audio.name
    assert UserSettings.objects.get(user=user).current_speaker_id == speaker.pk


def test_deleting_the_current_speaker_sets_it_null(user, make_speaker, django_capture_on_commit_callbacks):
    current = make_speaker(user, name="A")
    other = make_speaker(user, name="B")
    _, reply = _voice_conversation(user, current)
    path = current.audio.path
    assert UserSettings.objects.get(user=user).current_speaker_id == current.pk

    with django_capture_on_commit_callbacks(execute=True):
        services.speaker_delete(user=user, speaker_id=current.pk)

    user_settings = UserSettings.objects.get(user=user)
    assert user_settings.current_speaker_id is None
    assert user_settings.input_mode == "ptt"  # the row itself stays
    # Messages spoken in that voice stay, without it; the other speaker is untouched.
    reply.refresh_from_db()
    assert reply.speaker_id is None and reply.content == "你好呀"
    assert Speaker.objects.filter(owner=user).get() == other
    assert not os.path.exists(path)
    assert os.path.exists(other.audio.path)


def test_deleting_a_non_current_speaker_keeps_the_current_one(user, make_speaker):
    current = make_speaker(user, name="A")
    other = make_speaker(user, name="B")
    services.speaker_delete(user=user, speaker_id=other.pk)
    assert UserSettings.objects.get(user=user).current_speaker_id == current.pk


def test_speaker_file_is_deleted_only_on_commit(user, make_speaker, django_capture_on_commit_callbacks):
    speaker = make_speaker(user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.speaker_delete(user=user, speaker_id=speaker.pk)
    assert len(callbacks) == 1
    assert os.path.exists(speaker.audio.path)
    callbacks[0]()
    assert not os.path.exists(speaker.audio.path)


def test_names_are_unique_per_user_ignoring_case(user, make_speaker):
    make_speaker(user, name="Anna")
    with pytest.raises(services.ApplicationError) as excinfo:
        make_speaker(user, name="ANNA")
    assert excinfo.value.code == "duplicate_name" and excinfo.value.status_code == 409
    assert list(Speaker.objects.filter(owner=user).values_list("name", flat=True)) == ["Anna"]


def test_names_differing_only_by_emoji_are_distinct(user, make_speaker):
    make_speaker(user, name="猫🐱")
    make_speaker(user, name="猫🐶")
    assert sorted(Speaker.objects.filter(owner=user).values_list("name", flat=True)) == ["猫🐱", "猫🐶"]
