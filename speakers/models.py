import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


def speaker_audio_path(instance, filename):
    # Per-user folder, random name: no user-controlled path components reach the disk.
    return f"speakers/{instance.owner_id}/{uuid.uuid4().hex}.wav"


class Speaker(models.Model):
    """A cloned voice: reference audio plus its transcript (zero-shot cloning needs both)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="speakers", verbose_name=_("owner")
    )
    # 1..SPEAKERS_PER_USER, unique per owner: the database itself refuses a fourth speaker,
    # whichever code path (API, admin, shell) and however many concurrent requests try.
    slot = models.PositiveSmallIntegerField(
        editable=False, verbose_name=_("slot"), help_text=_("1 to 3: a user has at most three speakers.")
    )
    name = models.CharField(max_length=64, verbose_name=_("name"))
    audio = models.FileField(upload_to=speaker_audio_path, max_length=255, verbose_name=_("reference audio"))
    prompt_text = models.TextField(
        max_length=500,
        verbose_name=_("prompt text"),
        help_text=_("What is said in the reference audio, word for word."),
    )
    audio_duration = models.FloatField(default=0.0, verbose_name=_("audio duration"), help_text=_("Seconds."))
    audio_sample_rate = models.PositiveIntegerField(
        default=0, verbose_name=_("sample rate"), help_text=_("Of the stored file, in Hz.")
    )
    source_sample_rate = models.PositiveIntegerField(
        default=0, verbose_name=_("recorded sample rate"), help_text=_("Of the uploaded file, in Hz (0: unknown).")
    )
    # Codes of speakers.services.reference_audio_problems, found when the recording was checked.
    audio_problems = models.JSONField(default=list, blank=True, verbose_name=_("problems"))
    # Bumped to make the cloning engine register the recording afresh (part of voice_version).
    clone_generation = models.PositiveIntegerField(default=0, editable=False, verbose_name=_("registration"))
    # The last voice_version an engine that clones (CosyVoice2) registered, which engine, and when.
    clone_engine = models.CharField(max_length=32, blank=True, default="", verbose_name=_("registered with"))
    clone_version = models.CharField(max_length=40, blank=True, default="", verbose_name=_("registered version"))
    cloned_at = models.DateTimeField(null=True, blank=True, verbose_name=_("registered at"))
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("speaker")
        verbose_name_plural = _("speakers")
        ordering = ["owner_id", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "slot"], name="speaker_unique_owner_slot"),
            models.CheckConstraint(condition=Q(slot__gte=1) & Q(slot__lte=3), name="speaker_slot_1_to_3"),
            models.UniqueConstraint(fields=["owner", "name"], name="speaker_unique_owner_name"),
        ]

    def __str__(self):
        return self.name

    @property
    def voice_version(self) -> str:
        """Changes whenever the audio or the prompt text changes, or a re-registration is asked for: the
        engine's cached prompt (CosyVoice2's zero-shot speaker) belongs to one version."""
        key = f"{self.audio.name}|{self.prompt_text}"
        if self.clone_generation:  # generation 0 keeps the ids registered before it existed
            key += f"|{self.clone_generation}"
        return uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:12]


class UserSettings(models.Model):
    """Per-user preferences; exactly one row per user (created on demand)."""

    class InputMode(models.TextChoices):
        PUSH_TO_TALK = "ptt", _("Push to talk")
        HANDS_FREE = "handsfree", _("Hands-free")

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mm_settings", verbose_name=_("user")
    )
    current_speaker = models.ForeignKey(
        Speaker,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("current speaker"),
        help_text=_("The voice replies are read in; empty: the engine's default voice."),
    )
    input_mode = models.CharField(
        max_length=16, choices=InputMode.choices, default=InputMode.PUSH_TO_TALK, verbose_name=_("input mode")
    )
    voice_output = models.BooleanField(
        default=True, verbose_name=_("read replies aloud"), help_text=_("In the current speaker's voice.")
    )
    # "I speak": the recognition language (its Vosk model) and the tie-breaker for the voice's language.
    spoken_language = models.CharField(
        max_length=8,
        choices=[("zh", _("Chinese")), ("en", _("English"))],
        blank=True,
        default="",
        verbose_name=_("I speak"),
        help_text=_("The language you speak to MagicMirror in; empty: the interface language."),
    )
    # IANA name; empty: the site's TIME_ZONE (Asia/Shanghai for a user who speaks Chinese).
    time_zone = models.CharField(
        max_length=64,
        blank=True,
        default="",
        verbose_name=_("time zone"),
        help_text=_("Where you are, for the time and reminders; empty: the site's time zone."),
    )
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("user settings")
        verbose_name_plural = _("user settings")

    def __str__(self):
        return _("Settings of %(user)s") % {"user": self.user}
