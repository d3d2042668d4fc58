import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


def speaker_audio_path(instance, filename):
    # Per-user folder, random name: no user-controlled path components reach the disk.
    return f"speakers/{instance.owner_id}/{uuid.uuid4().hex}.wav"


class Speaker(models.Model):
    """A cloned voice: reference audio plus its transcript (zero-shot cloning needs both)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="speakers")
    # 1..SPEAKERS_PER_USER, unique per owner: the database itself refuses a fourth speaker,
    # whichever code path (API, admin, shell) and however many concurrent requests try.
    slot = models.PositiveSmallIntegerField(editable=False)
    name = models.CharField(max_length=64)
    audio = models.FileField(upload_to=speaker_audio_path, max_length=255)
    prompt_text = models.TextField(max_length=500, help_text="What is said in the reference audio, word for word.")
    audio_duration = models.FloatField(default=0.0, help_text="Seconds.")
    audio_sample_rate = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["owner_id", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "slot"], name="speaker_unique_owner_slot"),
            models.CheckConstraint(condition=Q(slot__gte=1) & Q(slot__lte=3), name="speaker_slot_1_to_3"),
            models.UniqueConstraint(fields=["owner", "name"], name="speaker_unique_owner_name"),
        ]

    def __str__(self):
        return self.name


class UserSettings(models.Model):
    """Per-user preferences; exactly one row per user (created on demand)."""

    class InputMode(models.TextChoices):
        PUSH_TO_TALK = "ptt", "Push to talk"
        HANDS_FREE = "handsfree", "Hands-free"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="mm_settings")
    current_speaker = models.ForeignKey(Speaker, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    input_mode = models.CharField(max_length=16, choices=InputMode.choices, default=InputMode.PUSH_TO_TALK)
    voice_output = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "user settings"
        verbose_name_plural = "user settings"

    def __str__(self):
        return f"Settings of {self.user}"
