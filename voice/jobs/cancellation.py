"""The cancellation flag of a job whose requester went away: set by the requester, asked by the job
between pieces of work. Two implementations of one interface, picked by voice.jobs.backends."""

import threading
import time

from . import redis_clients

CANCEL_TTL_S = 600


class LocalCancelFlags:
    def __init__(self) -> None:
        self._cancelled: dict[str, float] = {}  # job id -> when it was cancelled
        self._lock = threading.Lock()

    async def cancel(self, job_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            # Flags of jobs that ended long ago are forgotten; a job checks its flag while it runs.
            for stale in [j for j, at in self._cancelled.items() if now - at > CANCEL_TTL_S]:
                del self._cancelled[stale]
            self._cancelled[job_id] = now

    def cancelled(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancelled


class RedisCancelFlags:
    async def cancel(self, job_id: str) -> None:
        await redis_clients.async_client().set(redis_clients.key("voice-cancel", job_id), b"1", ex=CANCEL_TTL_S)

    def cancelled(self, job_id: str) -> bool:
        return bool(redis_clients.sync_client().exists(redis_clients.key("voice-cancel", job_id)))
