from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class Conversation(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations", verbose_name=_("owner")
    )
    title = models.CharField(max_length=100, blank=True, default="", verbose_name=_("title"))
    # True once a title was generated or set by the user: never overwritten automatically.
    title_is_final = models.BooleanField(
        default=False,
        verbose_name=_("title is final"),
        help_text=_("Set once the title was generated or chosen by the user: never replaced automatically."),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, db_index=False, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        ordering = ["-updated_at", "-id"]
        indexes = [
            # "My conversations, newest first".
            models.Index(fields=["owner", "-updated_at", "-id"], name="conv_owner_updated_idx"),
        ]

    def __str__(self):
        return self.title or _("Conversation %(id)s") % {"id": self.pk}


class Message(models.Model):
    class Role(models.TextChoices):
        USER = "user", _("User")
        ASSISTANT = "assistant", _("Assistant")
        SYSTEM = "system", _("System")

    class Source(models.TextChoices):
        TEXT = "text", _("Typed")
        VOICE = "voice", _("Spoken")

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages", verbose_name=_("conversation")
    )
    role = models.CharField(max_length=16, choices=Role.choices, verbose_name=_("role"))
    content = models.TextField(blank=True, verbose_name=_("content"))
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.TEXT, verbose_name=_("source"))
    # A reply cut short (client gone, LLM failure, barge-in) keeps what had arrived.
    interrupted = models.BooleanField(
        default=False,
        verbose_name=_("interrupted"),
        help_text=_("The reply was cut short and holds only what had arrived."),
    )
    error_code = models.CharField(
        max_length=32,
        blank=True,
        default="",
        verbose_name=_("error code"),
        help_text=_("The LLM error that ended the reply, if any."),
    )
    # Voice turns: the speaker whose voice read the reply.
    speaker = models.ForeignKey(
        "speakers.Speaker",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("speaker"),
        help_text=_("The voice that read the reply aloud."),
    )
    # A reply's tool calls, in order: {"id", "name", "arguments", "outcome", "result", "round", "offset"};
    # `offset`: how much of `content` had been written when that round was called (history replay).
    tool_calls = models.JSONField(
        default=list,
        blank=True,
        verbose_name=_("tool calls"),
        help_text=_("The tools the reply called and what they answered."),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))

    class Meta:
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["conversation", "created_at", "id"], name="msg_conv_created_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(role__in=["user", "assistant", "system"]), name="message_role_valid"
            ),
        ]

    def __str__(self):
        return f"{self.role}: {self.content[:40]}"
