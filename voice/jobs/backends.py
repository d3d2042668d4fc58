"""Where voice jobs run, chosen in this one place: `current()`.

* Workers (production, REDIS_URL set): a job is a Celery task on the `asr`/`tts` queue; audio to a
  recognition job and sentences to a synthesis stream travel through Redis streams; cancellation
  flags are Redis keys.
* In-process (embedded default, VOICE_JOBS_IN_PROCESS): a job runs in a thread of the web process;
  its inbox and flags stay in memory.

Either way the job's messages come back through the channel layer (voice.jobs.sending), so the
requester's code is the same in both modes.
"""

import asyncio
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from magicmirror import metrics

from .cancellation import LocalCancelFlags, RedisCancelFlags
from .inbox import LocalInbox, RedisInbox

logger = logging.getLogger(__name__)


class JobNotStarted(Exception):
    """The job could not be handed to a worker (the broker is unreachable)."""


class InProcessBackend:
    name = "in-process"

    def __init__(self) -> None:
        self.audio = LocalInbox("asr-audio")  # PCM16 to a recognition job
        self.text = LocalInbox("tts-text")  # sentences to a turn's synthesis stream
        self.cancel_flags = LocalCancelFlags()
        self._executor: ThreadPoolExecutor | None = None

    async def start(self, kind: str, *, reply_to: str, job_id: str, **kwargs: Any) -> None:
        from . import runners

        if kind == "asr":
            self.audio.open(job_id)
        elif kind == "tts_stream":
            self.text.open(job_id)
        if kind in ("tts", "tts_stream"):
            kwargs["cancelled"] = functools.partial(self.cancel_flags.cancelled, job_id)
        loop = asyncio.get_running_loop()
        call = functools.partial(self._run, loop, runners.runner(kind), reply_to, job_id=job_id, **kwargs)
        future = loop.run_in_executor(self._thread_pool(), call)
        future.add_done_callback(functools.partial(_log_failure, job_id))
        metrics.voice_job_started(kind)

    def _thread_pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=settings.VOICE_IN_PROCESS_THREADS, thread_name_prefix="voice-job"
            )
        return self._executor

    @staticmethod
    def _run(loop, runner, reply_to, **kwargs) -> None:
        from .sending import on_requester_loop, requester_sender

        send = requester_sender(reply_to, on_requester_loop(loop))
        _close_old_connections()  # as Celery does around a task: this thread may hold a stale connection
        try:
            runner(send=send, **kwargs)
        finally:
            _close_old_connections()


class WorkerBackend:
    name = "workers"

    def __init__(self) -> None:
        self.audio = RedisInbox("asr-audio")
        self.text = RedisInbox("tts-text")
        self.cancel_flags = RedisCancelFlags()

    async def start(self, kind: str, *, reply_to: str, job_id: str, **kwargs: Any) -> None:
        from . import tasks

        task = tasks.TASKS[kind]
        try:
            await asyncio.to_thread(
                task.apply_async,
                kwargs={"reply_to": reply_to, "job_id": job_id, **kwargs},
                expires=settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT,
            )
        except Exception as exc:  # kombu's OperationalError and friends: the broker cannot be reached
            logger.warning("Could not queue %s: %s", task.name, exc)
            metrics.observe_error("voice_unavailable")
            raise JobNotStarted("The voice service cannot be reached right now.") from exc
        metrics.voice_job_started(kind)


IN_PROCESS = InProcessBackend()
WORKERS = WorkerBackend()


def current() -> InProcessBackend | WorkerBackend:
    """The backend of this process (read at each call: tests switch VOICE_JOBS_IN_PROCESS)."""
    return IN_PROCESS if settings.VOICE_JOBS_IN_PROCESS else WORKERS


def _close_old_connections() -> None:
    # Never let the check itself stop a job: the job reports its own database errors.
    try:
        close_old_connections()
    except Exception:
        logger.warning("Could not check this thread's database connections", exc_info=True)


def _log_failure(job_id, future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("Voice job %s crashed", job_id, exc_info=future.exception())
