"""Celery tasks: fetch what the job needs, call a service. Results stream through the channel layer.

Routed to the VOICE_ASR_QUEUE and VOICE_TTS_QUEUE queues (CELERY_TASK_ROUTES), so speech workers can be
scaled and placed (GPU hosts for TTS) apart from the default queue.
"""

import asyncio
import contextlib
import functools

from celery import shared_task
from channels.layers import get_channel_layer
from django.conf import settings

from . import inbox, services


@contextlib.contextmanager
def channel_sender(reply_to: str):
    """A `send(message)` to the requester's channel, for the length of one job.

    One event loop per job: channels-redis keeps its Redis connections per loop, and
    `async_to_sync` would make a new loop (so a new connection) for every message.
    """
    layer = get_channel_layer()
    loop = asyncio.new_event_loop()

    def send_once(message):
        loop.run_until_complete(layer.send(reply_to, message))

    try:
        yield services.patient_sender(send_once, timeout=settings.VOICE_JOB_IDLE_TIMEOUT)
    finally:
        try:
            # channels-redis closes this loop's connection pool when the loop closes.
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


@shared_task(name="voice.tasks.tts_synthesize", ignore_result=True, acks_late=True)
def tts_synthesize(reply_to, job_id, text, speaker_id=None, engine_name=None, turn_id=None):
    with channel_sender(reply_to) as send:
        services.tts_run(
            send=send,
            job_id=job_id,
            text=text,
            speaker_id=speaker_id,
            engine_name=engine_name,
            cancelled=functools.partial(inbox.cancelled, job_id),
            turn_id=turn_id,
        )


@shared_task(name="voice.tasks.asr_stream", ignore_result=True, acks_late=True)
def asr_stream(reply_to, job_id, phrases=None, turn_id=None):
    with channel_sender(reply_to) as send:
        services.asr_run(send=send, job_id=job_id, phrases=phrases, turn_id=turn_id)
