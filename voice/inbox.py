"""Audio on its way to a streaming recognition job, in order, with little overhead.

Production: one Redis stream per utterance (XADD by the web process, XREAD BLOCK by the worker
holding the recogniser). Embedded default: a queue.Queue inside the web process. Both carry the
same items: PCM16 chunks, then an end marker.
"""

import queue
import threading
import time
from collections.abc import Iterator

from django.conf import settings

END = b""  # an empty chunk ends the utterance
STREAM_TTL_S = 300


class InboxTimeout(Exception):
    pass


def _key(job_id: str) -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}:asr-audio:{job_id}"


# -- embedded: in-process queues ----------------------------------------------------------------
_local: dict[str, "queue.Queue[bytes]"] = {}
_local_lock = threading.Lock()


def _local_queue(job_id: str) -> "queue.Queue[bytes]":
    with _local_lock:
        return _local.setdefault(job_id, queue.Queue())


# -- producer side (web process, async) --------------------------------------------------------
_redis_async = None


def _async_client():
    global _redis_async
    import redis.asyncio as aioredis

    if _redis_async is None:
        _redis_async = aioredis.Redis.from_url(settings.REDIS_URL)
    return _redis_async


async def audio_put(job_id: str, pcm: bytes) -> None:
    if settings.VOICE_JOBS_IN_PROCESS:
        _local_queue(job_id).put(pcm)
        return
    client = _async_client()
    key = _key(job_id)
    async with client.pipeline(transaction=False) as pipe:
        pipe.xadd(key, {"a": pcm})
        pipe.expire(key, STREAM_TTL_S)
        await pipe.execute()


async def audio_end(job_id: str) -> None:
    await audio_put(job_id, END)


def audio_put_sync(job_id: str, pcm: bytes) -> None:
    """For synchronous callers (HTTP upload recognition)."""
    if settings.VOICE_JOBS_IN_PROCESS:
        _local_queue(job_id).put(pcm)
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    key = _key(job_id)
    with client.pipeline(transaction=False) as pipe:
        pipe.xadd(key, {"a": pcm})
        pipe.expire(key, STREAM_TTL_S)
        pipe.execute()


# -- consumer side (worker thread, sync) -------------------------------------------------------
def audio_chunks(job_id: str, idle_timeout: float) -> Iterator[bytes]:
    """Yield the utterance's chunks in order until its end marker.

    Raises InboxTimeout when nothing arrives for `idle_timeout` seconds (the client went away).
    """
    if settings.VOICE_JOBS_IN_PROCESS:
        q = _local_queue(job_id)
        try:
            while True:
                try:
                    chunk = q.get(timeout=idle_timeout)
                except queue.Empty:
                    raise InboxTimeout() from None
                if chunk == END:
                    return
                yield chunk
        finally:
            with _local_lock:
                _local.pop(job_id, None)
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    key, last_id = _key(job_id), "0-0"
    try:
        while True:
            started = time.monotonic()
            reply = client.xread({key: last_id}, count=100, block=int(idle_timeout * 1000))
            if not reply:
                if time.monotonic() - started >= idle_timeout * 0.9:
                    raise InboxTimeout()
                continue
            for _stream, entries in reply:
                for entry_id, fields in entries:
                    last_id = entry_id
                    chunk = fields.get(b"a", END)
                    if chunk == END:
                        return
                    yield chunk
    finally:
        client.delete(key)
        client.close()
