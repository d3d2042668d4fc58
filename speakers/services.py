"""Speaker and user-settings writes. Views, admin, consumers and commands all call these."""

import functools
import zoneinfo

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from magicmirror.errors import ApplicationError
from voice.audio import AudioError, DecodedAudio, decode_audio
from voice.speech_text import sentence_language

from .models import Speaker, UserSettings
from .selectors import speaker_get, speaker_name_taken

# Stored reference audio: mono PCM16 WAV at CosyVoice2's output rate.
REFERENCE_SAMPLE_RATE = 24000
MIN_SOURCE_SAMPLE_RATE = 16000
NAME_MAX_CHARS = 64
PROMPT_TEXT_MAX_CHARS = 500

# What the check of a reference recording reports without refusing it (Speaker.audio_problems): each one
# makes a zero-shot clone worse. CosyVoice2 clones best from 3 to 10 s of clean speech.
GOOD_MIN_SECONDS = 3.0
CLIP_LEVEL = 32440  # 99 % of full scale
CLIPPED_SHARE = 0.001  # more than 0.1 % of the samples at the limit
SILENCE_FRAME_S = 0.02
SILENCE_LEVEL = 328  # frame RMS below -40 dBFS
SILENT_SHARE = 0.5  # more than half of the recording
AUDIO_PROBLEMS = ("short", "clipped", "silence", "low_sample_rate")


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


