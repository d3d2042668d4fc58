"""Health: which parts the configuration needs, and whether each answers.

GET /health is unauthenticated (load balancers probe it) and reveals only up/down per part.
200 only when every part the configuration needs is up, else 503.
"""

import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from .celery import app as celery_app

WORKER_PING_TIMEOUT = 1.0


def check_database() -> dict:
    started = time.perf_counter()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "vendor": connection.vendor, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_channel_layer() -> dict:
    """Round-trip one message through the channel layer (Redis in production)."""
    layer = get_channel_layer()
    backend = type(layer).__name__
    started = time.perf_counter()

    async def roundtrip():
        channel = await layer.new_channel("health.")
        await layer.send(channel, {"type": "health.ping"})
        return await layer.receive(channel)

    try:
        message = async_to_sync(roundtrip)()
    except Exception as exc:
        return {"ok": False, "backend": backend, "error": type(exc).__name__}
    ok = message.get("type") == "health.ping"
    return {"ok": ok, "backend": backend, "ms": round((time.perf_counter() - started) * 1000, 1)}


def check_workers() -> dict:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return {"ok": True, "mode": "in-process", "workers": []}
    try:
        replies = celery_app.control.ping(timeout=WORKER_PING_TIMEOUT) or []
    except Exception as exc:
        return {"ok": False, "mode": "celery", "error": type(exc).__name__, "workers": []}
    names = sorted(name for reply in replies for name in reply)
    return {"ok": bool(names), "mode": "celery", "workers": names}


def health_report() -> dict:
    checks = {
        "database": check_database(),
        "channel_layer": check_channel_layer(),
        "workers": check_workers(),
    }
    return {"ok": all(c["ok"] for c in checks.values()), "embedded": settings.EMBEDDED, "checks": checks}


@never_cache
@require_GET
def health(request):
    report = health_report()
    return JsonResponse(report, status=200 if report["ok"] else 503)
