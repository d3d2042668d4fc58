"""Reminders: set through a streamed tool call in a typed (SSE) and a spoken (voice WebSocket) turn,
fired at a time the test chooses (never slept through), spoken on the open socket, shown, saved;
listing, cancelling, another user's reminder (404), the firing claim (never twice), the embedded clock."""

import asyncio
import datetime as dt
import json
import struct

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from chat.models import Message
from devtools.fake_llm import Reply, ToolCalls
from live.tests import test_consumer
from live.tests.test_consumer import events_until, fixture_pcm, stream_audio
from reminders import clock
from reminders.delivery import reminders_fire_and_deliver
from reminders.models import Reminder
from reminders.services import reminder_create, reminder_due_at, reminders_fire_due
from tools.registry import ToolContext, tools_for

pytestmark = pytest.mark.django_db(transaction=True)

application, voice_workers, ws = test_consumer.application, test_consumer.voice_workers, test_consumer.ws


async def sse_events(response):
    body = b"".join([part async for part in response.streaming_content]).decode()
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append(json.loads(lines["data"]))
    return events


def make_reminder(user, minutes=10, now=None, text="关火"):
    now = now or timezone.now()
    return reminder_create(user=user, text=text, due_at=now + dt.timedelta(minutes=minutes), now=now, language="zh")


def test_local_times_are_read_in_the_users_time_zone():
    now = dt.datetime(2026, 12, 2, 14, 30, tzinfo=dt.UTC)  # 22:30 in Shanghai
    # "08:00" has passed today there: tomorrow 08:00 Shanghai = 00:00 UTC.
    assert reminder_due_at(now=now, time_zone="Asia/Shanghai", at="08:00") == dt.datetime(
        2026, 12, 3, 0, 0, tzinfo=dt.UTC
    )
    assert reminder_due_at(now=now, time_zone="Europe/London", at="2026-12-03 08:00") == dt.datetime(
        2026, 12, 3, 8, 0, tzinfo=dt.UTC
    )
    assert reminder_due_at(now=now, time_zone="Asia/Shanghai", in_minutes=10) == now + dt.timedelta(minutes=10)


def test_firing_claims_each_reminder_once(user):
    now = timezone.now()
    reminder = make_reminder(user, minutes=10, now=now)
    assert reminders_fire_due(now=now + dt.timedelta(minutes=9)) == []
    fired = reminders_fire_due(now=now + dt.timedelta(minutes=11))
    assert [f["id"] for f in fired] == [reminder.pk]
    assert reminders_fire_due(now=now + dt.timedelta(minutes=12)) == []  # a second run finds nothing
    reminder.refresh_from_db()
    assert reminder.state == "fired" and reminder.fired_at == now + dt.timedelta(minutes=11)
    message = reminder.message
    assert message.role == "assistant" and "关火" in message.content and message.reminder == reminder


def test_list_cancel_and_another_users_reminder(api, user, other_user):
    mine = make_reminder(user)
    theirs = make_reminder(other_user, text="not yours")
    listed = api.get("/api/reminders").json()
    assert [r["id"] for r in listed["reminders"]] == [mine.pk] and listed["reminders"][0]["state"] == "pending"
    assert api.delete(f"/api/reminders/{theirs.pk}").status_code == 404
    assert api.delete("/api/reminders/999999").json()["error"]["code"] == "reminder_not_found"
    response = api.delete(f"/api/reminders/{mine.pk}")
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert api.delete(f"/api/reminders/{mine.pk}").json()["error"]["code"] == "reminder_not_pending"
    assert api.get("/api/reminders?state=pending").json()["reminders"] == []
    theirs.refresh_from_db()
    assert theirs.state == "pending"
    # A cancelled reminder never fires.
    assert [f["id"] for f in reminders_fire_due(now=timezone.now() + dt.timedelta(hours=1))] == [theirs.pk]


async def test_the_tools_act_only_for_the_turns_user(user, other_user):
    theirs = await sync_to_async(make_reminder)(other_user)
    tools = {t.name: t for t in await tools_for(user)}
    ctx = ToolContext(user=user, conversation_id=None, speaker_id=None, trace_id=None, language="zh", time_zone="")
    assert (await tools["list_reminders"].run(ctx, {}))["reminders"] == []
    from magicmirror.errors import NotFound

    with pytest.raises(NotFound):
        await tools["cancel_reminder"].run(ctx, {"id": theirs.pk})
    made = await tools["set_reminder"].run(ctx, {"text": "吃药", "in_minutes": 5})
    assert made["state"] == "pending" and made["time_zone"]
    assert [r["text"] for r in (await tools["list_reminders"].run(ctx, {}))["reminders"]] == ["吃药"]


async def test_a_typed_turn_sets_a_reminder_that_fires(async_client, user, fake_llm):
    await async_client.aforce_login(user)
    fake_llm.queue(ToolCalls([("set_reminder", {"text": "关火", "in_minutes": 10})]), Reply("好的，十分钟后提醒你。"))
    response = await async_client.post("/api/chat", {"message": "十分钟后提醒我关火"}, content_type="application/json")
    events = await sse_events(response)
    assert [e["type"] for e in events if e["type"].startswith("tool")] == ["tool_call", "tool_result"]
    reminder = await Reminder.objects.aget(owner=user)
    assert reminder.text == "关火" and reminder.state == "pending"
    delay = (reminder.due_at - reminder.created_at).total_seconds()
    assert 590 < delay < 610
    fired = await reminders_fire_and_deliver(reminder.due_at + dt.timedelta(seconds=1))
    assert [f["id"] for f in fired] == [reminder.pk]
    conversation_id = next(e for e in events if e["type"] == "conversation")["conversation"]["id"]
    last = await Message.objects.filter(conversation_id=conversation_id).alast()
    assert last.pk == fired[0]["message_id"] and last.role == "assistant" and "关火" in last.content
    # Shown on the chat page: the list of fired reminders it reads.
    page = (await async_client.get("/api/reminders?state=fired")).json()
    assert [(r["id"], r["message_id"]) for r in page["reminders"]] == [(reminder.pk, last.pk)]


