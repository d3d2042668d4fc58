"""The web app in a real browser: Debian's Chromium, driven by Playwright, with a fake microphone fed
from a fixture WAV, against a live daphne server (HTTP + the voice WebSocket), the fake LLM and the
CPU voice engines; with Redis and a real Celery worker when the run has them (see conftest.py).

Every test registers a fresh user through the UI. Screenshots land in var/test-artifacts/browser/."""

import json
import re
import time
import uuid

from devtools.fake_llm import Reply

from .conftest import ARTIFACTS, PASSWORD, SPEAKER_WAV, WAIT_MS, browser_test_module

expect, pytestmark = browser_test_module()


# --- Helpers ---------------------------------------------------------------------------------


def screenshot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def wait_until(page, condition, timeout=WAIT_MS / 1000, message="condition"):
    """Poll a Python-side condition (e.g. on recorded WebSocket frames), letting Playwright
    process its events in between."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        page.wait_for_timeout(100)


def register(page):
    """Register a fresh user through the UI; it lands on the chat page, logged in."""
    username = f"u{uuid.uuid4().hex[:10]}"
    page.goto("/accounts/register/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password1]", PASSWORD)
    page.fill("input[name=password2]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_selector("#chat-app")
    return username


def voice_ready(page):
    page.wait_for_function("Boolean(window.mmVoice && window.mmVoice.connected)")


def open_new_chat(page):
    if not page.locator("#chat-app").count():
        page.goto("/")
    toggle = page.locator("#sidebar-toggle")
    if toggle.is_visible() and toggle.get_attribute("aria-expanded") != "true":  # phone width: a drawer
        # The drawer opens once the page's modules have attached its handler (a click before that,
        # on a busy machine, does nothing): click again until it is open.
        def opened():
            if toggle.get_attribute("aria-expanded") == "true":
                return True
            toggle.click()
            return toggle.get_attribute("aria-expanded") == "true"

        wait_until(page, opened, message="the conversation drawer to open")
    page.click("#new-chat")
    voice_ready(page)


def send(page, text):
    page.fill("#message-input", text)
    page.press("#message-input", "Enter")


def stats(page):
    return page.evaluate("({...window.mmVoice.stats})")


def wait_played(page):
    page.wait_for_function("window.mmVoice.stats.chunksPlayed > 0")


def wait_idle(page):
    page.wait_for_function("window.mmVoice.state === 'idle'")


def wait_user_transcript(page):
    """The first non-empty user message (textContent: it may be scrolled out of view)."""
    handle = page.wait_for_function(
        "[...document.querySelectorAll('.msg-user .msg-text')].map(e => e.textContent.trim()).find(Boolean)"
    )
    return handle.json_value()


def record_frames(page):
    """JSON frames the page sends and receives on its WebSockets, from now on."""
    frames = {"sent": [], "received": []}

    def on_socket(ws):
        def keep(kind):
            def add(payload):
                if isinstance(payload, str):
                    frames[kind].append(json.loads(payload))

            return add

        ws.on("framesent", keep("sent"))
        ws.on("framereceived", keep("received"))

    page.on("websocket", on_socket)
    return frames


def csrf_headers(page):
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    return {"X-CSRFToken": token}


def api_add_speaker(page, name, prompt_text="Hello, how are you?"):
    """POST /api/speakers as the profile page's form does, with the browser's session."""
    response = page.request.post(
        "/api/speakers",
        headers=csrf_headers(page),
        multipart={
            "name": name,
            "prompt_text": prompt_text,
            "audio": {"name": "hello.wav", "mimeType": "audio/wav", "buffer": SPEAKER_WAV.read_bytes()},
        },
    )
    assert response.status == 201, response.text()
    return response.json()["id"]


def current_speaker_id(page):
    response = page.request.get("/api/settings")
    assert response.ok, response.text()
    return response.json()["current_speaker_id"]


# --- Tests -----------------------------------------------------------------------------------


def test_log_in_type_a_message_see_the_streamed_reply_and_the_title(page, fake_llm_server):
    fake_llm_server.queue(Reply("Hello! **Nice** to meet you.", tokens_per_s=20))
    username = register(page)
    page.click("form[action$='/logout/'] button[type=submit]")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_selector("#chat-app")
    assert page.evaluate("document.documentElement.lang") == "zh-hans"
    open_new_chat(page)
    send(page, "Hi there")
    expect(page.locator(".msg-assistant .msg-text")).to_contain_text("Nice to meet you")
    expect(page.locator(".msg-user .msg-text")).to_have_text("Hi there")
    expect(page.locator(".msg-assistant .msg-text strong")).to_have_text("Nice")  # the safe Markdown subset
    expect(page.locator("#chat-title")).to_have_text("测试标题")  # the automatic title
    expect(page.locator(".conversation.is-selected .conversation-link")).to_have_text("测试标题")
    expect(page).to_have_url(re.compile(r"[?&]c=\d+"))
    wait_played(page)  # the reply is spoken too (voice output is on by default)
    screenshot(page, "typed-message")


def test_push_to_talk_with_the_fake_microphone(page, fake_llm_server):
    fake_llm_server.queue(Reply("I heard you. This is my spoken answer.", tokens_per_s=20))
    register(page)
    open_new_chat(page)
    page.hover("#mic-button")
    page.mouse.down()
    expect(page.locator("#mic-button")).to_have_attribute("aria-pressed", "true", timeout=10_000)
    held_at = time.monotonic()
    page.wait_for_function("document.getElementById('voice-caption').textContent.trim()")  # live partial
    screenshot(page, "push-to-talk-partial")
    remaining = 3 - (time.monotonic() - held_at)
    if remaining > 0:
        page.wait_for_timeout(remaining * 1000)  # hold while the fixture speaks (2.6 s)
    page.mouse.up()
    assert wait_user_transcript(page)  # the final transcript
    expect(page.locator(".msg-assistant .msg-text")).to_contain_text("spoken answer")
    wait_played(page)  # the reply's audio played
    screenshot(page, "push-to-talk")
    wait_idle(page)


def test_hands_free_turn_without_pressing_anything(page, fake_llm_server):
    fake_llm_server.queue(Reply("Hands-free works.", tokens_per_s=20))
    register(page)
    open_new_chat(page)
    page.click("#handsfree-toggle")
    expect(page.locator("#handsfree-toggle")).to_have_attribute("aria-pressed", "true")
    # The fake microphone speaks, then falls silent: voice activity detection ends the utterance.
    assert wait_user_transcript(page)
    expect(page.locator(".msg-assistant .msg-text")).to_contain_text("Hands-free works")
    wait_played(page)
    screenshot(page, "hands-free")
    page.click("#handsfree-toggle")
    expect(page.locator("#handsfree-toggle")).to_have_attribute("aria-pressed", "false")


def test_interrupt_stops_playback_at_once(page, fake_llm_server):
    long_reply = " ".join(f"This is sentence number {i} of a very long answer." for i in range(40))
    fake_llm_server.queue(Reply(long_reply, tokens_per_s=60))
    register(page)
    open_new_chat(page)
    send(page, "Talk for a long time")
    wait_played(page)
    assert page.evaluate("window.mmVoice.state") == "speaking"
    screenshot(page, "speaking")
    # Click and read the counter in one go: nothing may play after the click.
    before = page.evaluate("document.getElementById('voice-stop').click(), window.mmVoice.stats.chunksPlayed")
    page.wait_for_function("window.mmVoice.state === 'idle'", timeout=10_000)
    page.wait_for_timeout(1500)  # not synchronisation: audio that was queued would have played by now
    assert stats(page)["chunksPlayed"] == before
    expect(page.locator("#voice-stop")).to_be_disabled()
    assert page.locator(".msg-assistant .msg-note").count()  # marked as interrupted


def test_switch_conversations(page, fake_llm_server):
    frames = record_frames(page)
    register(page)
    ids = []
    for question, answer in (
        ("Tell me about apples", "Apples are red."),
        ("Tell me about bananas", "Bananas are yellow."),
    ):
        open_new_chat(page)
        fake_llm_server.queue(Reply(answer))  # the fake serves any request in order: the title's too
        send(page, question)
        expect(page.locator(".msg-assistant .msg-text")).to_contain_text(answer)
        expect(page).to_have_url(re.compile(r"[?&]c=\d+"))
        expect(page.locator("#chat-title")).to_have_text("测试标题")  # the title request was served
        ids.append(re.search(r"[?&]c=(\d+)", page.url).group(1))
        wait_idle(page)
    apples, bananas = ids
    assert apples != bananas
    items = page.locator("#conversation-list .conversation")
    expect(items).to_have_count(2)
    assert items.nth(0).get_attribute("data-id") == bananas  # newest first

    page.click(f".conversation[data-id='{apples}'] .conversation-link")
    expect(page).to_have_url(re.compile(rf"[?&]c={apples}\b"))
    expect(page.locator(".conversation.is-selected")).to_have_attribute("data-id", apples)
    expect(page.locator("#messages")).to_contain_text("Apples are red")
    expect(page.locator("#messages")).not_to_contain_text("Bananas")
    # The voice session follows: the next spoken turn goes to this conversation.
    wait_until(
        page,
        lambda: any(f.get("type") == "configure" and str(f.get("conversation_id")) == apples for f in frames["sent"]),
        message="configure to the selected conversation",
    )
    screenshot(page, "conversation-apples")

    page.click(f".conversation[data-id='{bananas}'] .conversation-link")
    expect(page).to_have_url(re.compile(rf"[?&]c={bananas}\b"))
    expect(page.locator("#messages")).to_contain_text("Bananas are yellow")
    expect(page.locator("#messages")).not_to_contain_text("Apples")


def test_switch_speakers(page, fake_llm_server):
    register(page)
    first = api_add_speaker(page, "Alpha")  # the first voice becomes current
    second = api_add_speaker(page, "Beta")
    assert current_speaker_id(page) == first
    frames = record_frames(page)
    page.goto("/")
    voice_ready(page)
    select = page.locator("#speaker-select")
    expect(select).to_have_value(str(first))
    expect(select.locator("option")).to_have_count(2)

    select.select_option(str(second))
    wait_until(
        page,
        lambda: any(f.get("type") == "configure" and f.get("speaker_id") == second for f in frames["sent"]),
        message="configure with the new speaker",
    )
    wait_until(page, lambda: current_speaker_id(page) == second, message="current_speaker_id saved")
    expect(page.locator("#status")).to_contain_text("Beta")
    open_new_chat(page)
    fake_llm_server.queue(Reply("Spoken in the second voice."))
    send(page, "Say something")
    expect(page.locator(".msg-assistant .msg-text")).to_contain_text("second voice")
    wait_played(page)
    screenshot(page, "speaker-switched")

    # A new page's voice session starts with the saved speaker.
    page.reload()
    voice_ready(page)
    expect(select).to_have_value(str(second))
    ready = wait_until(page, lambda: [f for f in frames["received"] if f.get("type") == "ready"], message="ready")
    assert (ready[-1].get("speaker") or {}).get("id") == second, ready[-1]

    select.select_option(str(first))
    wait_until(page, lambda: current_speaker_id(page) == first, message="switched back")


def test_upload_a_speaker_on_the_profile_page(page):
    register(page)
    page.goto("/accounts/profile/")
    expect(page.locator("#speaker-empty")).to_be_visible()
    page.fill("#speaker-name", "Hello voice")
    page.fill("#speaker-prompt", "Hello, how are you?")
    page.set_input_files("#speaker-audio", str(SPEAKER_WAV))
    screenshot(page, "profile-upload-filled")
    page.click("#speaker-submit")
    speaker = page.locator(".speaker", has=page.locator(".speaker-name", has_text="Hello voice"))
    expect(speaker).to_be_visible()
    expect(speaker).to_have_class(re.compile(r"\bis-current\b"))  # the first voice becomes current
    expect(page.locator("#speaker-empty")).to_be_hidden()
    expect(page.locator("#speaker-count")).to_contain_text("1")
    listing = page.request.get("/api/speakers").json()
    assert [s["name"] for s in listing["speakers"]] == ["Hello voice"]
    assert listing["current_speaker_id"] == listing["speakers"][0]["id"]
    # The chat page's switcher offers it.
    page.goto("/")
    expect(page.locator("#speaker-select option", has_text="Hello voice")).to_have_count(1)


def test_phone_width_layout_has_no_horizontal_overflow(page):
    page.set_viewport_size({"width": 375, "height": 800})
    register(page)
    open_new_chat(page)
    width = page.evaluate("window.innerWidth")
    assert width <= 400
    overflow = page.evaluate("(() => { const e = document.documentElement; return [e.scrollWidth, e.clientWidth]; })()")
    assert overflow[0] <= overflow[1], overflow
    for selector in ("#mic-button", "#voice-stop", "#handsfree-toggle", "#send-button", "#orb"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= width, (selector, box)
    screenshot(page, "phone-chat")
    page.goto("/accounts/profile/")
    overflow = page.evaluate("(() => { const e = document.documentElement; return [e.scrollWidth, e.clientWidth]; })()")
    assert overflow[0] <= overflow[1], overflow
    screenshot(page, "phone-profile")


def test_chinese_by_default_and_switch_to_english(page):
    register(page)
    open_new_chat(page)
    assert page.evaluate("document.documentElement.lang") == "zh-hans"
    expect(page.locator("#send-button")).to_have_text("发送")
    screenshot(page, "chat-zh")
    page.click(".lang-switch button[value=en]")
    page.wait_for_function("document.documentElement.lang === 'en'", timeout=10_000)
    expect(page.locator("#send-button")).to_have_text("Send")
    voice_ready(page)
    expect(page.locator("#voice-state")).to_contain_text("Hold the mic button")
    screenshot(page, "chat-en")
    page.click(".lang-switch button[value=zh-hans]")
    page.wait_for_function("document.documentElement.lang === 'zh-hans'", timeout=10_000)


def test_record_a_voice_in_the_browser_and_auto_fill_its_transcript(page):
    register(page)
    page.goto("/accounts/profile/")
    expect(page.locator("#cloning-note")).to_be_visible()  # Piper does not clone voices
    page.click("#record-button")
    expect(page.locator("#record-button")).to_have_attribute("aria-pressed", "true", timeout=10_000)
    page.wait_for_timeout(3000)  # the fake microphone speaks
    page.click("#record-button")
    expect(page.locator("#record-preview")).to_be_visible(timeout=10_000)
    page.click("#autofill-button")
    page.wait_for_function("document.getElementById('speaker-prompt').value.trim()")  # auto-filled transcript
    page.fill("#speaker-name", "Fixture")
    screenshot(page, "profile-recorded")
    page.click("#speaker-submit")
    expect(page.locator(".speaker-name", has_text="Fixture")).to_be_visible()


def test_profile_page_lists_edits_and_deletes_memories(page):
    register(page)
    page.goto("/accounts/profile/")
    expect(page.locator("#memory-empty")).to_be_visible()
    for text in ("喜欢爬山", "有一只猫"):
        page.fill("#memory-text", text)
        page.click("#memory-form button[type=submit]")
        expect(page.locator("#memory-list .memory-text", has_text=text)).to_be_visible()
    first = page.locator("#memory-list li.memory").first
    first.locator("button[data-action=edit]").click()
    first.locator(".memory-input").fill("喜欢徒步")
    first.locator("button[data-action=save]").click()
    expect(page.locator("#memory-list .memory-text")).to_have_text(["喜欢徒步", "有一只猫"])
    page.locator("#memory-list li.memory").nth(1).locator("button[data-action=delete]").click()
    expect(page.locator("#memory-list .memory-text")).to_have_text(["喜欢徒步"])
    page.reload()
    expect(page.locator("#memory-list .memory-text")).to_have_text(["喜欢徒步"])  # saved on the server
    screenshot(page, "profile-memories")
