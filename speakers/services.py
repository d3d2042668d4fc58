"""Speaker and user-settings writes. Views, admin, consumers and commands all call these."""

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from magicmirror.errors import ApplicationError
from voice.audio import AudioError, decode_audio

from .models import Speaker, UserSettings
from .selectors import speaker_get, speaker_name_taken

# Stored reference audio: mono PCM16 WAV at CosyVoice2's output rate.
REFERENCE_SAMPLE_RATE = 24000
MIN_SOURCE_SAMPLE_RATE = 16000
NAME_MAX_CHARS = 64
PROMPT_TEXT_MAX_CHARS = 500


class SpeakerLimitReached(ApplicationError):
    status_code = 409

    def __init__(self):
        super().__init__(
            f"You already have {settings.SPEAKERS_PER_USER} speakers; delete one to add another.",
            code="speaker_limit",
        )


def _format_size(n: int) -> str:
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if n >= factor:
            return f"{n / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{n} bytes"


def audio_too_large_error() -> ApplicationError:
    return ApplicationError(
        f"The audio file is too large (limit {_format_size(settings.SPEAKER_MAX_UPLOAD_BYTES)}).",
        code="audio_too_large",
        status_code=413,
    )


def reference_audio_prepare(*, data: bytes, size: int | None = None):
    """Validate an uploaded reference clip and return it decoded (24 kHz mono PCM16).

    Clear errors for oversized, undecodable, too short/long, low-rate or silent audio.
    """
    size = len(data) if size is None else size
    if size > settings.SPEAKER_MAX_UPLOAD_BYTES:
        raise audio_too_large_error()
    try:
        decoded = decode_audio(data, sample_rate=REFERENCE_SAMPLE_RATE, max_seconds=settings.SPEAKER_MAX_SECONDS)
    except AudioError as exc:
        raise ApplicationError(str(exc), code=exc.code) from exc
    if decoded.source_sample_rate < MIN_SOURCE_SAMPLE_RATE:
        raise ApplicationError(
            f"The reference audio must be sampled at {MIN_SOURCE_SAMPLE_RATE} Hz or more "
            f"(this one is {decoded.source_sample_rate} Hz).",
            code="audio_rate_too_low",
        )
    if decoded.duration < settings.SPEAKER_MIN_SECONDS:
        raise ApplicationError(
            f"The reference audio must last at least {settings.SPEAKER_MIN_SECONDS:g} seconds.",
            code="audio_too_short",
        )
    if decoded.peak() < 328:  # below -40 dBFS everywhere: nothing to clone
        raise ApplicationError("The reference audio is silent.", code="audio_silent")
    return decoded


def _clean_name(name) -> str:
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name:
        raise ApplicationError("A speaker needs a name.", code="invalid_name")
    if len(name) > NAME_MAX_CHARS:
        raise ApplicationError(f"The name is longer than {NAME_MAX_CHARS} characters.", code="invalid_name")
    return name


def _clean_prompt_text(text) -> str:
    text = (text or "").strip() if isinstance(text, str) else ""
    if not text:
        raise ApplicationError(
            "The transcript of the reference audio is required (zero-shot cloning needs it).",
            code="invalid_prompt_text",
        )
    if len(text) > PROMPT_TEXT_MAX_CHARS:
        raise ApplicationError(
            f"The transcript is longer than {PROMPT_TEXT_MAX_CHARS} characters.",
            code="invalid_prompt_text",
        )
    return text


def _ensure_user_settings(user) -> None:
    """Create the user's settings row if it is missing, before the locking transaction starts.

    Inside that transaction a racing get_or_create is a deadlock on MySQL/MariaDB: the losers of
    the INSERT keep the shared locks of the duplicate-key check, then all ask for the exclusive
    lock of select_for_update. Outside it (autocommit), the loser simply reads the winner's row.
    """
    UserSettings.objects.get_or_create(user=user)


def _lock_user_settings(user) -> UserSettings:
    """Lock the user's settings row (creating it if need be): serialises speaker writes of one user."""
    try:
        return UserSettings.objects.select_for_update().get(user=user)
    except UserSettings.DoesNotExist:
        UserSettings.objects.get_or_create(user=user)
        return UserSettings.objects.select_for_update().get(user=user)


def _duplicate_name_error() -> ApplicationError:
    return ApplicationError("You already have a speaker with this name.", code="duplicate_name", status_code=409)


