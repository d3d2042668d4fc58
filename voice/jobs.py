"""Starting voice jobs and listening to them, from the web process (consumers, views, commands).

One code path for both modes: a job is started either as a Celery task on the `asr`/`tts` queue
or in a thread of this process (embedded default), and its messages arrive on a channel-layer
channel either way. A job that goes quiet for too long is reported as an error, so a dead worker
never leaves a requester waiting. The web process never loads a model unless jobs run in-process.
"""

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections

from magicmirror import metrics
from magicmirror.logging import current_turn_id

from . import inbox, services

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None

TERMINAL_TYPES = {"voice.tts.done", "voice.tts.error", "voice.asr.final", "voice.asr.error"}


class JobTimeout(Exception):
    pass


class JobNotStarted(Exception):
    """The job could not be handed to a worker (the broker is unreachable)."""


def _thread_pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.VOICE_IN_PROCESS_THREADS, thread_name_prefix="voice-job")
    return _executor


def _in_process(loop, reply_to, service, **kwargs):
    layer = get_channel_layer()

    def send_once(message):
        # The in-memory layer belongs to the requester's event loop.
        sending = layer.send(reply_to, message)
        try:
            future = asyncio.run_coroutine_threadsafe(sending, loop)
        except RuntimeError as exc:  # the loop is closed: the requester is gone
            sending.close()
            raise services.RequesterGone(str(exc)) from None
        try:
            future.result(timeout=settings.VOICE_JOB_IDLE_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise services.RequesterGone("The requester's event loop did not take the message.") from None

    send = services.patient_sender(send_once, timeout=settings.VOICE_JOB_IDLE_TIMEOUT)
    _close_old_connections()  # as Celery does around a task: this thread may hold a stale connection
    try:
        service(send=send, **kwargs)
    finally:
        _close_old_connections()


def _close_old_connections():
    # Never let the check itself stop a job: the job reports its own database errors.
    try:
        close_old_connections()
    except Exception:
        logger.warning("Could not check this thread's database connections", exc_info=True)


def _log_failure(job_id, future):
    if not future.cancelled() and future.exception() is not None:
        logger.error("Voice job %s crashed", job_id, exc_info=future.exception())


def _start_in_process(service, reply_to, job_id, **kwargs) -> None:
    loop = asyncio.get_running_loop()
    call = functools.partial(_in_process, loop, reply_to, service, job_id=job_id, **kwargs)
    future = loop.run_in_executor(_thread_pool(), call)
    future.add_done_callback(functools.partial(_log_failure, job_id))


def _turn_kwargs(turn_id) -> dict:
    """`{"turn_id": ...}` for the job (the caller's, else the current log context's), or {} when none:
    a job without one is called exactly as before (older workers and stand-ins accept it)."""
    turn_id = turn_id if turn_id is not None else current_turn_id()
    return {} if turn_id is None else {"turn_id": turn_id}


async def _enqueue(task, args, kwargs=None) -> None:
    options = {"args": args, "expires": settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT}
    if kwargs:
        options["kwargs"] = kwargs
    try:
        await asyncio.to_thread(task.apply_async, **options)
    except Exception as exc:  # kombu's OperationalError and friends: the broker cannot be reached
        logger.warning("Could not queue %s: %s", task.name, exc)
        metrics.observe_error("voice_unavailable")
        raise JobNotStarted("The voice service cannot be reached right now.") from exc


async def tts_start(*, reply_to: str, text: str, speaker_id=None, engine_name=None, turn_id=None) -> str:
    """Start a synthesis; its messages go to `reply_to`. Raises JobNotStarted when no worker can be asked.

    `turn_id` (default: the current log context's) tags the job's log lines on the worker.
    """
    job_id = services.new_job_id()
    extra = _turn_kwargs(turn_id)
    if settings.VOICE_JOBS_IN_PROCESS:
        _start_in_process(
            services.tts_run,
            reply_to,
            job_id,
            text=text,
            speaker_id=speaker_id,
            engine_name=engine_name,
            cancelled=functools.partial(inbox.cancelled, job_id),
            **extra,
        )
    else:
        from .tasks import tts_synthesize

        await _enqueue(tts_synthesize, (reply_to, job_id, text, speaker_id, engine_name), extra)
    return job_id


async def asr_start(*, reply_to: str, phrases=None, turn_id=None) -> str:
    """Start a streaming recognition; feed it with `inbox.audio_put(job_id, pcm)`, end with `audio_end`."""
    job_id = services.new_job_id()
    extra = _turn_kwargs(turn_id)
    if settings.VOICE_JOBS_IN_PROCESS:
        inbox.open_local(job_id)
        _start_in_process(services.asr_run, reply_to, job_id, phrases=phrases, **extra)
    else:
        from .tasks import asr_stream

        await _enqueue(asr_stream, (reply_to, job_id, phrases), extra)
    return job_id


async def job_messages(channel: str, job_id: str) -> AsyncIterator[dict]:
    """Messages of one job on a private channel, until its terminal message.

    Raises JobTimeout if the first message takes longer than VOICE_JOB_FIRST_MESSAGE_TIMEOUT or
    any later one longer than VOICE_JOB_IDLE_TIMEOUT.
    """
    layer = get_channel_layer()
    timeout = settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    tts_started = tts_engine = None
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), max(0.0, deadline - loop.time()))
        except TimeoutError:
            metrics.observe_error("voice_worker_timeout")
            raise JobTimeout(f"The voice job {job_id} did not answer within {timeout:g} s.") from None
        if message.get("job_id") != job_id:
            continue  # a late message of an earlier job on a reused channel: does not reset the clock
        tts_started, tts_engine = _observe(message, tts_started, tts_engine)
        yield message
        if message["type"] in TERMINAL_TYPES:
            return
        timeout = settings.VOICE_JOB_IDLE_TIMEOUT
        deadline = loop.time() + timeout


