"""The Celery task Celery beat runs every REMINDERS_POLL_SECONDS (CELERY_BEAT_SCHEDULE): fire what is due.

Like a view it holds no logic: the service claims and saves, then the reminders go to the users' open
voice sessions. Every tick reads the database afresh, so a tick lost while no worker ran loses nothing.
"""

import datetime

from celery import shared_task
from django.utils import timezone

from voice.jobs.sending import on_thread_loop

from .delivery import reminders_deliver
from .services import reminders_fire_due


@shared_task(name="reminders.tasks.fire_due", acks_late=True, ignore_result=True)
def fire_due(now=None):
    """`now`: an ISO 8601 moment (tests choose it); default the worker's current time."""
    moment = datetime.datetime.fromisoformat(now) if now else timezone.now()
    fired = reminders_fire_due(now=moment)
    if fired:
        # The worker thread's own event loop (as the voice jobs' sends): channels-redis keeps its
        # connections per loop.
        on_thread_loop()(reminders_deliver(fired))
    return [item["id"] for item in fired]
