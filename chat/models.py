from django.conf import settings
from django.db import models


class Conversation(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=100, blank=True, default="")
    # True once a title was generated or set by the user: never overwritten automatically.
    title_is_final = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True, db_index=False)

    class Meta:
        ordering = ["-updated_at", "-id"]
        indexes = [
            # "My conversations, newest first".
            models.Index(fields=["owner", "-updated_at", "-id"], name="conv_owner_updated_idx"),
        ]

    def __str__(self):
        return self.title or f"Conversation {self.pk}"


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", "User"
        ASSISTANT = "assistant", "Assistant"
        SYSTEM = "system", "System"

    class Source(models.TextChoices):
        TEXT = "text", "Typed"
        VOICE = "voice", "Spoken"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    content = models.TextField(blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.TEXT)
    # A reply cut short (client gone, LLM failure, barge-in) keeps what had arrived.
    interrupted = models.BooleanField(default=False)
    error_code = models.CharField(max_length=32, blank=True, default="")
    # Voice turns: the speaker whose voice read the reply.
    speaker = models.ForeignKey("speakers.Speaker", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at", "id"], name="msg_conv_created_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=["user", "assistant", "system"]), name="message_role_valid"
            ),
        ]

    def __str__(self):
        return f"{self.role}: {self.content[:40]}"
