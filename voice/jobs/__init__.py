"""The voice job path: recognition and synthesis jobs, from the requester to the worker and back.

* requester.py  the web side: start a job, feed it audio, listen to its messages (public API,
                re-exported here: `from voice import jobs; jobs.synthesize(...)`)
* backends.py   where jobs run (Celery workers + Redis, or threads of the web process), chosen once
* stream.py     a turn's synthesis stream: one job fed sentence by sentence (SynthesisStream)
* runners.py    the job bodies (tts_run, tts_stream_run, asr_run), run by a task or a thread
* tasks.py      the Celery tasks; worker.py: engine preload at worker start
* sending.py    the one way a job sends to its requester (channel layer, with backpressure)
* receiving.py  the one way a requester reads its private channel (ChannelReader: released, never cancelled)
* messages.py   the message types
* inbox.py, cancellation.py, redis_clients.py: what a requester feeds a job (audio, sentences), cancel flags
"""

from .requester import (
    TERMINAL_TYPES,
    JobNotStarted,
    JobTimeout,
    asr_start,
    audio_end,
    audio_put,
    cancel,
    job_messages,
    new_reply_channel,
    recognize,
    synthesize,
    tts_start,
)
from .stream import SynthesisStream, WrittenSentence

__all__ = [
    "TERMINAL_TYPES",
    "JobNotStarted",
    "JobTimeout",
    "SynthesisStream",
    "WrittenSentence",
    "asr_start",
    "audio_end",
    "audio_put",
    "cancel",
    "job_messages",
    "new_reply_channel",
    "recognize",
    "synthesize",
    "tts_start",
]
