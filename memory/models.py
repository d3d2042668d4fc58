"""What MagicMirror remembers about a person, and who it is to them.

* `Memory`: a short fact or preference about the user, with the message it was learnt from.
* `MemoryProfile`: per user, whether memory is on, and the persona (the companion's name,
  personality, and how it addresses the user); blank persona fields mean the defaults.
* `SpeakerPersona`: an optional persona of one cloned voice, over the user's (blank fields inherit).
* `ConversationMemory`: per conversation, how far the background job has read it and the rolling
  summary of its older part.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q


class Memory(models.Model):
    class Source(models.TextChoices):
        CONVERSATION = "conversation", "Learnt in a conversation"
        USER = "user", "Added by the user"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memories")
    text = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.CONVERSATION)
    # The user's message it was learnt from (or last changed by); kept when that message goes.
    source_message = models.ForeignKey(
        "chat.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, help_text="When it was learnt.")
    confirmed_at = models.DateTimeField(help_text="When it was last said, changed or confirmed.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["owner_id", "created_at", "id"]
        indexes = [models.Index(fields=["owner", "created_at", "id"], name="memory_owner_created_idx")]
        constraints = [
            models.UniqueConstraint(fields=["owner", "text"], name="memory_unique_owner_text"),
            models.CheckConstraint(condition=~Q(text=""), name="memory_text_not_empty"),
            models.CheckConstraint(condition=Q(source__in=["conversation", "user"]), name="memory_source_valid"),
        ]
        verbose_name_plural = "memories"

    def __str__(self):
        return self.text


class MemoryProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memory_profile")
    # Off: nothing is extracted from the user's turns and nothing is recalled into requests.
    enabled = models.BooleanField(default=True)
    persona_name = models.CharField(max_length=40, blank=True, default="")
    persona_personality = models.CharField(max_length=300, blank=True, default="")
    persona_address = models.CharField(max_length=100, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Memory settings of {self.user}"


class SpeakerPersona(models.Model):
    speaker = models.OneToOneField("speakers.Speaker", on_delete=models.CASCADE, related_name="persona")
    name = models.CharField(max_length=40, blank=True, default="")
    personality = models.CharField(max_length=300, blank=True, default="")
    address = models.CharField(max_length=100, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"Persona of {self.speaker}"


class ConversationMemory(models.Model):
    conversation = models.OneToOneField("chat.Conversation", on_delete=models.CASCADE, related_name="memory_state")
    # The newest message id the memory job has read (the next run reads only what came after).
    extracted_through = models.PositiveBigIntegerField(default=0)
    # The summary of every message up to summary_through; later ones are sent as they are.
    summary = models.TextField(blank=True, default="")
    summary_through = models.PositiveBigIntegerField(default=0)
    # The last background failure (`memory_malformed`, an LLM error code), blank once one succeeds.
    last_error = models.CharField(max_length=32, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(summary="") | Q(summary_through__gt=0), name="conversation_memory_summary_has_range"
            ),
        ]

    def __str__(self):
        return f"Memory state of conversation {self.conversation_id}"
