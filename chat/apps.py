import logging

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger(__name__)


def check_llm_configured(app_configs, **kwargs):
    if settings.LLM_API_KEY:
        return []
    return [
        checks.Warning(
            "No LLM API key is configured.",
            hint="Set LLM_API_KEY (or DEEPSEEK_API_KEY). Until then chat replies report 'LLM not configured'.",
            id="chat.W001",
        )
    ]


class ChatConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"
    verbose_name = _("Chat")

    def ready(self):
        checks.register(check_llm_configured, checks.Tags.compatibility)
        if not settings.LLM_API_KEY and not getattr(settings, "TESTING", False):
            logger.warning(
                "No LLM API key configured (LLM_API_KEY or DEEPSEEK_API_KEY): the site runs, "
                "but chat replies will say that the LLM is not configured."
            )
