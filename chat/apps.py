import logging
import threading

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger(__name__)


def check_llm_configured(app_configs, **kwargs):
    if settings.LLM_API_KEY or settings.OLLAMA_URL:  # Ollama is looked for at start-up (no network in checks)
        return []
    return [
        checks.Warning(
            "No LLM API key is configured.",
            hint="Set LLM_API_KEY (or DEEPSEEK_API_KEY), or OLLAMA_URL to a local Ollama. Until then chat "
            "replies report 'LLM not configured'.",
            id="chat.W001",
        )
    ]


class ChatConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "chat"
    verbose_name = _("Chat")

    def ready(self):
        checks.register(check_llm_configured, checks.Tags.compatibility)
        if not getattr(settings, "TESTING", False):
            # Which LLM the site uses, in one log line; looking for an Ollama may take a moment: not here.
            from .llm_endpoint import log_at_start

            threading.Thread(target=log_at_start, name="llm-endpoint", daemon=True).start()