async def test_a_spoken_turn_sets_a_reminder_spoken_on_the_socket(ws, user, fake_llm, settings):
    settings.VOICE_TTS_ENGINES = ["piper"]
    settings.VOICE_MAX_AUDIO_RATE = 1000.0  # the test streams faster than real time
    settings.TOOLS_ACK_AFTER_MS = 0
    fake_llm.queue(
        ToolCalls([("set_reminder", {"text": "turn off the stove", "in_minutes": 10})], chunk_chars=3),
        Reply("OK."),
    )
    await ws.send_json_to({"type": "start", "protocol": 1, "mode": "ptt", "voice_output": True})
    await events_until(ws, "ready")
    await stream_audio(ws, fixture_pcm("hello.wav"))
    await ws.send_json_to({"type": "audio_end"})
    events, _ = await events_until(ws, "audio_done", timeout=60)
    assert "tool_result" in [e["type"] for e in events]
    reminder = await Reminder.objects.aget(owner=user)
    assert reminder.state == "pending" and reminder.conversation_id is not None
    # The session is idle; time moves on to the reminder's (chosen, not slept through).
    fired = await reminders_fire_and_deliver(reminder.due_at + dt.timedelta(seconds=1))
    assert [f["id"] for f in fired] == [reminder.pk]
    events, frames = await events_until(ws, "audio_done", timeout=60)
    kinds = [e["type"] for e in events]
    shown = next(e for e in events if e["type"] == "reminder")
    assert shown == {
        "type": "reminder",
        "id": reminder.pk,
        "text": "turn off the stove",
        "message_id": fired[0]["message_id"],
    }
    assert kinds.index("reminder") < kinds.index("sentence") and frames  # spoken after the event
    turn_ids = {struct.unpack("<III", f[:12])[0] for f in frames}
    assert turn_ids == {events[-1]["turn_id"]}
    saved = await Message.objects.aget(pk=fired[0]["message_id"])
    assert saved.conversation_id == reminder.conversation_id and "turn off the stove" in saved.content


async def test_the_embedded_clock_fires_what_is_due(user, settings):
    settings.REMINDERS_CLOCK_IN_PROCESS = True
    settings.REMINDERS_POLL_SECONDS = 0.05
    past = timezone.now() - dt.timedelta(minutes=5)
    reminder = await sync_to_async(make_reminder)(user, minutes=1, now=past)  # due four minutes ago
    clock.ensure_started()
    try:
        async with asyncio.timeout(10):
            while (await Reminder.objects.aget(pk=reminder.pk)).state != "fired":
                await asyncio.sleep(0.05)  # polling the row the clock writes, not waiting out the time
    finally:
        await clock.stop()


def test_the_fired_counter_is_read_from_the_database(user, client):
    from prometheus_client import REGISTRY, generate_latest

    make_reminder(user)
    now = timezone.now()
    reminders_fire_due(now=now + dt.timedelta(hours=1))
    text = generate_latest(REGISTRY).decode()
    assert "mm_reminders_fired_total 1.0" in text and "mm_reminders_pending 0.0" in text


async def test_a_reminder_that_fires_while_the_user_speaks_is_spoken_after_a_silent_utterance(
    ws, user, settings, voice_workers
):
    settings.VOICE_TTS_ENGINES = ["piper"]
    settings.VOICE_MAX_AUDIO_RATE = 1000.0
    now = timezone.now()
    reminder = await sync_to_async(reminder_create)(
        user=user, text="drink some water", due_at=now + dt.timedelta(minutes=10), now=now, language="en"
    )
    await ws.send_json_to({"type": "start", "protocol": 1, "mode": "ptt", "voice_output": True})
    await events_until(ws, "ready")
    await stream_audio(ws, b"\0\0" * 8000)  # the user holds the button: an utterance is open
    await events_until(ws, "state")  # listening
    fired = await reminders_fire_and_deliver(reminder.due_at + dt.timedelta(seconds=1))
    assert [f["id"] for f in fired] == [reminder.pk]
    await events_until(ws, "reminder")  # shown at once, not spoken over the user
    await ws.send_json_to({"type": "audio_end"})  # nothing was said: no turn follows
    events, frames = await events_until(ws, "audio_done", timeout=60)
    kinds = [e["type"] for e in events]
    assert kinds.index("final") < kinds.index("sentence") and frames
    assert next(e for e in events if e["type"] == "final")["text"] == ""


def test_the_fired_after_filter_takes_a_moment(api, user):
    fired = make_reminder(user, minutes=1)
    reminders_fire_due(now=fired.due_at)
    after = (fired.due_at - dt.timedelta(seconds=1)).isoformat()
    assert [r["id"] for r in api.get("/api/reminders", {"fired_after": after}).json()["reminders"]] == [fired.pk]
    assert api.get("/api/reminders", {"fired_after": fired.due_at.isoformat()}).json()["reminders"] == []
    for bad in ("", "tomorrow", "2026-13-01T00:00:00Z"):
        response = api.get("/api/reminders", {"fired_after": bad})
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid", bad
