"""The web app in a real browser: Debian's Chromium with a fake microphone fed from a fixture WAV,
against a live daphne server (HTTP + the voice WebSocket), the fake LLM and the CPU voice engines."""

import time

import pytest

from chat.fake_llm import Reply

from .conftest import ARTIFACTS, BROWSER_PASSWORD, BROWSER_USER

pytestmark = pytest.mark.browser

WAIT = 90  # seconds: the first voice turn loads the recogniser and the voice


def wait(driver, condition, timeout=WAIT, message=""):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d), message)


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def screenshot(driver, name):
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def css(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def csss(driver, selector):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, selector)


def log_in(driver, base):
    driver.delete_all_cookies()
    driver.get(f"{base}/")
    wait(driver, lambda d: "/accounts/login/" in d.current_url)
    css(driver, "input[name=username]").send_keys(BROWSER_USER)
    css(driver, "input[name=password]").send_keys(BROWSER_PASSWORD)
    css(driver, "form button[type=submit].button-primary, main form button[type=submit]").click()
    wait(driver, lambda d: csss(d, "#chat-app"))


def open_new_chat(driver, base):
    driver.get(f"{base}/")
    if "/accounts/login/" in driver.current_url:
        log_in(driver, base)
    if not css(driver, "#new-chat").is_displayed():  # phone width: the sidebar is a drawer
        css(driver, "#sidebar-toggle").click()
        wait(driver, lambda d: css(d, "#new-chat").is_displayed(), 5)
    css(driver, "#new-chat").click()
    voice_ready(driver)


def voice_ready(driver):
    wait(driver, lambda d: js(d, "return Boolean(window.mmVoice && window.mmVoice.connected)"), 30, "voice socket")


def stats(driver):
    return js(driver, "return {...window.mmVoice.stats}")


def assistant_texts(driver):
    return [e.text for e in csss(driver, ".msg-assistant .msg-text")]


def test_log_in_type_a_message_see_the_streamed_reply_and_the_title(browser, browser_server, fake_llm_server):
    fake_llm_server.queue(Reply("Hello! **Nice** to meet you.", tokens_per_s=20))
    log_in(browser, browser_server)
    assert js(browser, "return document.documentElement.lang") == "zh-hans"
    open_new_chat(browser, browser_server)
    box = css(browser, "#message-input")
    box.send_keys("Hi there")
    box.send_keys("\n")
    wait(browser, lambda d: any("Nice to meet you" in t for t in assistant_texts(d)), message="streamed reply")
    assert css(browser, ".msg-user .msg-text").text == "Hi there"
    assert css(browser, ".msg-assistant .msg-text strong").text == "Nice"  # the safe Markdown subset
    wait(browser, lambda d: css(d, "#chat-title").text == "测试标题", message="automatic title")
    assert css(browser, ".conversation.is-selected .conversation-link").text == "测试标题"
    assert "c=" in browser.current_url
    # the reply is spoken too (voice output is on by default)
    wait(browser, lambda d: stats(d)["chunksPlayed"] > 0, message="reply audio")
    screenshot(browser, "typed-message")


def test_push_to_talk_with_the_fake_microphone(browser, browser_server, fake_llm_server):
    from selenium.webdriver.common.action_chains import ActionChains

    fake_llm_server.queue(Reply("I heard you. This is my spoken answer.", tokens_per_s=20))
    open_new_chat(browser, browser_server)
    mic = css(browser, "#mic-button")
    ActionChains(browser).click_and_hold(mic).perform()
    wait(browser, lambda d: css(d, "#mic-button").get_attribute("aria-pressed") == "true", 5)
    held_at = time.monotonic()
    wait(browser, lambda d: css(d, "#voice-caption").text.strip(), 10, "live partial caption")
    time.sleep(max(0.0, 3 - (time.monotonic() - held_at)))  # hold while the fixture speaks (2.6 s)
    ActionChains(browser).release(mic).perform()
    # textContent: WebElement.text is empty for an element scrolled out of view.
    texts = wait(
        browser,
        lambda d: [t for e in csss(d, ".msg-user .msg-text") if (t := e.get_attribute("textContent").strip())],
        30,
        "final transcript",
    )
    assert texts[0]
    wait(browser, lambda d: any("spoken answer" in t for t in assistant_texts(d)), message="reply")
    wait(browser, lambda d: stats(d)["chunksPlayed"] > 0, message="reply audio played")
    screenshot(browser, "push-to-talk")
    wait(browser, lambda d: js(d, "return window.mmVoice.state") == "idle", message="back to idle")


