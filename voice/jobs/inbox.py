"""What a requester feeds a running job, in order, with little overhead: PCM16 audio to a recognition
job, sentences to a turn's synthesis stream.

Two implementations of one interface, picked by voice.jobs.backends: one Redis stream per job
(XADD by the web process, XREAD BLOCK by the worker running the job), or a queue.Queue inside the
web process (embedded default). Both carry the same items (bytes), then an end marker. Each kind of
job has its own inbox (`name`), so one job id never reads another kind's items.
"""

import queue
import threading
import time
from collections.abc import Iterator

from . import redis_clients

END = b""  # an empty item ends the job's input
STREAM_TTL_S = 300


class InboxTimeout(Exception):
    """Nothing arrived for the job's idle timeout (the requester went away)."""


class LocalInbox:
    """In-process queues. A job's queue exists from `open` (called when the job is started) until
    the job has read its end marker or given up; items for a job that no longer exists are dropped,
    not kept forever."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queues: dict[str, queue.Queue[bytes]] = {}
        # Reentrant: an abandoned `items` generator may be finalised by the garbage collector while this
        # thread holds the lock (in `open`), and its `finally` discards its queue under the lock too.
        self._lock = threading.RLock()

    def open(self, job_id: str) -> None:
        with self._lock:
            self._queues.setdefault(job_id, queue.Queue())

    async def put(self, job_id: str, item: bytes) -> None:
        with self._lock:
            q = self._queues.get(job_id)
        if q is not None:
            q.put(item)

    def items(self, job_id: str, idle_timeout: float) -> Iterator[bytes]:
        with self._lock:
            q = self._queues.setdefault(job_id, queue.Queue())
        try:
            while True:
                try:
                    item = q.get(timeout=idle_timeout)
                except queue.Empty:
                    raise InboxTimeout() from None
                if item == END:
                    return
                yield item
        finally:
            self.discard(job_id)

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._queues.pop(job_id, None)


class RedisInbox:
    """One Redis stream per job; it expires STREAM_TTL_S after its last item."""

    def __init__(self, name: str) -> None:
        self.name = name

    def open(self, job_id: str) -> None:
        pass  # XADD creates the stream

    async def put(self, job_id: str, item: bytes) -> None:
        key = redis_clients.key(self.name, job_id)
        async with redis_clients.async_client().pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"a": item})
            pipe.expire(key, STREAM_TTL_S)
            await pipe.execute()

    def items(self, job_id: str, idle_timeout: float) -> Iterator[bytes]:
        client = redis_clients.sync_client()
        key, last_id = redis_clients.key(self.name, job_id), "0-0"
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
                        item = fields.get(b"a", END)
                        if item == END:
                            return
                        yield item
        finally:
            self.discard(job_id)

    def discard(self, job_id: str) -> None:
        redis_clients.sync_client().delete(redis_clients.key(self.name, job_id))
