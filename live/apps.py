from django.apps import AppConfig


class LiveConfig(AppConfig):
    """The real-time voice session over a WebSocket, above chat, voice and speakers."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "live"
