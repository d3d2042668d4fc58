"""ASGI entry point, served by daphne: HTTP through Django, WebSockets (voice) through Channels."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicmirror.settings")

django_asgi_app = get_asgi_application()

# Django must be set up before these import models.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from live.routing import websocket_urlpatterns  # noqa: E402
from magicmirror.graceful import GracefulShutdown, patch_daphne_shutdown  # noqa: E402
from magicmirror.request_bodies import leave_request_bodies_to_django  # noqa: E402
from magicmirror.websocket_limits import limit_websocket_payload  # noqa: E402
from reminders.clock import StartClock  # noqa: E402

router = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Session auth from the cookie; the Origin header must be one of ALLOWED_HOSTS.
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# On SIGTERM a reply in flight is saved before daphne exits (magicmirror/graceful.py).
patch_daphne_shutdown()
# Oversized WebSocket frames are refused as their header arrives, never buffered (magicmirror/websocket_limits.py).
limit_websocket_payload(settings.VOICE_WS_MAX_FRAME_BYTES)
# Form bodies are parsed by Django alone, never first by Twisted (magicmirror/request_bodies.py).
leave_request_bodies_to_django()
# The embedded default runs the voice jobs here: their engines load in the background from now on.
if settings.VOICE_PRELOAD_IN_PROCESS:
    from voice.jobs.worker import preload_in_background

    preload_in_background()
# The embedded default fires due reminders on this process's loop, from its first connection (reminders/clock.py).
application = StartClock(GracefulShutdown(router, timeout=settings.SHUTDOWN_GRACE_SECONDS))
