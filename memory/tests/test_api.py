"""The memory API, the persona in /api/settings, the export; recall and parsing on their own."""

import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from memory.models import Memory, MemoryProfile, SpeakerPersona
from memory.recall import Candidate, recall, terms
from memory.structured import memory_changes

pytestmark = pytest.mark.django_db


def test_add_list_edit_delete_forget_all(api, user, settings):
    settings.MEMORY_ENABLED = True  # off in the test settings
    created = api.post("/api/memories", {"text": "  喜欢  爬山 "}, content_type="application/json")
    assert created.status_code == 201 and created.json()["text"] == "喜欢 爬山"
    assert created.json()["source"] == "user"
    listed = api.get("/api/memories").json()
    assert [m["text"] for m in listed["memories"]] == ["喜欢 爬山"] and listed["enabled"] is True
    pk = created.json()["id"]
    edited = api.patch(f"/api/memories/{pk}", {"text": "喜欢徒步"}, content_type="application/json")
    assert edited.status_code == 200 and edited.json()["text"] == "喜欢徒步"
    assert (
        api.post("/api/memories", {"text": "喜欢徒步"}, content_type="application/json").json()["error"]["code"]
        == "duplicate_memory"
    )
    assert api.delete(f"/api/memories/{pk}").status_code == 204
    api.post("/api/memories", {"text": "有一只猫"}, content_type="application/json")
    assert api.post("/api/memories/forget_all").json() == {"deleted": 1}
    assert not Memory.objects.filter(owner=user).exists()


