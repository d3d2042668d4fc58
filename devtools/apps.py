from django.apps import AppConfig


class DevtoolsConfig(AppConfig):
    """Development tooling; an app only so that `manage.py benchmark` is found."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "devtools"
    verbose_name = "Development tools"
