from django.apps import AppConfig


class VoiceConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "voice"

    def ready(self):
        from .jobs import worker  # noqa: F401  (worker start-up signals, inspect command)