def _observe(message: dict, tts_started, tts_engine):
    """Metrics from a job's messages (worker-side timings, on the worker's own clock)."""
    try:
        kind = message["type"]
        if kind == "voice.tts.chunk" and message.get("seq") == 0 and message.get("started") is not None:
            tts_started, tts_engine = message["started"], message.get("engine")
            metrics.observe_tts_first_chunk(message["t"] - tts_started, tts_engine)
        elif kind == "voice.tts.done" and tts_started is not None:
            metrics.observe_tts_rtf(message["t"] - tts_started, message.get("duration") or 0.0, tts_engine)
        elif kind.endswith(".error"):
            metrics.observe_error(message.get("code"))
    except (KeyError, TypeError):  # a message without timestamps: no metric, never a failed job
        pass
    return tts_started, tts_engine


async def new_reply_channel() -> str:
    # The default prefix matters: channels-redis serves all of a process's private channels from
    # one Redis list per prefix, read by whichever receive() holds its lock. A second prefix would
    # never be read while a consumer's own receive() holds that lock.
    return await get_channel_layer().new_channel()


def _error(kind: str, job_id: str | None, code: str, message: str) -> dict:
    return {"type": f"voice.{kind}.error", "job_id": job_id, "code": code, "message": message}


async def synthesize(*, text: str, speaker_id=None, engine_name=None) -> AsyncIterator[dict]:
    """Start a TTS job and yield its messages (chunks as produced, then done or error).

    Never raises for a job's failure: the last message is `voice.tts.done` or `voice.tts.error`
    (codes from the engine, `voice_unavailable` when the job could not be queued,
    `voice_worker_timeout` when no worker answered in time). Closing the generator early asks
    the job to stop.
    """
    channel = await new_reply_channel()
    try:
        job_id = await tts_start(reply_to=channel, text=text, speaker_id=speaker_id, engine_name=engine_name)
    except JobNotStarted as exc:
        yield _error("tts", None, "voice_unavailable", str(exc))
        return
    finished = False
    try:
        async for message in job_messages(channel, job_id):
            finished = message["type"] in TERMINAL_TYPES
            yield message
    except JobTimeout as exc:
        finished = True
        yield _error("tts", job_id, "voice_worker_timeout", str(exc))
    finally:
        if not finished:  # the caller stopped listening (client gone): stop the job
            with contextlib.suppress(Exception):
                await asyncio.shield(inbox.cancel(job_id))


async def recognize(*, pcm: bytes, phrases=None, chunk_bytes: int = 32000) -> dict:
    """Recognise a whole 16 kHz PCM16 buffer through the same streaming job as live audio.

    Returns the terminal message: `voice.asr.final` (with `text`) or `voice.asr.error`.
    """
    channel = await new_reply_channel()
    try:
        job_id = await asr_start(reply_to=channel, phrases=phrases)
    except JobNotStarted as exc:
        return _error("asr", None, "voice_unavailable", str(exc))
    for start in range(0, len(pcm), chunk_bytes):
        await inbox.audio_put(job_id, pcm[start : start + chunk_bytes])
    await inbox.audio_end(job_id)
    try:
        async for message in job_messages(channel, job_id):
            if message["type"] in TERMINAL_TYPES:
                return message
    except JobTimeout as exc:
        return _error("asr", job_id, "voice_worker_timeout", str(exc))
    raise AssertionError("unreachable")
