"""The requester's side of voice jobs (consumers, views, commands): start a job, feed it, listen to it.

One code path for both modes: a job is started on the current backend (voice.jobs.backends: a
Celery worker, or a thread of this process in the embedded default), and its messages arrive on a
private channel-layer channel either way. A job that goes quiet for too long is reported as an
error, so a dead worker never leaves a requester waiting. The web process never loads a model
unless jobs run in-process.
"""

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable

from channels.layers import get_channel_layer
from django.conf import settings

from magicmirror import metrics
from magicmirror.logging import current_trace_id

from . import backends, messages
from .backends import JobNotStarted
from .inbox import END
from .messages import TERMINAL_TYPES, new_job_id
from .receiving import ChannelReader

# While a job may rightly stay silent (the user is still talking), its channel is looked at this often.
QUIET_POLL_S = 0.25


class JobTimeout(Exception):
    pass


def _trace_kwargs(trace_id) -> dict:
    """`{"trace_id": ...}` for the job (the caller's, else the current log context's), or {} when none."""
    trace_id = trace_id if trace_id is not None else current_trace_id()
    return {} if trace_id is None else {"trace_id": trace_id}


async def new_reply_channel() -> str:
    # The default prefix matters: channels-redis serves all of a process's private channels from
    # one Redis list per prefix, read by whichever receive() holds its lock. A second prefix would
    # never be read while a consumer's own receive() holds that lock.
    return await get_channel_layer().new_channel()


async def tts_start(
    *, reply_to: str, text: str, speaker_id=None, engine_name=None, trace_id=None, language=None
) -> str:
    """Start a synthesis; its messages go to `reply_to`. Raises JobNotStarted when no worker can be asked.
    `language`: the user's, the tie-breaker for sentences whose script does not tell (voice.jobs.runners).

    `trace_id` (default: the current log context's) tags the job's log lines on the worker.
    """
    job_id = new_job_id()
    await backends.current().start(
        "tts",
        reply_to=reply_to,
        job_id=job_id,
        text=text,
        speaker_id=speaker_id,
        engine_name=engine_name,
        **({"language": language} if language else {}),
        **_trace_kwargs(trace_id),
    )
    return job_id


async def asr_start(*, reply_to: str, phrases=None, trace_id=None, language=None) -> str:
    """Start a streaming recognition; feed it with `audio_put(job_id, pcm)`, end it with `audio_end`.
    `language`: which model recognises it (the user's "I speak"; default the site's language)."""
    job_id = new_job_id()
    extra = {"language": language} if language else {}  # jobs of workers that predate it still run
    await backends.current().start(
        "asr", reply_to=reply_to, job_id=job_id, phrases=phrases, **extra, **_trace_kwargs(trace_id)
    )
    return job_id


async def audio_put(job_id: str, pcm: bytes) -> None:
    """The next PCM16 16 kHz mono chunk of a recognition job's utterance."""
    await backends.current().audio.put(job_id, pcm)


async def audio_end(job_id: str) -> None:
    """The utterance is over: the job answers with its final transcript."""
    await backends.current().audio.put(job_id, END)


async def cancel(job_id: str) -> None:
    """Ask the job to stop producing (its requester went away)."""
    await backends.current().cancel_flags.cancel(job_id)


