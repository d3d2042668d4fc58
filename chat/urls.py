from django.urls import path

from . import api, views

app_name = "chat"

urlpatterns = [
    path("", views.home, name="home"),
]

api_urlpatterns = [
    path("conversations", api.ConversationListApi.as_view(), name="api-conversations"),
    path("conversations/<int:conversation_id>", api.ConversationDetailApi.as_view(), name="api-conversation"),
    path("chat", api.ChatApi.as_view(), name="api-chat"),
    path("clear_history", api.ClearHistoryApi.as_view(), name="api-clear-history"),
]
