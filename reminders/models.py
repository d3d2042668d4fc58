from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

REMINDER_TEXT_MAX_CHARS = 200


class Reminder(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        FIRED = "fired", _("Fired")
        CANCELLED = "cancelled", _("Cancelled")

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="reminders", verbose_name=_("owner")
    )
    # Where the reminder is said; a deleted conversation leaves it pending (it fires into a new one).
    conversation = models.ForeignKey(
        "chat.Conversation",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reminders",
        verbose_name=_("conversation"),
    )
    text = models.CharField(max_length=REMINDER_TEXT_MAX_CHARS, verbose_name=_("text"))
    # The language the reminder is worded in when it fires (the user's spoken language at the time).
    language = models.CharField(max_length=16, blank=True, default="", verbose_name=_("language"))
    due_at = models.DateTimeField(verbose_name=_("due at"))  # UTC, as every datetime here (USE_TZ)
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING, verbose_name=_("state"))
    fired_at = models.DateTimeField(null=True, blank=True, verbose_name=_("fired at"))
    # The assistant message that delivered it (marks that message as a reminder).
    message = models.OneToOneField(
        "chat.Message",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reminder",
        verbose_name=_("message"),
    )

    class Meta:
        verbose_name = _("reminder")
        verbose_name_plural = _("reminders")
        ordering = ["due_at", "id"]
        indexes = [
            # The firing scan: pending reminders by due time.
            models.Index(fields=["state", "due_at"], name="reminder_state_due_idx"),
            # "My reminders", soonest first.
            models.Index(fields=["owner", "state", "due_at"], name="reminder_owner_state_due_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["pending", "fired", "cancelled"]), name="reminder_state_valid"
            ),
            # fired_at is set exactly when the reminder has fired.
            models.CheckConstraint(
                condition=(Q(state="fired") & Q(fired_at__isnull=False))
                | (~Q(state="fired") & Q(fired_at__isnull=True)),
                name="reminder_fired_at_iff_fired",
            ),
            models.CheckConstraint(condition=~Q(text=""), name="reminder_text_not_empty"),
        ]

    def __str__(self):
        return f"{self.text[:40]} @ {self.due_at:%Y-%m-%d %H:%M}"