@pytest.mark.parametrize(("text", "code"), [("   ", "invalid_memory"), ("x" * 201, "memory_too_long")])
def test_bad_text_is_a_clear_400(api, text, code):
    response = api.post("/api/memories", {"text": text}, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == code


def test_another_users_memory_is_404(api, other_user):
    theirs = Memory.objects.create(owner=other_user, text="叫小红", confirmed_at=timezone.now())
    assert api.patch(f"/api/memories/{theirs.pk}", {"text": "x"}, content_type="application/json").status_code == 404
    assert api.delete(f"/api/memories/{theirs.pk}").status_code == 404
    assert api.get("/api/memories").json()["memories"] == []
    api.post("/api/memories/forget_all")
    assert Memory.objects.filter(pk=theirs.pk).exists()


def test_memory_switch_and_persona_in_settings(api, settings):
    settings.LANGUAGE_CODE = "zh-hans"
    settings.MEMORY_ENABLED = True
    got = api.get("/api/settings").json()
    assert got["memory_enabled"] is True and got["persona"] == {"name": "", "personality": "", "address": ""}
    assert got["persona_defaults"]["name"] == "魔镜"
    patched = api.patch(
        "/api/settings", {"memory_enabled": False, "persona": {"name": " 小白 "}}, content_type="application/json"
    ).json()
    assert patched["memory_enabled"] is False and patched["persona"]["name"] == "小白"
    assert api.get("/api/memories").json()["enabled"] is False
    too_long = api.patch("/api/settings", {"persona": {"name": "x" * 41}}, content_type="application/json")
    assert too_long.status_code == 400


def test_export_has_all_my_data_and_nothing_of_others(api, user, other_user):
    Memory.objects.create(owner=user, text="叫小明", confirmed_at=timezone.now())
    Memory.objects.create(owner=other_user, text="叫小红", confirmed_at=timezone.now())
    response = api.get("/api/export")
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    data = json.loads(response.content)
    assert data["account"]["username"] == user.username
    assert [m["text"] for m in data["memories"]] == ["叫小明"]
    assert "小红" not in response.content.decode()


def test_terms_are_chinese_bigrams_and_words():
    assert terms("女儿在上海") == {"女儿", "儿在", "在上", "上海"}
    assert terms("Likes Hiking!") == {"likes", "hiking"}


def test_recall_sends_all_while_they_fit_else_the_relevant_and_recent():
    now = timezone.now()
    memories = [
        Candidate(1, "喜欢爬山", now - timedelta(days=300)),
        Candidate(2, "女儿在上海读大学", now - timedelta(days=300)),
        Candidate(3, "对花粉过敏", now),
    ]
    assert recall(memories, ["你好"], budget=100, now=now) == memories
    picked = recall(memories, ["我下周去上海看女儿"], budget=15, now=now)
    assert [m.id for m in picked] == [2, 3]  # the relevant one, then the fresh one


def test_memory_changes_parsing():
    assert memory_changes('{"add": ["a"]}').add == ["a"]
    assert memory_changes("no json") is None
    assert memory_changes('{"add": "a"}') is None


def test_the_companion_is_named_by_the_persona_alone(user):
    """The default system prompt names no one: the persona's name (default in the user's language) is
    the only one in the request."""
    from chat.selectors import llm_messages

    def system(text):
        return llm_messages(conversation=None, pending_user_text=text, user=user)[0]["content"]

    assert "你的名字：魔镜。" in system("你是谁？") and "MagicMirror" not in system("你是谁？")
    assert "Your name: MagicMirror." in system("Who are you?") and "魔镜" not in system("Who are you?")
    MemoryProfile.objects.create(user=user, persona_name="小白")
    named = system("你是谁？")
    assert "你的名字：小白。" in named and "MagicMirror" not in named and "魔镜" not in named


def _speaker(owner, name="Anna"):
    from speakers.models import Speaker

    return Speaker.objects.create(owner=owner, slot=1, name=name, prompt_text="x", audio="speakers/x.wav")


def test_a_voices_own_persona(api, user):
    speaker = _speaker(user)
    url = f"/api/speakers/{speaker.pk}/persona"
    assert api.get(url).json() == {"name": "", "personality": "", "address": ""}  # none yet: all blank
    assert not SpeakerPersona.objects.exists()  # reading saves nothing
    patched = api.patch(url, {"name": " 阿尔法 ", "personality": "爱讲冷笑话"}, content_type="application/json")
    assert patched.status_code == 200
    assert patched.json() == {"name": "阿尔法", "personality": "爱讲冷笑话", "address": ""}
    # A field left out stays; "" goes back to the user's.
    patched = api.patch(url, {"personality": "", "address": "叫我阿明"}, content_type="application/json")
    assert patched.json() == {"name": "阿尔法", "personality": "", "address": "叫我阿明"}
    assert api.get(url).json() == patched.json()
    row = SpeakerPersona.objects.get(speaker=speaker)
    assert (row.name, row.personality, row.address) == ("阿尔法", "", "叫我阿明")


@pytest.mark.parametrize(("field", "limit"), [("name", 40), ("personality", 300), ("address", 100)])
def test_a_voices_persona_over_its_length_is_400_and_changes_nothing(api, user, field, limit):
    speaker = _speaker(user)
    url = f"/api/speakers/{speaker.pk}/persona"
    assert api.patch(url, {field: "x" * limit}, content_type="application/json").status_code == 200
    response = api.patch(url, {field: "y" * (limit + 1)}, content_type="application/json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"
    assert field in response.json()["error"]["fields"]
    assert api.get(url).json()[field] == "x" * limit


def test_another_users_voice_persona_is_404(api, other_user):
    theirs = _speaker(other_user, name="Theirs")
    url = f"/api/speakers/{theirs.pk}/persona"
    assert api.get(url).status_code == 404
    response = api.patch(url, {"name": "x" * 500}, content_type="application/json")  # 404 before 400
    assert response.status_code == 404 and response.json()["error"]["code"] == "speaker_not_found"
    assert api.get("/api/speakers/999999/persona").status_code == 404
    assert not SpeakerPersona.objects.exists()


def test_the_profile_pages_persona_limits_are_the_services():
    """The page's inputs (template and static/js/persona.js) stop at the limits the API enforces."""
    from pathlib import Path

    from django.conf import settings

    from memory.services import PERSONA_LIMITS

    root = Path(settings.BASE_DIR)
    script = (root / "static/js/persona.js").read_text()
    limits = re.search(r"PERSONA_MAX_CHARS = \{([^}]*)\}", script).group(1)
    assert {k: int(v) for k, v in re.findall(r"(\w+): (\d+)", limits)} == PERSONA_LIMITS
    template = (root / "templates/speakers/profile.html").read_text()
    for field, limit in PERSONA_LIMITS.items():
        assert re.search(rf'id="persona-{field}"[^>]* maxlength="{limit}"', template), field
