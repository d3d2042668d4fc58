"""Reads of reminders, always scoped to the requesting user."""

from django.conf import settings
from django.db.models import QuerySet

from magicmirror.errors import NotFound

from .models import Reminder


def reminder_list(*, user, states=None) -> QuerySet[Reminder]:
    """The user's reminders, soonest first (`states`: only those, e.g. ["pending"])."""
    rows = Reminder.objects.filter(owner=user)
    if states:
        rows = rows.filter(state__in=list(states))
    return rows.order_by("due_at", "id")


def reminder_get(*, user, reminder_id) -> Reminder:
    """The user's reminder, or NotFound (another user's reminder looks like none)."""
    try:
        return Reminder.objects.get(owner=user, pk=int(reminder_id))
    except (Reminder.DoesNotExist, ValueError, TypeError):
        raise NotFound("Reminder not found.", code="reminder_not_found") from None


def user_time_zone(*, user) -> str:
    """The user's IANA time zone: the profile setting where there is one, else settings.TIME_ZONE."""
    from speakers.models import UserSettings

    # Read defensively: the profile's time zone is a newer column, and a user may have no row yet.
    row = UserSettings.objects.filter(user=user).first()
    return (getattr(row, "time_zone", "") if row is not None else "") or settings.TIME_ZONE
