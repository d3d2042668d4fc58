"""Starting voice jobs and listening to them, from the web process (consumers, views, commands).

One code path for both modes: a job is started either as a Celery task on the `asr`/`tts` queue
or in a thread of this process (embedded default), and its messages arrive on a channel-layer
channel either way. A job that goes quiet for too long is reported as an error, so a dead worker
never leaves a requester waiting.
"""

import asyncio
import functools
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from channels.layers import get_channel_layer
from django.conf import settings

from . import inbox, services

_executor: ThreadPoolExecutor | None = None

TERMINAL_TYPES = {"voice.tts.done", "voice.tts.error", "voice.asr.final", "voice.asr.error"}


class JobTimeout(Exception):
    pass


def _thread_pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.VOICE_IN_PROCESS_THREADS, thread_name_prefix="voice-job")
    return _executor


def _in_process(loop, reply_to, service, **kwargs):
    layer = get_channel_layer()

    def send(message):
        # The in-memory layer belongs to the web process's event loop.
        asyncio.run_coroutine_threadsafe(layer.send(reply_to, message), loop).result()

    service(send=send, **kwargs)


async def tts_start(*, reply_to: str, text: str, speaker_id=None, engine_name=None) -> str:
    job_id = services.new_job_id()
    if settings.VOICE_JOBS_IN_PROCESS:
        loop = asyncio.get_running_loop()
        call = functools.partial(
            _in_process, loop, reply_to, services.tts_run, job_id=job_id, text=text, speaker_id=speaker_id, engine_name=engine_name
        )
        loop.run_in_executor(_thread_pool(), call)
    else:
        from .tasks import tts_synthesize

        await asyncio.to_thread(
            tts_synthesize.apply_async,
            args=(reply_to, job_id, text, speaker_id, engine_name),
            expires=settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT,
        )
    return job_id


async def asr_start(*, reply_to: str, phrases=None) -> str:
    """Start a streaming recognition; feed it with `inbox.audio_put(job_id, pcm)`, end with `audio_end`."""
    job_id = services.new_job_id()
    if settings.VOICE_JOBS_IN_PROCESS:
        loop = asyncio.get_running_loop()
        call = functools.partial(_in_process, loop, reply_to, services.asr_run, job_id=job_id, phrases=phrases)
        loop.run_in_executor(_thread_pool(), call)
    else:
        from .tasks import asr_stream

        await asyncio.to_thread(
            asr_stream.apply_async, args=(reply_to, job_id, phrases), expires=settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT
        )
    return job_id


async def job_messages(channel: str, job_id: str) -> AsyncIterator[dict]:
    """Messages of one job on a private channel, until its terminal message.

    Raises JobTimeout if the first message takes longer than VOICE_JOB_FIRST_MESSAGE_TIMEOUT or
    any later one longer than VOICE_JOB_IDLE_TIMEOUT.
    """
    layer = get_channel_layer()
    timeout = settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(channel), timeout)
        except TimeoutError:
            raise JobTimeout(f"The voice job {job_id} did not answer within {timeout:g} s.") from None
        if message.get("job_id") != job_id:
            continue  # a late message of an earlier job on a reused channel
        yield message
        if message["type"] in TERMINAL_TYPES:
            return
        timeout = settings.VOICE_JOB_IDLE_TIMEOUT


async def new_reply_channel() -> str:
    return await get_channel_layer().new_channel("voice.")


async def synthesize(*, text: str, speaker_id=None, engine_name=None) -> AsyncIterator[dict]:
    """Start a TTS job and yield its messages (chunks as produced, then done or error)."""
    channel = await new_reply_channel()
    job_id = await tts_start(reply_to=channel, text=text, speaker_id=speaker_id, engine_name=engine_name)
    try:
        async for message in job_messages(channel, job_id):
            yield message
    except JobTimeout as exc:
        yield {"type": "voice.tts.error", "job_id": job_id, "code": "voice_worker_timeout", "message": str(exc)}


async def recognize(*, pcm: bytes, phrases=None, chunk_bytes: int = 32000) -> dict:
    """Recognise a whole 16 kHz PCM16 buffer through the same streaming job as live audio."""
    channel = await new_reply_channel()
    job_id = await asr_start(reply_to=channel, phrases=phrases)
    for start in range(0, len(pcm), chunk_bytes):
        await inbox.audio_put(job_id, pcm[start : start + chunk_bytes])
    await inbox.audio_end(job_id)
    try:
        async for message in job_messages(channel, job_id):
            if message["type"] in TERMINAL_TYPES:
                return message
    except JobTimeout as exc:
        return {"type": "voice.asr.error", "job_id": job_id, "code": "voice_worker_timeout", "message": str(exc)}
    raise AssertionError("unreachable")
