"""Audio on its way to a streaming recognition job, in order, with little overhead; and the
cancellation flag of a job whose requester went away.

Production: one Redis stream per utterance (XADD by the web process, XREAD BLOCK by the worker
holding the recogniser). Embedded default: a queue.Queue inside the web process. Both carry the
same items: PCM16 chunks, then an end marker.
"""

import asyncio
import queue
import threading
import time
import weakref
from collections.abc import Iterator

from django.conf import settings

END = b""  # an empty chunk ends the utterance
STREAM_TTL_S = 300
CANCEL_TTL_S = 600


class InboxTimeout(Exception):
    pass


def _key(job_id: str) -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}:asr-audio:{job_id}"


def _cancel_key(job_id: str) -> str:
    return f"{settings.CHANNEL_LAYER_PREFIX}:voice-cancel:{job_id}"


# -- embedded: in-process queues ----------------------------------------------------------------
# A job's queue exists from `open_local` (called when the job is started) until the job has read
# its end marker or given up; audio for a job that no longer exists is dropped, not kept forever.
_local: dict[str, "queue.Queue[bytes]"] = {}
_local_cancelled: dict[str, float] = {}  # job id -> when it was cancelled
_local_lock = threading.Lock()


def open_local(job_id: str) -> None:
    with _local_lock:
        _local.setdefault(job_id, queue.Queue())


def _local_put(job_id: str, pcm: bytes) -> None:
    with _local_lock:
        q = _local.get(job_id)
    if q is not None:
        q.put(pcm)


# -- Redis clients: one async client per event loop, one thread-safe sync client per process ----
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()
_sync_client = None
_sync_lock = threading.Lock()


def _async_client():
    """redis.asyncio connections belong to the loop that opened them (async_to_sync, tests and
    daphne each run their own): keep one client per loop."""
    import redis.asyncio as aioredis

    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = aioredis.Redis.from_url(settings.REDIS_URL)
    return client


def _client():
    global _sync_client
    if _sync_client is None:
        import redis

        with _sync_lock:
            if _sync_client is None:
                _sync_client = redis.Redis.from_url(settings.REDIS_URL)
    return _sync_client


# -- producer side (web process) ---------------------------------------------------------------
async def audio_put(job_id: str, pcm: bytes) -> None:
    if settings.VOICE_JOBS_IN_PROCESS:
        _local_put(job_id, pcm)
        return
    key = _key(job_id)
    async with _async_client().pipeline(transaction=False) as pipe:
        pipe.xadd(key, {"a": pcm})
        pipe.expire(key, STREAM_TTL_S)
        await pipe.execute()


async def audio_end(job_id: str) -> None:
    await audio_put(job_id, END)


def audio_put_sync(job_id: str, pcm: bytes) -> None:
    """For synchronous callers (HTTP upload recognition)."""
    if settings.VOICE_JOBS_IN_PROCESS:
        _local_put(job_id, pcm)
        return
    key = _key(job_id)
    with _client().pipeline(transaction=False) as pipe:
        pipe.xadd(key, {"a": pcm})
        pipe.expire(key, STREAM_TTL_S)
        pipe.execute()


# -- consumer side (worker thread, sync) -------------------------------------------------------
def audio_chunks(job_id: str, idle_timeout: float) -> Iterator[bytes]:
    """Yield the utterance's chunks in order until its end marker.

    Raises InboxTimeout when nothing arrives for `idle_timeout` seconds (the client went away).
    """
    if settings.VOICE_JOBS_IN_PROCESS:
        with _local_lock:
            q = _local.setdefault(job_id, queue.Queue())
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
            discard(job_id)
    client = _client()
    key, last_id = _key(job_id), "0-0"
    try:
        while True:
            started = time.monotonic()
            reply = client.xread({key: last_id}, count=100, block=max(1, int(idle_timeout * 1000)))
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
        discard(job_id)


def discard(job_id: str) -> None:
    """Drop whatever audio of the job is still waiting (the job ended or failed)."""
    if settings.VOICE_JOBS_IN_PROCESS:
        with _local_lock:
            _local.pop(job_id, None)
        return
    _client().delete(_key(job_id))


# -- cancellation: the requester went away, the job should stop producing ---------------------
async def cancel(job_id: str) -> None:
    if settings.VOICE_JOBS_IN_PROCESS:
        now = time.monotonic()
        with _local_lock:
            # Flags of jobs that ended long ago are forgotten; a job checks its flag while it runs.
            for stale in [j for j, at in _local_cancelled.items() if now - at > CANCEL_TTL_S]:
                del _local_cancelled[stale]
            _local_cancelled[job_id] = now
        return
    await _async_client().set(_cancel_key(job_id), b"1", ex=CANCEL_TTL_S)


def cancelled(job_id: str) -> bool:
    """Whether the job's requester cancelled it (checked by the job between pieces of work)."""
    if settings.VOICE_JOBS_IN_PROCESS:
        with _local_lock:
            return job_id in _local_cancelled
    return bool(_client().exists(_cancel_key(job_id)))
