from django.urls import path

from . import api

api_urlpatterns = [
    path("memories", api.MemoryListApi.as_view(), name="api-memories"),
    path("memories/forget_all", api.MemoryForgetAllApi.as_view(), name="api-memories-forget-all"),
    path("memories/<int:memory_id>", api.MemoryDetailApi.as_view(), name="api-memory"),
    path("speakers/<int:speaker_id>/persona", api.SpeakerPersonaApi.as_view(), name="api-speaker-persona"),
    path("export", api.ExportApi.as_view(), name="api-export"),
]
