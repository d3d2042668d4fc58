"""The speaker admin in Chromium, as a Chinese-speaking staff member uses it (locale zh-CN, so
Accept-Language zh-CN): Chinese labels, a validation error in Chinese, the reference recording playing
in the list, try-a-voice playing the engine's audio (through the Celery worker when the run has
services, in-process on the embedded default), re-register; a non-staff user gets no admin.

The accounts are made in the live server's own database (`manage.py shell` with its environment)."""

import json
import re
import subprocess
import sys
import uuid

import pytest

from speakers.services import TRY_SENTENCES

from .conftest import ARTIFACTS, PASSWORD, ROOT, SPEAKER_WAV, browser_test_module

expect, pytestmark = browser_test_module()

SPEAKERS = "/admin/speakers/speaker/"
MAKE_ACCOUNTS = """
import json, sys
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
staff_name, owner_name, password = sys.argv[1:4]
User = get_user_model()
staff = User.objects.create_user(staff_name, password=password, is_staff=True)
mine = Permission.objects.filter(content_type__app_label="speakers", codename__endswith="_speaker")
staff.user_permissions.add(*mine)
owner = User.objects.create_user(owner_name, password=password)
print(json.dumps({"staff": staff_name, "owner": owner_name, "owner_id": owner.pk}))
"""


@pytest.fixture
def accounts(live_browser_server):
    """A staff member who may add, change, view and delete speakers (not a superuser), and a user."""
    _url, env = live_browser_server
    suffix = uuid.uuid4().hex[:8]
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import django; django.setup(); exec({MAKE_ACCOUNTS!r})",
            f"s{suffix}",
            f"o{suffix}",
            PASSWORD,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def admin_login(page, username, next_url=SPEAKERS):
    page.goto(f"/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-form input[type=submit]")


def wait_audio_loaded(page, selector):
    """The <audio> has loaded a recording that lasts more than 0 s; returns its duration."""
    handle = page.wait_for_function(
        """(selector) => { const a = document.querySelector(selector);
             return a && a.readyState >= 1 && a.duration > 0 && Number.isFinite(a.duration) ? a.duration : 0; }""",
        arg=selector,
    )
    return handle.json_value()


def try_and_check(page, form):
    page.locator(f"{form} .mm-try-speak").click()
    expect(page.locator(f"{form}[data-state=done]")).to_have_count(1)
    status = page.locator(f"{form} .mm-try-status")
    expect(status).to_contain_text("Piper")  # the engine that spoke, by name
    expect(status).to_contain_text("这不是克隆：这是引擎自带的声音")  # on a CPU host: said plainly
    assert page.locator(form).get_attribute("data-clones") == "false"
    assert wait_audio_loaded(page, f"{form} .mm-try-audio") > 1.0


def test_staff_add_a_speaker_hear_it_and_try_its_voice_in_chinese(page, accounts):
    admin_login(page, accounts["staff"], f"{SPEAKERS}add/")
    expect(page).to_have_url(re.compile(rf"{SPEAKERS}add/$"))
    form = page.locator("#speaker_form")
    for label in ("所有者", "名称", "提示文本", "参考音频"):
        expect(form).to_contain_text(label)
    page.select_option("#id_owner", str(accounts["owner_id"]))
    page.fill("#id_name", "Hello voice")
    page.fill("#id_prompt_text", "Hello, how are you?")
    page.set_input_files("#id_upload", {"name": "notes.wav", "mimeType": "audio/wav", "buffer": b"not audio " * 200})
    page.click("input[name=_save]")
    expect(page.locator(".errorlist")).to_contain_text("这个文件不是可以解码的音频。")  # refused, in Chinese
    page.set_input_files("#id_upload", str(SPEAKER_WAV))
    page.click("input[name=_save]")

    # The list, in Chinese; the reference recording plays in its row.
    expect(page.locator("#result_list")).to_contain_text("Hello voice")
    header = page.locator("#result_list thead")
    for label in ("所有者", "位置", "语言", "克隆状态", "问题"):
        expect(header).to_contain_text(label)
    expect(page.locator("#changelist-filter")).to_contain_text("有问题")
    player = "#result_list audio"
    page.evaluate("(s) => document.querySelector(s).play()", player)
    assert wait_audio_loaded(page, player) > 0.5
    page.wait_for_function("(s) => document.querySelector(s).currentTime > 0", arg=player)  # it plays

    # The change page: try this voice with the default sentence in the prompt's language (English).
    page.click("#result_list a:text('Hello voice')")
    expect(page.locator(".mm-try-voice h2")).to_have_text("试听这个声音：Hello voice")
    expect(page.locator(".mm-try-voice textarea")).to_have_value(TRY_SENTENCES["en"])
    try_and_check(page, "form.mm-try-voice")
    page.screenshot(path=str(ARTIFACTS / "admin-try-voice.png"))

    page.click("#mm-reregister")
    expect(page.locator(".messagelist")).to_contain_text("1 个说话人将在克隆引擎下次用其声音说话时重新注册。")

    # The list action: a page with a try form per selected speaker.
    page.goto(SPEAKERS)
    page.locator("#result_list input.action-select").first.check()
    page.select_option("select[name=action]", "try_voice")
    page.click("button[name=index]")
    expect(page.locator("form.mm-try-voice")).to_have_count(1)
    page.fill("form.mm-try-voice textarea", "This sentence was edited by the staff member.")
    try_and_check(page, "form.mm-try-voice")


def test_a_user_who_is_not_staff_gets_no_admin(page, accounts):
    page.goto("/accounts/login/")
    page.fill("input[name=username]", accounts["owner"])
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")
    page.wait_for_selector("#chat-app")
    page.goto(SPEAKERS)
    expect(page).to_have_url(re.compile(r"/admin/login/\?next="))
    expect(page.locator("#content")).to_contain_text("没有这个页面的访问权限")
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    response = page.request.post(
        f"{SPEAKERS}1/try/", form={"text": "Hello."}, headers={"X-CSRFToken": token}, max_redirects=0
    )
    assert response.status == 302 and "/admin/login/" in response.headers["location"]
