from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ToolsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tools"
    verbose_name = _("Tools")

    def ready(self):
        # Each registers its tools (tools.registry.provider): the built-ins, the MCP servers' tools.
        from . import builtins, mcp  # noqa: F401
