"""Celery tasks: like a view, fetch what the job needs and call its runner. Results stream back
through the channel layer (voice.jobs.sending).

Routed to the VOICE_ASR_QUEUE and VOICE_TTS_QUEUE queues (CELERY_TASK_ROUTES), so speech workers can be
scaled and placed (GPU hosts for TTS) apart from the default queue. The task names keep their
`voice.tasks.` prefix, which the routes and deployed workers know.
"""

import functools

from celery import shared_task

from . import backends, runners
from .sending import on_thread_loop, requester_sender


@shared_task(name="voice.tasks.tts_synthesize", ignore_result=True, acks_late=True)
def tts_synthesize(reply_to, job_id, text, speaker_id=None, engine_name=None, trace_id=None, language=None):
    runners.tts_run(
        send=requester_sender(reply_to, on_thread_loop()),
        job_id=job_id,
        text=text,
        speaker_id=speaker_id,
        engine_name=engine_name,
        language=language,
        cancelled=functools.partial(backends.current().cancel_flags.cancelled, job_id),
        trace_id=trace_id,
    )


@shared_task(name="voice.tasks.tts_stream", ignore_result=True, acks_late=True)
def tts_stream(reply_to, job_id, speaker_id=None, engine_name=None, trace_id=None, language=None):
    runners.tts_stream_run(
        send=requester_sender(reply_to, on_thread_loop()),
        job_id=job_id,
        speaker_id=speaker_id,
        engine_name=engine_name,
        language=language,
        cancelled=functools.partial(backends.current().cancel_flags.cancelled, job_id),
        trace_id=trace_id,
    )


@shared_task(name="voice.tasks.asr_stream", ignore_result=True, acks_late=True)
def asr_stream(reply_to, job_id, phrases=None, trace_id=None, language=None):
    runners.asr_run(
        send=requester_sender(reply_to, on_thread_loop()),
        job_id=job_id,
        phrases=phrases,
        language=language,
        trace_id=trace_id,
    )


TASKS = {"tts": tts_synthesize, "tts_stream": tts_stream, "asr": asr_stream}
