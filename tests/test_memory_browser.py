"""The profile page's companion and memory controls in a real browser (the fixtures and helpers of
tests/conftest.py and tests/test_browser.py): the persona editor, a voice's own persona, a fact
learnt in a conversation, forgetting everything and memory off; each checked where it matters, in
the LLM request of the next chat turn (the fake LLM records every request). Listing, editing and
deleting memories is tests/test_browser.py::test_profile_page_lists_edits_and_deletes_memories.

The test settings turn memory off (its background job would race other tests' scripted replies):
the memory tests here use a daphne of their own with memory on (memory/tests/settings_memory_on.py),
on the embedded default (a SQLite file of its own, the job in the server's process), so no job
outlives a test's database."""

import pytest

from devtools.fake_llm import Reply
from devtools.localprocs import migrate

from .conftest import WAIT_MS, _embedded_env, browser_test_module, live_daphne
from .test_browser import api_add_speaker, open_new_chat, register, screenshot, send, wait_idle, wait_until

expect, pytestmark = browser_test_module()

PROFILE = "/accounts/profile/"


def chat_turn_system_message(page, fake_llm_server, text, answer):
    """Type `text` in a new conversation; the system message of the turn's (streamed) LLM request."""
    open_new_chat(page)
    before = len(fake_llm_server.requests)
    fake_llm_server.queue(Reply(answer))
    send(page, text)
    expect(page.locator(".msg-assistant .msg-text")).to_contain_text(answer)
    wait_idle(page)
    streamed = [body for body in fake_llm_server.requests[before:] if body.get("stream")]
    assert len(streamed) == 1, streamed
    system = streamed[0]["messages"][0]
    assert system["role"] == "system"
    return system["content"]


def persona_url(speaker_id):
    return lambda response: response.url.endswith(f"/api/speakers/{speaker_id}/persona")


def save_persona(page, **fields):
    button = page.locator("#persona-form button[type=submit]")
    expect(button).to_be_enabled()  # the saved persona is shown (typing before would be overwritten)
    for name, value in fields.items():
        page.fill(f"#persona-form [name={name}]", value)
    page.click("#persona-form button[type=submit]")
    expect(page.locator("#persona-status")).to_have_attribute("data-tone", "success")


def test_edit_the_persona_and_the_next_turn_carries_it(page, fake_llm_server):
    register(page)
    page.goto(PROFILE)
    name = page.locator("#persona-name")
    # Blank fields show the defaults, in the interface's language (Chinese here).
    expect(name).to_have_attribute("placeholder", "魔镜")
    expect(name).to_have_value("")
    expect(page.locator("#persona-personality")).not_to_have_attribute("placeholder", "")
    assert page.locator("label.field", has=name).inner_text().strip()  # the input has a visible label

    save_persona(page, name="小月", personality="爱讲冷笑话", address="叫我阿明")
    screenshot(page, "profile-persona")
    page.reload()
    expect(name).to_have_value("小月")  # saved on the server
    expect(page.locator("#persona-address")).to_have_value("叫我阿明")
    settings = page.request.get("/api/settings").json()
    assert settings["persona"] == {"name": "小月", "personality": "爱讲冷笑话", "address": "叫我阿明"}

    system = chat_turn_system_message(page, fake_llm_server, "你好，你是谁？", "我是小月。")
    assert "你的名字：小月。" in system and "你的性格：爱讲冷笑话。" in system and "称呼用户：叫我阿明。" in system
    assert "魔镜" not in system

    # Emptied, the name goes back to the default.
    page.goto(PROFILE)
    save_persona(page, name="")
    system = chat_turn_system_message(page, fake_llm_server, "再说一次你的名字", "我是魔镜。")
    assert "你的名字：魔镜。" in system and "称呼用户：叫我阿明。" in system


