from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from .models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    fields = ["created_at", "role", "source", "content", "interrupted", "error_code"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "message_count", "created_at", "updated_at"]
    list_filter = ["created_at", "updated_at"]
    search_fields = ["title", "owner__username", "messages__content"]
    list_select_related = ["owner"]
    readonly_fields = ["created_at", "updated_at"]
    fields = ["owner", "title", "title_is_final", "created_at", "updated_at"]
    inlines = [MessageInline]
    show_full_result_count = False

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False

    @admin.display(description=_("messages"))
    def message_count(self, obj):
        return obj.messages.count()


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "conversation", "role", "source", "short_content", "interrupted", "created_at"]
    list_filter = ["role", "source", "interrupted"]
    search_fields = ["content", "conversation__title", "conversation__owner__username"]
    list_select_related = ["conversation"]
    readonly_fields = [
        "conversation",
        "role",
        "source",
        "content",
        "interrupted",
        "error_code",
        "speaker",
        "created_at",
    ]

    def has_add_permission(self, request):
        return False

    @admin.display(description=_("content"))
    def short_content(self, obj):
        return obj.content[:80]
