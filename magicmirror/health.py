"""Health: which parts the configuration needs, and whether each answers.

All three are unauthenticated (load balancers and orchestrators probe them) and reveal only
up/down per part, queue names and engine names:

* GET /health/live   liveness: the process answers HTTP. No dependency is asked, so a Redis or
                     MySQL outage never makes a supervisor restart healthy web processes.
* GET /health/ready  readiness: MySQL/SQLite, the channel layer (Redis), and, per queue the
                     configuration needs (default, VOICE_ASR_QUEUE, VOICE_TTS_QUEUE), at least one
                     Celery worker consuming it, with the engines those workers have loaded.
                     503 naming what is missing.
* GET /health        the original combined check (database, channel layer, any worker); kept as it
                     was for existing probes. 200 only when every part is up, else 503.
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
READY_WORKER_TIMEOUT = 1.0  # seconds to wait for workers' inspect replies (settings.HEALTH_WORKER_TIMEOUT)


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


@never_cache
@require_GET
def live(request):
    """Liveness: nothing but this process."""
    return JsonResponse({"ok": True})


def needed_queues() -> list[str]:
    """The Celery queues this configuration sends work to (none when everything runs in-process)."""
    queues = []
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        queues.append(settings.CELERY_TASK_DEFAULT_QUEUE)
    if not settings.VOICE_JOBS_IN_PROCESS:
        queues += [settings.VOICE_ASR_QUEUE, settings.VOICE_TTS_QUEUE]
    return queues


def _engine_names(answer) -> dict:
    """{"asr": "vosk", "tts": "piper"} from a worker's voice_engines reply (errors kept apart)."""
    engines = (answer or {}).get("engines") or {}
    names = {part: info.get("engine") for part, info in engines.items() if part != "errors" and isinstance(info, dict)}
    if engines.get("errors"):
        names["errors"] = engines["errors"]
    return names


def worker_coverage(timeout: float | None = None) -> dict:
    """Which worker consumes which queue, and the engines each has loaded.

    {"ok", "mode", "workers": {name: {"queues": [...], "engines": {...}}},
     "queues": {queue: {"ok", "workers": [...], "engines": {...}}}, "unserved_queues": [...]}
    In-process mode (embedded default) needs no worker: ok with no queues.
    """
    queues_needed = needed_queues()
    if not queues_needed:
        return {"ok": True, "mode": "in-process", "workers": {}, "queues": {}, "unserved_queues": []}
    timeout = getattr(settings, "HEALTH_WORKER_TIMEOUT", READY_WORKER_TIMEOUT) if timeout is None else timeout
    try:
        active = celery_app.control.inspect(timeout=timeout).active_queues() or {}
        engines = celery_app.control.broadcast("voice_engines", reply=True, timeout=timeout) or []
    except Exception as exc:  # the broker cannot be reached
        return {
            "ok": False,
            "mode": "celery",
            "error": type(exc).__name__,
            "workers": {},
            "queues": {q: {"ok": False, "workers": [], "engines": {}} for q in queues_needed},
            "unserved_queues": list(queues_needed),
        }
    workers: dict = {}
    for name, consumed in active.items():
        workers[name] = {"queues": sorted(q["name"] for q in consumed or []), "engines": None}
    for reply in engines:
        for name, answer in reply.items():
            workers.setdefault(name, {"queues": [], "engines": None})["engines"] = answer
    queues = {}
    for queue in queues_needed:
        serving = sorted(name for name, w in workers.items() if queue in w["queues"])
        queues[queue] = {
            "ok": bool(serving),
            "workers": serving,
            "engines": {name: _engine_names(workers[name]["engines"]) for name in serving},
        }
    unserved = [q for q, state in queues.items() if not state["ok"]]
    return {"ok": not unserved, "mode": "celery", "workers": workers, "queues": queues, "unserved_queues": unserved}


def readiness_report() -> dict:
    coverage = worker_coverage()
    checks = {
        "database": check_database(),
        "channel_layer": check_channel_layer(),
        "workers": {k: v for k, v in coverage.items() if k != "workers"}
        | {
            "workers": {
                name: {"queues": w["queues"], "engines": _engine_names(w["engines"])}
                for name, w in coverage["workers"].items()
            }
        },
    }
    return {"ok": all(c["ok"] for c in checks.values()), "embedded": settings.EMBEDDED, "checks": checks}


@never_cache
@require_GET
def ready(request):
    report = readiness_report()
    return JsonResponse(report, status=200 if report["ok"] else 503)
