"""Reminders: set, list, cancel (per user), and fire the ones that are due.

Firing is the one place that changes a pending reminder into a fired one, and it does so with a
conditional UPDATE (`WHERE state = 'pending'`) in the same transaction that saves the reminder's
message: two schedulers (two beats, a beat and a restarted worker) never both fire a reminder, and a
crash before the commit leaves it pending, so the next run fires it. A reminder that came due while
nothing was running fires on the first run after it.
"""

import datetime as dt
import logging
import zoneinfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from chat.models import Message
from chat.selectors import conversation_get
from chat.services.conversations import conversation_create, message_create
from magicmirror.errors import ApplicationError

from .models import REMINDER_TEXT_MAX_CHARS, Reminder
from .selectors import reminder_get

logger = logging.getLogger(__name__)


def reminder_text_clean(text) -> str:
    if not isinstance(text, str) or not " ".join(text.split()):
        raise ApplicationError("Say what to be reminded of.", code="invalid_reminder")
    text = " ".join(text.split())
    if len(text) > REMINDER_TEXT_MAX_CHARS:
        raise ApplicationError(f"A reminder is at most {REMINDER_TEXT_MAX_CHARS} characters.", code="reminder_too_long")
    return text


def reminder_due_at(*, now: dt.datetime, time_zone: str, in_minutes=None, at=None) -> dt.datetime:
    """When a reminder is due, in UTC: `in_minutes` from `now`, or `at` a local time in `time_zone`
    ("HH:MM": the next such time; "YYYY-MM-DD HH:MM" or ISO 8601 without an offset: that moment there;
    with an offset: that moment)."""
    if (in_minutes is None) == (at is None):
        raise ApplicationError("Give either in_minutes or at.", code="invalid_reminder_time")
    if in_minutes is not None:
        try:
            minutes = float(in_minutes)
        except (TypeError, ValueError):
            raise ApplicationError("in_minutes must be a number.", code="invalid_reminder_time") from None
        if not minutes > 0:
            raise ApplicationError("in_minutes must be more than 0.", code="invalid_reminder_time")
        due = now + dt.timedelta(minutes=minutes)
    else:
        try:
            zone = zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
        due = _local_moment(str(at).strip(), now=now, zone=zone)
    return due.astimezone(dt.UTC)


def _local_moment(at: str, *, now: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    try:
        clock = dt.time.fromisoformat(at)
    except ValueError:
        clock = None
    if clock is not None:  # a time of day: today there, or tomorrow when it has passed
        local_now = now.astimezone(zone)
        due = dt.datetime.combine(local_now.date(), clock.replace(tzinfo=None), tzinfo=zone)
        if due <= local_now:
            due = dt.datetime.combine(local_now.date() + dt.timedelta(days=1), clock.replace(tzinfo=None), tzinfo=zone)
        return due
    try:
        moment = dt.datetime.fromisoformat(at)
    except ValueError:
        raise ApplicationError(
            "at must be a local time, HH:MM or YYYY-MM-DD HH:MM.", code="invalid_reminder_time"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def reminder_create(
    *, user, text, due_at: dt.datetime, conversation_id=None, language: str = "", now: dt.datetime | None = None
) -> Reminder:
    now = now or timezone.now()
    text = reminder_text_clean(text)
    if due_at <= now:
        raise ApplicationError("That time has passed already.", code="reminder_in_past")
    if due_at - now > dt.timedelta(days=settings.REMINDERS_MAX_DAYS_AHEAD):
        raise ApplicationError(
            f"Reminders can be set at most {settings.REMINDERS_MAX_DAYS_AHEAD} days ahead.", code="reminder_too_far"
        )
    conversation = None
    if conversation_id is not None:
        conversation = conversation_get(user=user, conversation_id=conversation_id)  # NotFound if not theirs
    pending = Reminder.objects.filter(owner=user, state=Reminder.State.PENDING).count()
    if pending >= settings.REMINDERS_MAX_PENDING_PER_USER:
        raise ApplicationError(
            f"You have {pending} reminders waiting already; cancel one first.",
            code="reminder_limit",
            status_code=409,
        )
    return Reminder.objects.create(
        owner=user, conversation=conversation, text=text, due_at=due_at, language=language[:16]
    )


def reminder_cancel(*, user, reminder_id) -> Reminder:
    """Cancel a pending reminder of the user's; NotFound for anyone else's, 409 once it has fired."""
    reminder = reminder_get(user=user, reminder_id=reminder_id)
    # Conditional, like firing: a reminder that fires at this moment is either cancelled or fired.
    cancelled = Reminder.objects.filter(pk=reminder.pk, state=Reminder.State.PENDING).update(
        state=Reminder.State.CANCELLED
    )
    reminder.refresh_from_db()
    if not cancelled:
        raise ApplicationError(
            f"That reminder is {reminder.state} already.", code="reminder_not_pending", status_code=409
        )
    return reminder


def reminder_spoken_text(reminder: Reminder) -> str:
    """What the reminder says when it fires, in the language it was set in."""
    language = reminder.language or settings.LANGUAGE_CODE
    with translation.override("zh-hans" if language.startswith("zh") else language):
        return _("Reminder: %(text)s") % {"text": reminder.text}


def reminders_fire_due(*, now: dt.datetime, limit: int = 100) -> list[dict]:
    """Fire the reminders due at `now`: each is claimed and its message saved in one transaction.
    Returns what to deliver, one dict per reminder fired by this call (none fired twice)."""
    due = list(
        Reminder.objects.filter(state=Reminder.State.PENDING, due_at__lte=now)
        .order_by("due_at", "id")
        .values_list("pk", flat=True)[:limit]
    )
    fired = []
    for pk in due:
        with transaction.atomic():
            claimed = Reminder.objects.filter(pk=pk, state=Reminder.State.PENDING).update(
                state=Reminder.State.FIRED, fired_at=now
            )
            if not claimed:  # another run fired it (or it was cancelled) meanwhile
                continue
            reminder = Reminder.objects.select_related("owner", "conversation").get(pk=pk)
            conversation = reminder.conversation
            if conversation is None:
                conversation = conversation_create(user=reminder.owner, title=reminder_spoken_text(reminder))
            message = message_create(
                conversation=conversation, role=Message.Role.ASSISTANT, content=reminder_spoken_text(reminder)
            )
            Reminder.objects.filter(pk=pk).update(message=message, conversation=conversation)
        late = (now - reminder.due_at).total_seconds()
        logger.info("Reminder %s fired (%.0f s after its time)", pk, late)
        fired.append(
            {
                "id": pk,
                "owner_id": reminder.owner_id,
                "text": reminder.text,
                "content": message.content,
                "message_id": message.pk,
                "conversation_id": conversation.pk,
                "due_at": reminder.due_at.isoformat(),
            }
        )
    return fired
