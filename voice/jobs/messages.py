"""The messages a voice job sends to its requester, one at a time as they are produced.

Every message is a dict with `type`, `job_id` and `t` (the wall-clock time at which the job sent
it, on the job's own clock), plus `trace_id` when the requester gave one. The types:

* `voice.tts.chunk`   `seq`, `part`, `produced`, `pcm`, `sample_rate`; the first one also `engine`,
                      `voice`, `clones`, `started`
* `voice.tts.done`    `chunks`, `samples`, `duration`, `engine`, `voice`, `clones`, `sample_rate`

A turn's synthesis stream (voice.jobs.stream) sends `voice.tts.opened` first (`takes_text`: its
engine reads a sentence as it is written; a sentence so spoken has `as_written` in its done), tags each chunk with the
requester's `sentence` key, ends each sentence with `voice.tts.sentence_done` (the fields of a done),
and ends with `voice.tts.closed` (or an error, tagged with its `sentence`).

* `voice.asr.partial` `text`
* `voice.asr.final`   `text`
* `voice.*.error`     `code`, `message`

A job ends with exactly one terminal message (done, final or error) unless its requester is gone.
"""

import uuid

TTS_CHUNK = "voice.tts.chunk"
TTS_DONE = "voice.tts.done"
TTS_ERROR = "voice.tts.error"
TTS_OPENED = "voice.tts.opened"
TTS_SENTENCE_DONE = "voice.tts.sentence_done"
TTS_CLOSED = "voice.tts.closed"
ASR_PARTIAL = "voice.asr.partial"
ASR_FINAL = "voice.asr.final"
ASR_ERROR = "voice.asr.error"

TERMINAL_TYPES = frozenset({TTS_DONE, TTS_ERROR, TTS_CLOSED, ASR_FINAL, ASR_ERROR})


def new_job_id() -> str:
    return uuid.uuid4().hex


def error(kind: str, job_id: str | None, code: str, message: str) -> dict:
    """An error message of a `kind` ("tts" or "asr") job, as a job or its requester reports it."""
    return {"type": f"voice.{kind}.error", "job_id": job_id, "code": code, "message": message}