def speaker_create(*, user, name, prompt_text, audio_data: bytes, make_current: bool | None = None) -> Speaker:
    """Add a speaker. The first speaker becomes current unless make_current is False."""
    name = _clean_name(name)
    prompt_text = _clean_prompt_text(prompt_text)
    decoded = reference_audio_prepare(data=audio_data)
    _ensure_user_settings(user)
    stored_name = None
    try:
        with transaction.atomic():
            user_settings = _lock_user_settings(user)
            used = set(Speaker.objects.filter(owner=user).values_list("slot", flat=True))
            free = [s for s in range(1, settings.SPEAKERS_PER_USER + 1) if s not in used]
            if not free:
                raise SpeakerLimitReached()
            if speaker_name_taken(user=user, name=name):
                raise _duplicate_name_error()
            speaker = Speaker(
                owner=user,
                slot=free[0],
                name=name,
                prompt_text=prompt_text,
                audio_duration=round(decoded.duration, 3),
                audio_sample_rate=decoded.sample_rate,
            )
            speaker.audio.save("reference.wav", ContentFile(decoded.to_wav()), save=False)
            stored_name = speaker.audio.name
            speaker.save()
            if make_current or (make_current is None and user_settings.current_speaker_id is None):
                user_settings.current_speaker = speaker
                user_settings.save(update_fields=["current_speaker", "updated_at"])
    except Exception as exc:
        if stored_name:
            default_storage.delete(stored_name)
        if isinstance(exc, IntegrityError):
            # The database constraints have the last word: a concurrent write took the slot or name.
            if Speaker.objects.filter(owner=user).count() >= settings.SPEAKERS_PER_USER:
                raise SpeakerLimitReached() from exc
            if speaker_name_taken(user=user, name=name):
                raise _duplicate_name_error() from exc
            raise ApplicationError(
                "The speaker could not be saved; try again.", code="conflict", status_code=409
            ) from exc
        raise
    return speaker


def speaker_update(*, user, speaker_id, name=None, prompt_text=None, audio_data: bytes | None = None) -> Speaker:
    """Rename, correct the transcript and/or replace the audio; the old file goes once committed.

    Everything is validated before anything is written; nothing is written if anything is invalid.
    """
    speaker_get(user=user, speaker_id=speaker_id)  # NotFound before any validation error
    name = None if name is None else _clean_name(name)
    prompt_text = None if prompt_text is None else _clean_prompt_text(prompt_text)
    decoded = None if audio_data is None else reference_audio_prepare(data=audio_data)
    stored_name = None
    try:
        with transaction.atomic():
            speaker = speaker_get(user=user, speaker_id=speaker_id, for_update=True)
            fields = []
            if name is not None:
                if speaker_name_taken(user=user, name=name, exclude_pk=speaker.pk):
                    raise _duplicate_name_error()
                speaker.name = name
                fields.append("name")
            if prompt_text is not None:
                speaker.prompt_text = prompt_text
                fields.append("prompt_text")
            old_audio_name = None
            if decoded is not None:
                old_audio_name = speaker.audio.name
                speaker.audio.save("reference.wav", ContentFile(decoded.to_wav()), save=False)
                stored_name = speaker.audio.name
                speaker.audio_duration = round(decoded.duration, 3)
                speaker.audio_sample_rate = decoded.sample_rate
                fields += ["audio", "audio_duration", "audio_sample_rate"]
            if fields:
                speaker.save(update_fields=[*fields, "updated_at"])
            if old_audio_name:
                storage = speaker.audio.storage
                transaction.on_commit(lambda: storage.delete(old_audio_name))
    except Exception as exc:
        if stored_name:
            default_storage.delete(stored_name)
        if (
            isinstance(exc, IntegrityError)
            and name is not None
            and speaker_name_taken(user=user, name=name, exclude_pk=speaker_id)
        ):
            raise _duplicate_name_error() from exc
        raise
    return speaker


def speaker_delete(*, user, speaker_id) -> None:
    """Delete a speaker; the user's current speaker becomes NULL if it was this one (SET NULL)."""
    speaker = speaker_get(user=user, speaker_id=speaker_id)
    speaker.delete()


def speaker_switch(*, user, speaker_id) -> UserSettings:
    """Make one of the user's speakers current. `speaker_id=None` switches to the default voice."""
    _ensure_user_settings(user)
    with transaction.atomic():
        user_settings = _lock_user_settings(user)
        user_settings.current_speaker = None if speaker_id is None else speaker_get(user=user, speaker_id=speaker_id)
        user_settings.save(update_fields=["current_speaker", "updated_at"])
    return user_settings


def user_settings_update(*, user, input_mode=None, voice_output=None) -> UserSettings:
    _ensure_user_settings(user)
    with transaction.atomic():
        user_settings = _lock_user_settings(user)
        fields = []
        if input_mode is not None:
            if input_mode not in UserSettings.InputMode.values:
                raise ApplicationError(
                    f"input_mode must be one of {', '.join(UserSettings.InputMode.values)}.",
                    code="invalid_input_mode",
                )
            user_settings.input_mode = input_mode
            fields.append("input_mode")
        if voice_output is not None:
            user_settings.voice_output = bool(voice_output)
            fields.append("voice_output")
        if fields:
            user_settings.save(update_fields=[*fields, "updated_at"])
    return user_settings
