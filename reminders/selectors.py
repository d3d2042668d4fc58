"""Reads of reminders, always scoped to the requesting user."""

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
    """The user's IANA time zone, by the profile's rule (speakers.selectors.user_time_zone)."""
    from speakers import selectors as speaker_selectors

    return speaker_selectors.user_time_zone(speaker_selectors.user_settings_get(user=user))