async def job_messages(
    channel: str, job_id: str, *, may_be_quiet: Callable[[], bool] | None = None, first_timeout: float | None = None
) -> AsyncGenerator[dict, None]:
    """Messages of one job on a private channel, until its terminal message.

    Raises JobTimeout if the first message takes longer than VOICE_JOB_FIRST_MESSAGE_TIMEOUT or
    any later one longer than VOICE_JOB_IDLE_TIMEOUT. With `may_be_quiet`, the job's silence does
    not count while `may_be_quiet()` says so (a recogniser may rightly say nothing for a long time
    while the user is still talking); after that the next message must come within
    VOICE_JOB_IDLE_TIMEOUT. `first_timeout` bounds the wait for the first message instead (a stream
    job says at once that it has started, then may rightly be quiet).
    """
    loop = asyncio.get_running_loop()
    # The first message may take longer (a queued job waits for a worker); see VOICE_JOB_*_TIMEOUT.
    quiet_allowed = may_be_quiet is not None
    timeout = settings.VOICE_JOB_IDLE_TIMEOUT if quiet_allowed else settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT
    if first_timeout is not None:
        timeout = first_timeout
    deadline = loop.time() + timeout
    tts_started = tts_engine = None
    reader = ChannelReader(channel)  # never a cancelled receive(): see voice.jobs.receiving
    try:
        while True:
            wait = max(0.0, deadline - loop.time())
            if may_be_quiet is not None:
                wait = min(wait, QUIET_POLL_S)
            message = await reader.get(timeout=wait)
            if message is None:
                if may_be_quiet is not None and may_be_quiet():
                    timeout = settings.VOICE_JOB_IDLE_TIMEOUT
                    deadline = loop.time() + timeout
                elif loop.time() >= deadline:
                    metrics.observe_error("voice_worker_timeout")
                    raise JobTimeout(f"The voice job {job_id} did not answer within {timeout:g} s.")
                continue
            if message.get("job_id") != job_id:
                continue  # a late message of an earlier job on a reused channel: does not reset the clock
            tts_started, tts_engine = _observe(message, tts_started, tts_engine)
            yield message
            if message["type"] in TERMINAL_TYPES:
                return
            timeout = settings.VOICE_JOB_IDLE_TIMEOUT
            deadline = loop.time() + timeout
    finally:
        reader.release()


def _observe(message: dict, tts_started, tts_engine):
    """Metrics from a job's messages (worker-side timings, on the worker's own clock)."""
    try:
        kind = message["type"]
        if kind == messages.TTS_CHUNK and message.get("seq") == 0 and message.get("started") is not None:
            tts_started, tts_engine = message["started"], message.get("engine")
            metrics.observe_tts_first_chunk(message["t"] - tts_started, tts_engine)
        elif kind in (messages.TTS_DONE, messages.TTS_SENTENCE_DONE) and tts_started is not None:
            metrics.observe_tts_rtf(message["t"] - tts_started, message.get("duration") or 0.0, tts_engine)
        elif kind.endswith(".error"):
            metrics.observe_error(message.get("code"))
    except (KeyError, TypeError):  # a message without timestamps: no metric, never a failed job
        pass
    return tts_started, tts_engine


async def synthesize(*, text: str, speaker_id=None, engine_name=None, language=None) -> AsyncGenerator[dict, None]:
    """Start a TTS job and yield its messages (chunks as produced, then done or error).

    Never raises for a job's failure: the last message is `voice.tts.done` or `voice.tts.error`
    (codes from the engine, `voice_unavailable` when the job could not be queued,
    `voice_worker_timeout` when no worker answered in time). Closing the generator early asks
    the job to stop.
    """
    channel = await new_reply_channel()
    try:
        job_id = await tts_start(
            reply_to=channel, text=text, speaker_id=speaker_id, engine_name=engine_name, language=language
        )
    except JobNotStarted as exc:
        yield messages.error("tts", None, "voice_unavailable", str(exc))
        return
    finished = False
    try:
        async for message in job_messages(channel, job_id):
            finished = message["type"] in TERMINAL_TYPES
            yield message
    except JobTimeout as exc:
        finished = True
        yield messages.error("tts", job_id, "voice_worker_timeout", str(exc))
    finally:
        if not finished:  # the caller stopped listening (client gone): stop the job
            with contextlib.suppress(Exception):
                await asyncio.shield(cancel(job_id))


async def recognize(*, pcm: bytes, phrases=None, chunk_bytes: int = 32000) -> dict:
    """Recognise a whole 16 kHz PCM16 buffer through the same streaming job as live audio.

    Returns the terminal message: `voice.asr.final` (with `text`) or `voice.asr.error`.
    """
    channel = await new_reply_channel()
    try:
        job_id = await asr_start(reply_to=channel, phrases=phrases)
    except JobNotStarted as exc:
        return messages.error("asr", None, "voice_unavailable", str(exc))
    for start in range(0, len(pcm), chunk_bytes):
        await audio_put(job_id, pcm[start : start + chunk_bytes])
    await audio_end(job_id)
    try:
        async for message in job_messages(channel, job_id):
            if message["type"] in TERMINAL_TYPES:
                return message
    except JobTimeout as exc:
        return messages.error("asr", job_id, "voice_worker_timeout", str(exc))
    raise AssertionError("unreachable")
