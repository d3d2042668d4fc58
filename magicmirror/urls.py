from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.utils.decorators import method_decorator
from drf_spectacular.views import SpectacularAPIView
from rest_framework.authtoken.views import ObtainAuthToken

from chat.urls import api_urlpatterns as chat_api
from memory.urls import api_urlpatterns as memory_api
from reminders.urls import api_urlpatterns as reminders_api
from speakers.urls import api_urlpatterns as speakers_api
from voice.tts_api import tts_api_urlpatterns
from voice.urls import api_urlpatterns as voice_api

from . import accounts, health, metrics

handler400 = "magicmirror.views.bad_request"
handler404 = "magicmirror.views.not_found"
handler500 = "magicmirror.views.server_error"

token_view = method_decorator(accounts.login_throttle, name="post")(ObtainAuthToken)

# The admin's log-in form and the API's token route are throttled like the site's log-in, on the same
# counters (before admin.site.urls below reads it).
admin.site.login = accounts.login_throttle(admin.site.login)

api_patterns = [
    *chat_api,
    *speakers_api,
    *memory_api,
    *reminders_api,
    *voice_api,
    *tts_api_urlpatterns,
    path("auth/token", token_view.as_view(), name="api-token"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
]

urlpatterns = [
    path("", include("chat.urls")),
    path("accounts/", include("speakers.urls")),
    path("accounts/login/", accounts.RateLimitedLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/register/", accounts.register, name="register"),
    path("accounts/password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("api/", include(api_patterns)),
    path("health", health.health, name="health"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", metrics.metrics_view, name="metrics"),
]
# MEDIA_ROOT is never served as such: reference voices are private, served per owner through
# /api/speakers/<id>/audio (and to staff through the admin).
