"""Celery tasks: fetch what the job needs, call a service. Results stream through the channel layer."""

from asgiref.sync import async_to_sync
from celery import shared_task
from channels.layers import get_channel_layer

from . import services


def channel_sender(reply_to: str):
    layer = get_channel_layer()
    send = async_to_sync(layer.send)
    return lambda message: send(reply_to, message)


@shared_task(name="voice.tasks.tts_synthesize", ignore_result=True, acks_late=True)
def tts_synthesize(reply_to, job_id, text, speaker_id=None, engine_name=None):
    services.tts_run(send=channel_sender(reply_to), job_id=job_id, text=text, speaker_id=speaker_id, engine_name=engine_name)


@shared_task(name="voice.tasks.asr_stream", ignore_result=True, acks_late=True)
def asr_stream(reply_to, job_id, phrases=None):
    services.asr_run(send=channel_sender(reply_to), job_id=job_id, phrases=phrases)
