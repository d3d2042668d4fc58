from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RemindersConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "reminders"
    verbose_name = _("Reminders")

    def ready(self):
        from . import metrics, tools  # noqa: F401  tools registers the reminder tools (tools.registry.provider)

        metrics.register()
