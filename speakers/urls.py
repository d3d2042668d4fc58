from django.urls import path

from . import api, views

app_name = "speakers"

urlpatterns = [
    path("profile/", views.profile, name="profile"),
]

api_urlpatterns = [
    path("speakers", api.SpeakerListApi.as_view(), name="api-speakers"),
    path("speakers/<int:speaker_id>", api.SpeakerDetailApi.as_view(), name="api-speaker"),
    path("speakers/<int:speaker_id>/switch", api.SpeakerSwitchApi.as_view(), name="api-speaker-switch"),
    path("speakers/<int:speaker_id>/audio", api.SpeakerAudioApi.as_view(), name="api-speaker-audio"),
    path("settings", api.SettingsApi.as_view(), name="api-settings"),
]
