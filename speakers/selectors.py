from django.conf import settings
from django.db.models import QuerySet

from magicmirror.errors import NotFound

from .models import Speaker, UserSettings


def speaker_list(*, user) -> QuerySet[Speaker]:
    return Speaker.objects.filter(owner=user).order_by("slot")


def speaker_get(*, user, speaker_id, for_update=False) -> Speaker:
    """The user's speaker, or NotFound: another user's speaker is indistinguishable from none.

    `for_update` locks the row (inside a transaction).
    """
    speakers = Speaker.objects.select_for_update() if for_update else Speaker.objects
    try:
        return speakers.get(owner=user, pk=int(speaker_id))
    except (Speaker.DoesNotExist, ValueError, TypeError):
        raise NotFound("Speaker not found.", code="speaker_not_found") from None


def speaker_name_taken(*, user, name, exclude_pk=None) -> bool:
    """Whether the user has another speaker of this name, ignoring case on every backend
    (MySQL's collation makes the unique constraint case-insensitive anyway)."""
    taken = Speaker.objects.filter(owner=user, name__iexact=name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    return taken.exists()


def user_settings_get(*, user) -> UserSettings:
    settings_row, _ = UserSettings.objects.select_related("current_speaker").get_or_create(user=user)
    return settings_row


def current_speaker_get(*, user) -> Speaker | None:
    return user_settings_get(user=user).current_speaker


def user_time_zone(user_settings: UserSettings) -> str:
    """The user's IANA time zone: their own, else Asia/Shanghai for a user who speaks Chinese, else
    the site's TIME_ZONE."""
    if user_settings.time_zone:
        return user_settings.time_zone
    if user_settings.spoken_language == "zh":
        return "Asia/Shanghai"
    return settings.TIME_ZONE
