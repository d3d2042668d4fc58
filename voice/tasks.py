"""Celery tasks: fetch what the job needs, call a service. Results stream through the channel layer.

Routed to the VOICE_ASR_QUEUE and VOICE_TTS_QUEUE queues (CELERY_TASK_ROUTES), so speech workers can be
scaled and placed (GPU hosts for TTS) apart from the default queue.
"""

import asyncio
import functools
import threading

from celery import shared_task
from channels.layers import get_channel_layer
from django.conf import settings

from . import inbox, services

_thread_state = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    """This worker thread's event loop for channel-layer sends, kept for the thread's life.

    channels-redis keeps its Redis connections per event loop: one loop per thread means each
    job reuses warm connections instead of connecting (and closing) for every job, which was a
    measurable part of every sentence's latency. A pooled connection that died with a Redis
    restart is retried on a new one (REDIS_RETRIES in the channel layer's settings).
    """
    loop = getattr(_thread_state, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread_state.loop = asyncio.new_event_loop()
    return loop


def channel_sender(reply_to: str):
    """A `send(message)` to the requester's channel (blocking; a full channel slows the job down)."""
    layer = get_channel_layer()
    loop = _thread_loop()

    def send_once(message):
        loop.run_until_complete(layer.send(reply_to, message))

    return services.patient_sender(send_once, timeout=settings.VOICE_JOB_IDLE_TIMEOUT)


@shared_task(name="voice.tasks.tts_synthesize", ignore_result=True, acks_late=True)
def tts_synthesize(reply_to, job_id, text, speaker_id=None, engine_name=None, turn_id=None):
    services.tts_run(
        send=channel_sender(reply_to),
        job_id=job_id,
        text=text,
        speaker_id=speaker_id,
        engine_name=engine_name,
        cancelled=functools.partial(inbox.cancelled, job_id),
        turn_id=turn_id,
    )


@shared_task(name="voice.tasks.asr_stream", ignore_result=True, acks_late=True)
def asr_stream(reply_to, job_id, phrases=None, turn_id=None):
    services.asr_run(send=channel_sender(reply_to), job_id=job_id, phrases=phrases, turn_id=turn_id)
