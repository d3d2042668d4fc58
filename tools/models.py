from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class McpServer(models.Model):
    """An MCP server whose tools are offered to the LLM (tools/mcp.py). Staff configure them in the admin."""

    class Transport(models.TextChoices):
        STDIO = "stdio", _("Command (stdio)")
        HTTP = "http", _("Streamable HTTP")

    # Part of each tool's name as the LLM sees it (mcp_<name>_<tool>), hence the short ASCII form.
    name = models.CharField(
        max_length=24,
        unique=True,
        validators=[RegexValidator(r"^[a-zA-Z0-9]+$", _("Letters and digits only."))],
        verbose_name=_("name"),
        help_text=_("Letters and digits; the tools are offered as mcp_<name>_<tool>."),
    )
    transport = models.CharField(
        max_length=8, choices=Transport.choices, default=Transport.STDIO, verbose_name=_("transport")
    )
    command = models.CharField(
        max_length=500, blank=True, default="", verbose_name=_("command"), help_text=_("The program to start (stdio).")
    )
    args = models.JSONField(
        default=list, blank=True, verbose_name=_("arguments"), help_text=_("A JSON list of the command's arguments.")
    )
    env = models.JSONField(
        default=dict,
        blank=True,
        verbose_name=_("environment"),
        help_text=_("A JSON object of environment variables for the command."),
    )
    url = models.URLField(
        max_length=500, blank=True, default="", verbose_name=_("URL"), help_text=_("The server's endpoint (HTTP).")
    )
    headers = models.JSONField(
        default=dict,
        blank=True,
        verbose_name=_("headers"),
        help_text=_("A JSON object of HTTP headers sent with every request, e.g. Authorization."),
    )
    enabled = models.BooleanField(default=True, verbose_name=_("enabled"))
    allowed_tools = models.JSONField(
        default=list,
        blank=True,
        verbose_name=_("allowed tools"),
        help_text=_("A JSON list of the tool names offered to the LLM; empty: none."),
    )
    available_to_regular_users = models.BooleanField(
        default=False,
        verbose_name=_("available to regular users"),
        help_text=_("Off: only staff members' turns get these tools."),
    )
    created_at = models.DateTimeField(auto_now_add=True, verbose_name=_("created at"))
    updated_at = models.DateTimeField(auto_now=True, verbose_name=_("updated at"))

    class Meta:
        verbose_name = _("MCP server")
        verbose_name_plural = _("MCP servers")
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=Q(transport__in=["stdio", "http"]), name="mcpserver_transport_valid"),
            # Each transport has what it needs to connect.
            models.CheckConstraint(
                condition=(Q(transport="stdio") & ~Q(command="")) | (Q(transport="http") & ~Q(url="")),
                name="mcpserver_transport_target",
            ),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        from django.core.exceptions import ValidationError

        errors = {}
        if self.transport == self.Transport.STDIO and not self.command.strip():
            errors["command"] = _("A command server needs a command.")
        if self.transport == self.Transport.HTTP and not self.url.strip():
            errors["url"] = _("An HTTP server needs a URL.")
        if not isinstance(self.args, list) or not all(isinstance(a, str) for a in self.args):
            errors["args"] = _("A JSON list of strings.")
        for field in ("env", "headers"):
            value = getattr(self, field)
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                errors[field] = _("A JSON object of strings.")
        if not isinstance(self.allowed_tools, list) or not all(isinstance(a, str) for a in self.allowed_tools):
            errors["allowed_tools"] = _("A JSON list of strings.")
        if errors:
            raise ValidationError(errors)