def reference_audio_problems(decoded: DecodedAudio) -> list[str]:
    """What makes an accepted reference recording a poor one to clone (codes of AUDIO_PROBLEMS, in order)."""
    samples = np.frombuffer(decoded.pcm, dtype="<i2").astype(np.int32)
    problems = []
    if decoded.duration < GOOD_MIN_SECONDS:
        problems.append("short")
    if samples.size and np.count_nonzero(np.abs(samples) >= CLIP_LEVEL) > CLIPPED_SHARE * samples.size:
        problems.append("clipped")
    frame = max(1, int(decoded.sample_rate * SILENCE_FRAME_S))
    frames = samples[: samples.size // frame * frame].reshape(-1, frame).astype(np.float64)
    if len(frames):
        rms = np.sqrt((frames**2).mean(axis=1))
        if np.count_nonzero(rms < SILENCE_LEVEL) > SILENT_SHARE * len(frames):
            problems.append("silence")
    if 0 < decoded.source_sample_rate < REFERENCE_SAMPLE_RATE:  # upsampled: the top of the band is missing
        problems.append("low_sample_rate")
    return problems


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
                source_sample_rate=decoded.source_sample_rate,
                audio_problems=reference_audio_problems(decoded),
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
            if prompt_text is not None and prompt_text != speaker.prompt_text:
                speaker.prompt_text = prompt_text
                fields.append("prompt_text")
            old_audio_name = None
            if decoded is not None:
                old_audio_name = speaker.audio.name
                speaker.audio.save("reference.wav", ContentFile(decoded.to_wav()), save=False)
                stored_name = speaker.audio.name
                speaker.audio_duration = round(decoded.duration, 3)
                speaker.audio_sample_rate = decoded.sample_rate
                speaker.source_sample_rate = decoded.source_sample_rate
                speaker.audio_problems = reference_audio_problems(decoded)
                fields += ["audio", "audio_duration", "audio_sample_rate", "source_sample_rate", "audio_problems"]
            if "prompt_text" in fields or decoded is not None:  # a new voice_version: not registered yet
                fields += _clone_status_clear(speaker)
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


def _clone_status_clear(speaker: Speaker) -> list[str]:
    speaker.clone_engine, speaker.clone_version, speaker.cloned_at = "", "", None
    return ["clone_engine", "clone_version", "cloned_at"]


def speaker_is_registered(speaker: Speaker) -> bool:
    """Whether an engine that clones has registered the speaker's current recording and transcript."""
    return bool(speaker.cloned_at and speaker.clone_version == speaker.voice_version)


def speaker_clone_record(*, speaker_id, version: str, engine: str) -> bool:
    """An engine that clones has spoken (so registered) `version` of the speaker: note which and when.

    Called by the synthesis job, where the engine runs (a worker in production), before it reports the
    job done. Nothing is written for a version that is no longer the speaker's (replaced meanwhile), nor
    twice for one version. Returns whether it wrote.
    """
    if Speaker.objects.filter(pk=speaker_id, clone_version=version, clone_engine=engine).exists():
        return False  # the usual case, every later sentence in this voice: one read, no lock
    with transaction.atomic():
        speaker = Speaker.objects.select_for_update().filter(pk=speaker_id).first()
        if speaker is None or speaker.voice_version != version:
            return False
        if speaker.clone_version == version and speaker.clone_engine == engine:
            return False
        speaker.clone_engine, speaker.clone_version, speaker.cloned_at = engine, version, timezone.now()
        speaker.save(update_fields=["clone_engine", "clone_version", "cloned_at"])
    return True


def speaker_clone_reset(*, speaker_id) -> Speaker:
    """Ask for a fresh registration: a new voice_version, so the engine registers the recording again at
    the next synthesis in this voice (CosyVoice2 drops the old cached prompt then)."""
    with transaction.atomic():
        speaker = Speaker.objects.select_for_update().get(pk=speaker_id)
        speaker.clone_generation += 1
        speaker.save(update_fields=["clone_generation", *_clone_status_clear(speaker)])
    return speaker


def speakers_reregister(*, speaker_ids) -> int:
    """`speaker_clone_reset` for each of these speakers (the admin's action and button); returns how many."""
    count = 0
    for speaker_id in speaker_ids:
        speaker_clone_reset(speaker_id=speaker_id)
        count += 1
    return count


def speaker_language(speaker: Speaker) -> str:
    """The language of the speaker's prompt text (zh, en, ja, ko), from its script."""
    return sentence_language(speaker.prompt_text or "", "zh")


# What "try this voice" says by default: a sentence in the language of the speaker's own recording (so a
# cloning engine speaks the language it heard), not in the staff member's; hence not translated.
TRY_SENTENCES = {
    "zh": "你好，这是我的声音。今天的天气真不错，我们出去走走吧。",
    "en": "Hello, this is my voice. It is a lovely day today, shall we go for a walk?",
    "ja": "こんにちは、これは私の声です。今日はいい天気ですね。",
    "ko": "안녕하세요, 제 목소리입니다. 오늘은 날씨가 정말 좋네요.",
}


def speaker_try_sentence(speaker: Speaker) -> str:
    """The default sentence to try the speaker's voice with, in the language of its prompt text."""
    return TRY_SENTENCES.get(speaker_language(speaker), TRY_SENTENCES["zh"])


def time_zone_valid(name: str) -> bool:
    """An IANA time zone name the system knows (a file path or "localtime" is none)."""
    return name in _time_zones()


_time_zones = functools.cache(zoneinfo.available_timezones)  # walks the tz database: once


def time_zone_names() -> list[str]:
    """The IANA names time_zone_valid accepts, sorted (the API schema lists them)."""
    return sorted(_time_zones())


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


def user_settings_update(
    *, user, input_mode=None, voice_output=None, spoken_language=None, time_zone=None
) -> UserSettings:
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
        if spoken_language is not None:  # "I speak": "" goes back to the interface language
            allowed = [value for value, _label in UserSettings._meta.get_field("spoken_language").choices]
            if spoken_language and spoken_language not in allowed:
                raise ApplicationError(
                    f"spoken_language must be one of {', '.join(allowed)}, or empty.", code="invalid_spoken_language"
                )
            user_settings.spoken_language = spoken_language
            fields.append("spoken_language")
        if time_zone is not None:  # "" goes back to the site's time zone
            time_zone = time_zone.strip()
            if time_zone and not time_zone_valid(time_zone):
                raise ApplicationError(
                    f"{time_zone!r} is not a time zone name (e.g. Asia/Shanghai, Europe/Paris).",
                    code="invalid_time_zone",
                )
            user_settings.time_zone = time_zone
            fields.append("time_zone")
        if fields:
            user_settings.save(update_fields=[*fields, "updated_at"])
    return user_settings
