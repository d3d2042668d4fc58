"""Reminders on the chat page in Chromium (see conftest.py): the panel lists a pending reminder in the
user's time zone and cancels it; a reminder that fires while the chat page is open shows a notice,
its message joins the open conversation with the reminder marker, and the panel drops it.

The reminders are made and fired in the live server's own database (`python -c` with its
environment). Firing calls the service that fires due reminders (and tells the open voice sockets)
with a moment the test chooses, past the reminder's time: nothing waits for the clock. On the
embedded backend the page finds the fired reminder by polling GET /api/reminders; with services
the voice socket's `reminder` event brings it (through Redis) as well."""

import datetime as dt
import json
import subprocess
import sys
import zoneinfo

from . import test_browser as browser
from .conftest import ROOT, browser_test_module

expect, pytestmark = browser_test_module()

ZONE = "Asia/Shanghai"

MAKE_REMINDER = """
import datetime as dt, json, sys
from django.contrib.auth import get_user_model
from django.utils import timezone
from chat.services.conversations import conversation_create
from reminders.services import reminder_create
from speakers.selectors import user_settings_get
username, text, minutes, zone, with_conversation = sys.argv[1:6]
user = get_user_model().objects.get(username=username)
row = user_settings_get(user=user)
row.time_zone = zone
row.save(update_fields=["time_zone"])
conversation = conversation_create(user=user, title="厨房") if with_conversation == "1" else None
now = timezone.now()
reminder = reminder_create(user=user, text=text, due_at=now + dt.timedelta(minutes=float(minutes)), now=now,
                           conversation_id=conversation.pk if conversation else None, language="zh")
print(json.dumps({"id": reminder.pk, "due_at": reminder.due_at.isoformat(),
                  "conversation_id": conversation.pk if conversation else None}))
"""

# The firing routine of the Celery beat task and of the embedded clock, at the moment given.
FIRE_AT = """
import asyncio, datetime as dt, json, sys
from reminders.delivery import reminders_fire_and_deliver
fired = asyncio.run(reminders_fire_and_deliver(dt.datetime.fromisoformat(sys.argv[1])))
print(json.dumps(fired))
"""

REMINDER_STATE = """
import json, sys
from reminders.models import Reminder
print(json.dumps(Reminder.objects.get(pk=int(sys.argv[1])).state))
"""


def on_server(live_browser_server, script, *args):
    """Run `script` with the live server's settings and database; its last line of output, as JSON."""
    _url, env = live_browser_server
    result = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); exec({script!r})", *map(str, args)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def local_time(iso, zone=ZONE):
    return dt.datetime.fromisoformat(iso).astimezone(zoneinfo.ZoneInfo(zone)).strftime("%H:%M")


def test_a_pending_reminder_is_listed_in_the_users_time_zone_and_cancelled(page, live_browser_server):
    username = browser.register(page)
    expect(page.locator("#reminder-empty")).to_be_visible()  # none yet
    made = on_server(live_browser_server, MAKE_REMINDER, username, "给花浇水", 90, ZONE, 0)
    page.reload()

    item = page.locator("#reminder-list li")
    expect(item).to_have_count(1)
    expect(item).to_contain_text("给花浇水")
    expect(item.locator("time")).to_contain_text(local_time(made["due_at"]))  # Shanghai's clock
    expect(page.locator("#reminder-empty")).to_be_hidden()
    if page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") != ZONE:
        expect(page.locator("#reminder-zone")).to_have_text(f"时间按 {ZONE} 时区显示")

    page.get_by_role("button", name="取消提醒“给花浇水”").click()
    expect(page.locator("#status")).to_have_text("提醒已取消。")
    expect(item).to_have_count(0)
    expect(page.locator("#reminder-empty")).to_be_visible()
    assert on_server(live_browser_server, REMINDER_STATE, made["id"]) == "cancelled"
    browser.screenshot(page, "reminder-cancelled")


def test_a_reminder_that_fires_shows_a_notice_and_its_message_on_the_open_chat_page(page, live_browser_server):
    username = browser.register(page)
    made = on_server(live_browser_server, MAKE_REMINDER, username, "关火", 10, ZONE, 1)
    page.goto(f"/?c={made['conversation_id']}")
    browser.voice_ready(page)
    expect(page.locator("#chat-title")).to_have_text("厨房")
    expect(page.locator("#reminder-list li")).to_contain_text("关火")  # pending, before it fires
    notices = page.locator("#reminder-notices").get_by_role("alert")
    expect(notices).to_have_count(0)

    moment = dt.datetime.fromisoformat(made["due_at"]) + dt.timedelta(seconds=1)
    fired = on_server(live_browser_server, FIRE_AT, moment.isoformat())
    assert [f["id"] for f in fired] == [made["id"]]

    notice = notices
    expect(notice).to_have_count(1)
    expect(notice).to_contain_text("提醒：关火")
    reminder_message = page.locator(f'#messages .msg-reminder[data-id="{fired[0]["message_id"]}"]')
    expect(reminder_message).to_have_count(1)
    expect(reminder_message).to_contain_text("关火")
    expect(reminder_message.locator(".msg-reminder-mark")).to_have_count(1)
    expect(page.locator("#reminder-list li")).to_have_count(0)  # no longer pending
    browser.screenshot(page, "reminder-fired")

    notice.get_by_role("button", name="关闭").click()
    expect(notices).to_have_count(0)

    # The conversation as the API serves it marks the message as the reminder's; reloaded, it is shown so.
    conversation = page.request.get(f"/api/conversations/{made['conversation_id']}").json()
    assert [(m["role"], m["reminder_id"]) for m in conversation["messages"]] == [("assistant", made["id"])]
    page.reload()
    expect(page.locator("#messages .msg-reminder .msg-reminder-mark")).to_have_count(1)
