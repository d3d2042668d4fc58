"""Reminders on the services backend, with real processes: a reminder set before a worker crashed is
fired by the worker that replaced it and spoken on the open socket (through Redis); Celery beat itself
sends the firing task. Time is chosen by the test (the task's `now`), never slept through; waiting is
on a condition (a ping answered, a row's state, an event on the socket)."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from chat.models import Message
from devtools.localprocs import child_env
from live.tests import test_consumer
from live.tests.test_consumer import events_until
from magicmirror.celery import app
from reminders.models import Reminder
from reminders.services import reminder_create

pytestmark = [pytest.mark.services_only, pytest.mark.django_db(transaction=True)]

application, voice_workers, ws = test_consumer.application, test_consumer.voice_workers, test_consumer.ws


@contextmanager
def worker(queues: str, fake_llm_server, *extra_args: str, **env):
    """A Celery worker process of this test's own (the suite's shared worker must not be killed)."""
    name = f"reminders-{uuid.uuid4().hex[:8]}@localhost"
    command = [sys.executable, "-m", "celery", "-A", "magicmirror", "worker", "-n", name, "-l", "warning"]
    command += ["-Q", queues, "--pool=threads", "-c", "2", *extra_args]
    # It runs no voice jobs: no engines to load (VOICE_PRELOAD empty), so it is ready in seconds.
    env = child_env(**fake_llm_server.settings(), VOICE_PRELOAD="", **env)
    process = subprocess.Popen(command, cwd=Path(settings.BASE_DIR), env=env)
    try:
        deadline = time.monotonic() + 180  # a bound for a loaded machine, not a wait
        while not any(name in reply for reply in app.control.ping(destination=[name], timeout=0.5) or []):
            assert process.poll() is None, f"the worker exited with {process.returncode}"
            assert time.monotonic() < deadline, "the worker did not answer a ping within 180 s"
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for_state(pk: int, state: str, timeout: float = 30) -> Reminder:
    deadline = time.monotonic() + timeout
    while True:
        reminder = Reminder.objects.get(pk=pk)
        if reminder.state == state:
            return reminder
        assert time.monotonic() < deadline, f"reminder {pk} is still {reminder.state}, not {state}"
        time.sleep(0.05)  # polling the row another process writes, not waiting out the reminder's time


def fire_on(queue: str, now: dt.datetime) -> None:
    app.send_task("reminders.tasks.fire_due", kwargs={"now": now.isoformat()}, queue=queue)


async def test_a_reminder_set_before_a_worker_crash_is_fired_by_its_successor_and_spoken(
    ws, user, voice_workers, fake_llm_server, settings
):
    settings.VOICE_TTS_ENGINES = ["piper"]
    queue = f"reminders-test-{os.getpid()}"
    now = timezone.now()
    reminder = await sync_to_async(reminder_create)(
        user=user, text="关火", due_at=now + dt.timedelta(minutes=10), now=now, language="zh"
    )
    await ws.send_json_to({"type": "start", "protocol": 1, "mode": "ptt", "voice_output": True})
    await events_until(ws, "ready")

    with worker(queue, fake_llm_server) as first:
        await sync_to_async(fire_on)(queue, now + dt.timedelta(minutes=5))  # not yet due: nothing fires
        first.send_signal(signal.SIGKILL)  # a crash, as a restart would be: nothing held in memory survives
        first.wait(timeout=20)
    assert (await Reminder.objects.aget(pk=reminder.pk)).state == "pending"

    with worker(queue, fake_llm_server):
        await sync_to_async(fire_on)(queue, reminder.due_at + dt.timedelta(seconds=1))
        fired = await sync_to_async(wait_for_state)(reminder.pk, "fired")
        events, frames = await events_until(ws, "audio_done", timeout=60)

    shown = next(e for e in events if e["type"] == "reminder")
    assert shown["id"] == reminder.pk and shown["text"] == "关火" and frames  # the event, then its speech
    message = await Message.objects.aget(pk=shown["message_id"])
    assert message.role == "assistant" and "关火" in message.content
    assert fired.fired_at == reminder.due_at + dt.timedelta(seconds=1)


def test_celery_beat_sends_the_firing_task(user, fake_llm_server, tmp_path):
    past = timezone.now() - dt.timedelta(minutes=5)
    reminder = reminder_create(user=user, text="吃药", due_at=past + dt.timedelta(minutes=1), now=past, language="zh")
    # The worker runs beat in the same process (-B) with a short period; the schedule file is this test's.
    # Beat sends to the default queue, which this worker serves (and the suite's shared worker may too).
    args = ("-B", "-s", str(tmp_path / "beat-schedule"))
    with worker(settings.CELERY_TASK_DEFAULT_QUEUE, fake_llm_server, *args, REMINDERS_POLL_SECONDS="0.5"):
        fired = wait_for_state(reminder.pk, "fired")
    assert fired.message is not None and "吃药" in fired.message.content
