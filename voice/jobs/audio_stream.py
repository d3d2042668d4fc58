"""Audio on its way to a streaming recognition job: in order, with little overhead.

Two implementations of one interface, picked by voice.jobs.backends: one Redis stream per
utterance (XADD by the web process, XREAD BLOCK by the worker holding the recogniser), or a
queue.Queue inside the web process (embedded default). Both carry the same items: PCM16 chunks,
then an end marker.
"""

import queue
import threading
import time
from collections.abc import Iterator

from . import redis_clients

END = b""  # an empty chunk ends the utterance
STREAM_TTL_S = 300


class AudioTimeout(Exception):
    """No audio arrived for the job's idle timeout (the requester went away)."""


class LocalAudioStreams:
    """In-process queues. A job's queue exists from `open` (called when the job is started) until
    the job has read its end marker or given up; audio for a job that no longer exists is dropped,
    not kept forever."""

    def __init__(self) -> None:
        self._queues: dict[str, queue.Queue[bytes]] = {}
        self._lock = threading.Lock()

    def open(self, job_id: str) -> None:
        with self._lock:
            self._queues.setdefault(job_id, queue.Queue())

    async def put(self, job_id: str, pcm: bytes) -> None:
        with self._lock:
            q = self._queues.get(job_id)
        if q is not None:
            q.put(pcm)

    def chunks(self, job_id: str, idle_timeout: float) -> Iterator[bytes]:
        with self._lock:
            q = self._queues.setdefault(job_id, queue.Queue())
        try:
            while True:
                try:
                    chunk = q.get(timeout=idle_timeout)
                except queue.Empty:
                    raise AudioTimeout() from None
                if chunk == END:
                    return
                yield chunk
        finally:
            self.discard(job_id)

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._queues.pop(job_id, None)


class RedisAudioStreams:
    """One Redis stream per utterance; it expires STREAM_TTL_S after its last chunk."""

    def open(self, job_id: str) -> None:
        pass  # XADD creates the stream

    async def put(self, job_id: str, pcm: bytes) -> None:
        key = redis_clients.key("asr-audio", job_id)
        async with redis_clients.async_client().pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"a": pcm})
            pipe.expire(key, STREAM_TTL_S)
            await pipe.execute()

    def chunks(self, job_id: str, idle_timeout: float) -> Iterator[bytes]:
        client = redis_clients.sync_client()
        key, last_id = redis_clients.key("asr-audio", job_id), "0-0"
        try:
            while True:
                started = time.monotonic()
                reply = client.xread({key: last_id}, count=100, block=max(1, int(idle_timeout * 1000)))
                if not reply:
                    if time.monotonic() - started >= idle_timeout * 0.9:
                        raise AudioTimeout()
                    continue
                for _stream, entries in reply:
                    for entry_id, fields in entries:
                        last_id = entry_id
                        chunk = fields.get(b"a", END)
                        if chunk == END:
                            return
                        yield chunk
        finally:
            self.discard(job_id)

    def discard(self, job_id: str) -> None:
        redis_clients.sync_client().delete(redis_clients.key("asr-audio", job_id))
