from django.contrib import admin

from .models import ConversationMemory, Memory, MemoryProfile, SpeakerPersona


@admin.register(Memory)
class MemoryAdmin(admin.ModelAdmin):
    list_display = ["text", "owner", "source", "created_at", "confirmed_at"]
    list_filter = ["source"]
    search_fields = ["text", "owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner", "source_message"]
    readonly_fields = ["created_at", "updated_at"]
    date_hierarchy = "confirmed_at"


@admin.register(MemoryProfile)
class MemoryProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "enabled", "persona_name", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["user__username", "persona_name"]
    raw_id_fields = ["user"]


@admin.register(SpeakerPersona)
class SpeakerPersonaAdmin(admin.ModelAdmin):
    list_display = ["speaker", "name", "updated_at"]
    search_fields = ["speaker__name", "speaker__owner__username", "name"]
    raw_id_fields = ["speaker"]


@admin.register(ConversationMemory)
class ConversationMemoryAdmin(admin.ModelAdmin):
    list_display = ["conversation", "extracted_through", "summary_through", "last_error", "updated_at"]
    list_filter = ["last_error"]
    search_fields = ["conversation__title", "conversation__owner__username", "summary"]
    raw_id_fields = ["conversation"]