def test_a_voice_gets_its_own_persona_over_the_users(page, fake_llm_server):
    register(page)
    speaker_id = api_add_speaker(page, "Alpha")  # the first voice becomes the current one
    page.goto(PROFILE)
    save_persona(page, name="小月", personality="爱讲冷笑话")

    item = page.locator("li.speaker[data-name=Alpha]")
    own = item.locator("details.speaker-persona")
    with page.expect_response(persona_url(speaker_id)) as loaded:
        own.locator("summary").click()  # opened, it reads the voice's persona from the server
    assert loaded.value.ok
    expect(own).to_have_attribute("open", "")
    own_name = own.locator("[name=name]")
    expect(own_name).to_have_attribute("placeholder", "小月")  # empty: the user's persona
    expect(own_name).to_have_value("")
    own_name.fill("阿尔法")
    own.locator("button[type=submit]").click()
    expect(own.locator(".status")).to_have_attribute("data-tone", "success")
    screenshot(page, "profile-voice-persona")
    answer = page.request.get(f"/api/speakers/{speaker_id}/persona").json()
    assert answer == {"name": "阿尔法", "personality": "", "address": ""}

    page.reload()  # the saved override is read back into the form when it is opened
    with page.expect_response(persona_url(speaker_id)):
        own.locator("summary").click()
    expect(own_name).to_have_value("阿尔法")

    system = chat_turn_system_message(page, fake_llm_server, "你叫什么名字？", "我叫阿尔法。")
    assert "你的名字：阿尔法。" in system and "你的性格：爱讲冷笑话。" in system  # the rest: the user's
    assert "小月" not in system


@pytest.fixture(scope="module")
def memory_server(live_browser_server, fake_llm_server, tmp_path_factory):
    """http://127.0.0.1:<port> of a live daphne with memory on (embedded default, its own SQLite file)."""
    directory = tmp_path_factory.mktemp("memory-server")
    env = _embedded_env(fake_llm_server, directory / "db.sqlite3")
    env["DJANGO_SETTINGS_MODULE"] = "memory.tests.settings_memory_on"
    migrate(env)
    with live_daphne(env, directory) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def memory_page(page, memory_server):
    """A page of the `page` fixture's browser (a context of its own) on the memory-on server."""
    context = page.context.browser.new_context(
        base_url=memory_server, locale="zh-CN", viewport={"width": 1280, "height": 900}, permissions=["microphone"]
    )
    context.set_default_timeout(WAIT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def memory_texts(page):
    response = page.request.get("/api/memories")
    assert response.ok, response.text()
    return [memory["text"] for memory in response.json()["memories"]]


def add_memory(page, text):
    page.fill("#memory-text", text)
    page.click("#memory-form button[type=submit]")
    expect(page.locator("#memory-list .memory-text", has_text=text)).to_be_visible()


def test_a_fact_is_learnt_shown_forgotten_and_memory_off_sends_none(memory_page, fake_llm_server):
    page = memory_page
    register(page)
    page.goto(PROFILE)
    enabled = page.locator("#memory-enabled")
    expect(enabled).to_be_checked()
    add_memory(page, "有一只猫")

    # The turn recalls what the user added; its background job learns a new fact from it.
    learnt = {"add": ["周末想去爬山"], "update": [], "remove": [], "confirm": []}
    fake_llm_server.queue_structured("memory_update", learnt)
    system = chat_turn_system_message(page, fake_llm_server, "我周末想去爬山。", "好主意！")
    assert "<memories>" in system and "- 有一只猫" in system
    assert fake_llm_server.wait_for_structured("memory_update", 1, timeout=WAIT_MS / 1000)
    wait_until(page, lambda: "周末想去爬山" in memory_texts(page), message="the learnt fact saved")
    page.goto(PROFILE)
    expect(page.locator("#memory-list .memory-text")).to_have_text(["有一只猫", "周末想去爬山"])
    system = chat_turn_system_message(page, fake_llm_server, "周末去哪儿好？", "去爬山吧。")
    assert "- 周末想去爬山" in system

    page.goto(PROFILE)
    expect(page.locator("#memory-list .memory-text")).to_have_count(2)
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#memory-forget-all")
    expect(page.locator("#memory-empty")).to_be_visible()
    expect(page.locator("#memory-list .memory-text")).to_have_count(0)
    assert memory_texts(page) == []
    screenshot(page, "profile-memories-forgotten")
    system = chat_turn_system_message(page, fake_llm_server, "周末去哪儿好？", "你想去哪儿？")
    assert "<memories>" not in system and "有一只猫" not in system and "周末想去爬山" not in system

    page.goto(PROFILE)
    add_memory(page, "女儿在上海读大学")
    with page.expect_response(lambda r: r.url.endswith("/api/settings") and r.request.method == "PATCH") as saved:
        enabled.uncheck()
    assert saved.value.ok
    page.reload()
    expect(enabled).not_to_be_checked()  # saved
    expect(page.locator("#memory-list .memory-text")).to_have_text(["女儿在上海读大学"])  # kept, not sent
    system = chat_turn_system_message(page, fake_llm_server, "我女儿在哪里读书？", "我不知道。")
    assert "<memories>" not in system and "上海" not in system
