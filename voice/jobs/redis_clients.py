"""The Redis clients of the job path (audio streams, cancellation flags): one async client per event
loop, one thread-safe sync client per process."""

import asyncio
import threading
import weakref
from typing import Any

from django.conf import settings

_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any]" = weakref.WeakKeyDictionary()
_sync_client: Any = None
_sync_lock = threading.Lock()


def async_client() -> Any:
    """redis.asyncio connections belong to the loop that opened them (async_to_sync, tests and
    daphne each run their own): keep one client per loop."""
    import redis.asyncio as aioredis

    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = aioredis.Redis.from_url(settings.REDIS_URL)
    return client


def sync_client() -> Any:
    global _sync_client
    if _sync_client is None:
        import redis

        with _sync_lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(settings.REDIS_URL)
    return _sync_client


def key(name: str, job_id: str) -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}:{name}:{job_id}"
