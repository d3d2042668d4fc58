"""Delivering fired reminders to the user's open voice sessions, and the one firing routine that the
Celery beat task and the embedded default's in-process clock both run.

Each voice socket of a user listens on the channel-layer group `user_group(user id)` (live.reminders);
a fired reminder is sent to that group as `{"type": "reminder.fire", "reminder": {...}}`. The message in
the conversation is saved before this send, so a reminder whose send is lost (no socket open, Redis
down for a moment) is still in the conversation and on the chat page.
"""

import logging

from channels.layers import get_channel_layer
from django.utils import timezone

from magicmirror.dbasync import db_call

from .services import reminders_fire_due

logger = logging.getLogger(__name__)

EVENT_TYPE = "reminder.fire"


def user_group(user_id: int) -> str:
    return f"reminders.user.{user_id}"


async def reminders_deliver(fired: list[dict]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    for item in fired:
        event = {
            "type": EVENT_TYPE,
            "reminder": {k: item[k] for k in ("id", "text", "content", "message_id", "conversation_id")},
        }
        try:
            await layer.group_send(user_group(item["owner_id"]), event)
        except Exception:  # the reminder is saved in its conversation; only the spoken delivery is lost
            logger.warning("Could not send reminder %s to the voice sessions", item["id"], exc_info=True)


async def reminders_fire_and_deliver(now=None) -> list[dict]:
    """Fire what is due at `now` (default: the current time) and tell the users' open sessions."""
    fired = await db_call(reminders_fire_due, now=now or timezone.now())
    await reminders_deliver(fired)
    return fired
