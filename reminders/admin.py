from django.contrib import admin

from .models import Reminder


@admin.register(Reminder)
class ReminderAdmin(admin.ModelAdmin):
    list_display = ("text", "owner", "due_at", "state", "fired_at")
    list_filter = ("state",)
    search_fields = ("text", "owner__username")
    raw_id_fields = ("owner", "conversation", "message")
    readonly_fields = ("created_at", "fired_at", "message")
