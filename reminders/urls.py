from django.urls import path

from . import api

api_urlpatterns = [
    path("reminders", api.ReminderListApi.as_view(), name="api-reminders"),
    path("reminders/<int:reminder_id>", api.ReminderDetailApi.as_view(), name="api-reminder"),
]
