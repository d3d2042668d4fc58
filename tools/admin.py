from django.contrib import admin
from django.db import models
from django.utils.translation import gettext_lazy as _

from .models import McpServer


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    """Staff only (the admin): regular users can neither add servers nor see them."""

    list_display = ("name", "transport", "target", "enabled", "available_to_regular_users", "updated_at")
    list_filter = ("transport", "enabled", "available_to_regular_users")
    search_fields = ("name", "command", "url")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # a URL typed without a scheme
    fieldsets = (
        (None, {"fields": ("name", "enabled", "available_to_regular_users", "allowed_tools")}),
        (_("Command (stdio)"), {"fields": ("command", "args", "env")}),
        (_("Streamable HTTP"), {"fields": ("url", "headers")}),
        (None, {"fields": ("transport",)}),
    )

    @admin.display(description=_("command or URL"))
    def target(self, obj):
        return obj.command if obj.transport == McpServer.Transport.STDIO else obj.url