def test_interrupt_stops_playback_at_once(browser, browser_server, fake_llm_server):
    long_reply = " ".join(f"This is sentence number {i} of a very long answer." for i in range(40))
    fake_llm_server.queue(Reply(long_reply, tokens_per_s=60))
    open_new_chat(browser, browser_server)
    box = css(browser, "#message-input")
    box.send_keys("Talk for a long time\n")
    wait(browser, lambda d: stats(d)["chunksPlayed"] > 0, message="playback started")
    assert js(browser, "return window.mmVoice.state") == "speaking"
    screenshot(browser, "speaking")
    # Click and read the counter in one go: nothing may play after the click.
    before = js(browser, "document.getElementById('voice-stop').click(); return window.mmVoice.stats.chunksPlayed")
    wait(browser, lambda d: js(d, "return window.mmVoice.state") == "idle", 10, "idle after interrupt")
    time.sleep(1.5)  # audio that was queued would have played by now
    assert stats(browser)["chunksPlayed"] == before
    assert css(browser, "#voice-stop").get_attribute("disabled") is not None
    assert csss(browser, ".msg-assistant .msg-note")  # marked as interrupted


def test_phone_width_layout_has_no_horizontal_overflow(browser, browser_server):
    browser.set_window_size(375, 800)
    open_new_chat(browser, browser_server)
    width = js(browser, "return window.innerWidth")
    assert width <= 400
    overflow = js(browser, "const e = document.documentElement; return [e.scrollWidth, e.clientWidth]")
    assert overflow[0] <= overflow[1], overflow
    for selector in ("#mic-button", "#voice-stop", "#handsfree-toggle", "#send-button", "#orb"):
        rect = js(browser, "return arguments[0].getBoundingClientRect().toJSON()", css(browser, selector))
        assert rect["left"] >= 0 and rect["right"] <= width, (selector, rect)
    screenshot(browser, "phone-chat")
    browser.get(f"{browser_server}/accounts/profile/")
    overflow = js(browser, "const e = document.documentElement; return [e.scrollWidth, e.clientWidth]")
    assert overflow[0] <= overflow[1], overflow
    screenshot(browser, "phone-profile")


def test_chinese_by_default_and_switch_to_english(browser, browser_server):
    open_new_chat(browser, browser_server)
    assert js(browser, "return document.documentElement.lang") == "zh-hans"
    assert css(browser, "#send-button").text == "发送"
    screenshot(browser, "chat-zh")
    css(browser, ".lang-switch button[value=en]").click()
    wait(browser, lambda d: js(d, "return document.documentElement.lang") == "en", 10)
    assert css(browser, "#send-button").text == "Send"
    voice_ready(browser)
    assert "Hold the mic button" in css(browser, "#voice-state").text
    screenshot(browser, "chat-en")
    css(browser, ".lang-switch button[value=zh-hans]").click()
    wait(browser, lambda d: js(d, "return document.documentElement.lang") == "zh-hans", 10)


def test_record_a_voice_in_the_browser_and_auto_fill_its_transcript(browser, browser_server):
    browser.get(f"{browser_server}/accounts/profile/")
    if "/accounts/login/" in browser.current_url:
        log_in(browser, browser_server)
        browser.get(f"{browser_server}/accounts/profile/")
    assert css(browser, "#cloning-note").is_displayed()  # Piper does not clone voices
    css(browser, "#record-button").click()
    wait(browser, lambda d: css(d, "#record-button").get_attribute("aria-pressed") == "true", 10)
    time.sleep(3)  # the fake microphone speaks
    css(browser, "#record-button").click()
    wait(browser, lambda d: css(d, "#record-preview").is_displayed(), 10)
    css(browser, "#autofill-button").click()
    wait(browser, lambda d: css(d, "#speaker-prompt").get_attribute("value").strip(), message="auto-filled transcript")
    css(browser, "#speaker-name").send_keys("Fixture")
    screenshot(browser, "profile-recorded")
    css(browser, "#speaker-submit").click()
    wait(browser, lambda d: any(e.text == "Fixture" for e in csss(d, ".speaker-name")), message="voice added")
