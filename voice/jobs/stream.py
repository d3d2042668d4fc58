"""A turn's synthesis stream, the requester's side: one synthesis job for a whole reply, fed its
sentences as the LLM writes them.

One job per sentence paid, per sentence, a dispatch, a queue, a worker thread and a result channel;
a stream pays them once per turn, and the job can be started while the LLM is still thinking. The
job (voice.jobs.runners.tts_stream_run, on the worker serving the tts queue, or a thread of the web
process in the embedded default) reads sentences from its inbox (voice.jobs.inbox: a Redis stream,
or an in-process queue), speaks them in order and tags its messages with each sentence's key; this
side hands every sentence's messages to that sentence's own listener, so each reads exactly what a
one-sentence job (voice.jobs.synthesize) would have sent it: chunks, then a done or an error.

A sentence may also go in as it is written (`begin`, then `write` and `end`), when the worker says
its engine reads text that way (`takes_text`, from its tts.opened: CosyVoice2 without vLLM): the
engine starts on the sentence's first words while the LLM is still writing the rest.

Bounds: a stream with nothing to say for VOICE_TTS_STREAM_IDLE_SECONDS (a long tool call) is
closed, so it does not hold a worker thread, and one older than VOICE_TTS_STREAM_MAX_SECONDS is
replaced at its next sentence (task time limits); either way the next sentence opens a new job.
A worker that dies or stalls is noticed within the same bounds as for one job (requester.job_messages):
every sentence still waiting then ends with `voice_worker_timeout`.
"""

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from django.conf import settings

from . import backends, messages
from .backends import JobNotStarted
from .inbox import END
from .messages import new_job_id
from .requester import JobTimeout, _trace_kwargs, cancel, job_messages, new_reply_channel

logger = logging.getLogger(__name__)

_CLOSE = object()  # in the outbox: no more sentences for the current job


@dataclass
class _Feed:
    """One item of the outbox: a whole sentence, or the start, a piece or the end of one being written."""

    kind: str  # "whole", "begin", "piece", "end"
    key: int
    text: str
    speaker_id: object = None
    language: str | None = None
    queue: asyncio.Queue | None = None  # the sentence's listener ("whole" and "begin")


class WrittenSentence:
    """A sentence fed to the stream as it is written: `write` each new piece, then `end` with the rest."""

    def __init__(self, stream: "SynthesisStream", key: int, messages: AsyncIterator[dict]) -> None:
        self._stream, self.key, self.messages = stream, key, messages
        self.ended = False

    def write(self, piece: str) -> None:
        if piece and not self.ended:
            self._stream._feed(_Feed("piece", self.key, piece))

    def end(self, rest: str = "") -> None:
        if not self.ended:
            self.ended = True
            self._stream._feed(_Feed("end", self.key, rest))


class _StreamJob:
    """One job of a stream: its channel, the sentences it still owes, and the task routing its messages."""

    def __init__(self, stream: "SynthesisStream") -> None:
        self.stream = stream
        self.job_id = new_job_id()
        self.channel = ""
        self.opened = False  # the worker said it holds the stream
        self.takes_text = False  # ... and that its engine reads a sentence as it is written
        self.answered = asyncio.Event()  # opened, or ended without opening
        self.closing = False  # its END is sent: it takes no more sentences
        self.waiting: dict[int, asyncio.Queue] = {}  # sentence key -> its listener's queue
        self.ended: dict | None = None  # the terminal message (closed, or the error every later sentence gets)
        self.started_at = asyncio.get_running_loop().time()
        self.reader: asyncio.Task | None = None

    async def start(self) -> None:
        s = self.stream
        self.channel = await new_reply_channel()
        await backends.current().start(
            "tts_stream",
            reply_to=self.channel,
            job_id=self.job_id,
            speaker_id=s.speaker_id,
            engine_name=s.engine_name,
            **({"language": s.language} if s.language else {}),
            **_trace_kwargs(s.trace_id),
        )
        self.reader = asyncio.create_task(self._read())

    async def put(self, key: int, text: str, speaker_id=None, language=None, *, more=False, first=True) -> None:
        """A sentence (`more`: its first piece, or a later one with `first` false), or the end of one."""
        item: dict = {"sentence": key, "text": text}
        if first:
            item["speaker_id"] = speaker_id
            if language:
                item["language"] = language
        if more:
            item["more"] = True
        await backends.current().text.put(self.job_id, json.dumps(item).encode())

    async def close(self) -> None:
        self.closing = True
        await backends.current().text.put(self.job_id, END)

    async def _read(self) -> None:
        try:
            # Quiet is right only while the worker holds the stream and owes no sentence.
            source = job_messages(
                self.channel,
                self.job_id,
                may_be_quiet=lambda: self.opened and not self.waiting,
                first_timeout=settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT,
            )
            async for message in source:
                self._route(message)
        except JobTimeout as exc:
            self._end(messages.error("tts", self.job_id, "voice_worker_timeout", str(exc)))
        finally:
            if self.ended is None:  # the reader was stopped (the stream cancelled) or crashed
                self._end(messages.error("tts", self.job_id, "tts_failed", "The synthesis stream ended."))

    def _route(self, message: dict) -> None:
        kind = message["type"]
        if kind == messages.TTS_OPENED:
            self.opened = True
            self.takes_text = bool(message.get("takes_text"))
            self.answered.set()
        elif kind == messages.TTS_CHUNK:
            queue = self.waiting.get(message.get("sentence", -1))
            if queue is not None:
                queue.put_nowait(message)
        elif kind == messages.TTS_SENTENCE_DONE:
            queue = self.waiting.pop(message.get("sentence", -1), None)
            if queue is not None:  # to its listener, as the done of its own job
                queue.put_nowait({**message, "type": messages.TTS_DONE})
            self.stream._quiet_since_now(self)
        elif kind in (messages.TTS_CLOSED, messages.TTS_ERROR):
            self._end(message)

    def _end(self, message: dict) -> None:
        """The job is over: every sentence it still owes ends with `message` (an error), or, for a
        closed stream that still owed some (it never should), with a failure."""
        self.ended = message
        self.closing = True
        self.answered.set()
        if message["type"] == messages.TTS_CLOSED:
            message = messages.error("tts", self.job_id, "tts_failed", "The synthesis stream closed early.")
        for queue in self.waiting.values():
            queue.put_nowait(message)
        self.waiting.clear()


class SynthesisStream:
    """A turn's synthesis stream. `speak(text)` (in order) returns that sentence's job messages;
    `close()` says no more will come; `cancel()` stops everything at once (an interruption).

    Sentences go out through one sender task, in the order `speak` was called, starting (and
    replacing) jobs as needed; listeners only read their own queue.
    """

    def __init__(self, *, speaker_id=None, language=None, engine_name=None, trace_id=None) -> None:
        self.speaker_id, self.language, self.engine_name, self.trace_id = speaker_id, language, engine_name, trace_id
        self.jobs_started = 0
        self._keys = itertools.count()
        self._outbox: asyncio.Queue = asyncio.Queue()
        self._job: _StreamJob | None = None
        self._failed: dict | None = None  # a job could not be started: every sentence gets this error
        self._jobs: list[_StreamJob] = []
        self._sender: asyncio.Task | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._cancelled = False
        self._writing: _StreamJob | None = None  # the job of the sentence being written, till its end
        self._job_tried = asyncio.Event()  # the sender has started a job, or failed to

    def open(self) -> None:
        """Start the job now (the turn starts: a worker holds the stream by the first sentence)."""
        self._ensure_sender()
        self._outbox.put_nowait(None)

    @property
    def takes_text(self) -> bool:
        """The running job's engine reads a sentence as it is written (`begin` is worth calling)."""
        job = self._job
        return job is not None and job.takes_text and job.ended is None and not job.closing and not self._cancelled

    def speak(self, text: str, *, speaker_id=None, language=None) -> AsyncIterator[dict]:
        """This sentence's messages: tts.chunk ..., then tts.done or tts.error (as jobs.synthesize)."""
        return self._start("whole", text, speaker_id, language)[1]

    def begin(self, text: str, *, speaker_id=None, language=None) -> WrittenSentence:
        """A sentence whose first piece is `text`; its messages are `.messages` (as `speak` returns them).
        Nothing else goes into the stream until it has ended."""
        key, listener = self._start("begin", text, speaker_id, language)
        return WrittenSentence(self, key, listener)

    def _start(self, kind: str, text: str, speaker_id, language) -> tuple[int, AsyncIterator[dict]]:
        queue: asyncio.Queue = asyncio.Queue()
        key = next(self._keys)
        if self._cancelled:
            queue.put_nowait(messages.error("tts", None, "tts_failed", "The synthesis stream was cancelled."))
        else:
            self._feed(_Feed(kind, key, text, speaker_id, language, queue))
        return key, self._listen(queue)

    def _feed(self, item: _Feed) -> None:
        if not self._cancelled:
            self._ensure_sender()
            self._outbox.put_nowait(item)

    def close(self) -> None:
        """No more sentences: the job ends once it has spoken those it has."""
        if self._sender is not None and not self._cancelled:
            self._outbox.put_nowait(_CLOSE)

    async def cancel(self) -> None:
        """Stop now: the jobs are told to stop (nothing more is produced), the listeners get nothing more."""
        self._cancelled = True
        self._cancel_idle_timer()
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(BaseException):
                await self._sender
        for job in self._jobs:
            if job.reader is not None:
                job.reader.cancel()
            # A job that was closed and owes nothing ends by itself (the end of every turn): no flag to set.
            if job.ended is None and not (job.closing and not job.waiting):
                with contextlib.suppress(Exception):
                    await asyncio.shield(cancel(job.job_id))
                with contextlib.suppress(Exception):
                    await backends.current().text.put(job.job_id, END)  # wakes a worker waiting for text

    async def wait_opened(self) -> bool:
        """Until the current job has opened (True) or failed (False): `takes_text` is known then."""
        await self._job_tried.wait()
        job = self._job
        if job is None:
            return False
        await job.answered.wait()
        return job.opened and job.ended is None

    async def wait_closed(self) -> None:
        """Until every job of the stream has ended (tests)."""
        readers = [job.reader for job in self._jobs if job.reader is not None]
        await asyncio.gather(*readers, return_exceptions=True)

    # -- the sender ----------------------------------------------------------------------------------
    def _ensure_sender(self) -> None:
        if self._sender is None:
            self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while True:
            item = await self._outbox.get()
            if item is _CLOSE:
                await self._close_job()
                continue
            if item is not None and item.kind in ("piece", "end"):
                await self._feed_written(item)
                continue
            job = await self._current_job()
            if item is None:  # open(): the job is started, nothing to say yet
                if job is not None:
                    self._quiet_since_now(job)
                continue
            assert item.queue is not None
            if job is None or job.ended is not None:
                failed = self._failed or (job.ended if job is not None else None)
                item.queue.put_nowait(failed or messages.error("tts", None, "tts_failed", "No synthesis stream."))
                continue
            self._cancel_idle_timer()
            job.waiting[item.key] = item.queue
            speaker_id = item.speaker_id if item.speaker_id is not None else self.speaker_id
            if item.kind == "begin":
                self._writing = job
            await self._put(job, item.key, item.text, speaker_id, item.language, more=item.kind == "begin")

    async def _feed_written(self, item: _Feed) -> None:
        """A later piece, or the end, of the sentence being written: to its job, if that still runs."""
        job = self._writing
        if item.kind == "end":
            self._writing = None
        if job is not None and job.ended is None:
            await self._put(job, item.key, item.text, more=item.kind == "piece", first=False)

    async def _put(self, job: _StreamJob, key: int, text: str, speaker_id=None, language=None, **kind) -> None:
        try:
            await job.put(key, text, speaker_id, language, **kind)
        except Exception as exc:  # Redis went away: this sentence, and the job, are lost
            logger.warning("Could not feed the synthesis stream %s: %s", job.job_id, exc)
            job._end(messages.error("tts", job.job_id, "voice_unavailable", "The voice service cannot be reached."))

    async def _current_job(self) -> _StreamJob | None:
        """The job to feed: the current one, or a new one when there is none, it has ended, is closing,
        or is older than VOICE_TTS_STREAM_MAX_SECONDS (it is closed; what it owes still comes)."""
        job = self._job
        if job is not None and job.ended is None and not job.closing:
            age = asyncio.get_running_loop().time() - job.started_at
            if age < settings.VOICE_TTS_STREAM_MAX_SECONDS:
                return job
            await job.close()
        if self._failed is not None:
            return None
        job = _StreamJob(self)
        try:
            await job.start()
        except JobNotStarted as exc:
            self._failed = messages.error("tts", None, "voice_unavailable", str(exc))
            self._job_tried.set()
            return None
        self._job = job
        self._job_tried.set()
        self._jobs.append(job)
        self.jobs_started += 1
        return job

    async def _close_job(self) -> None:
        self._cancel_idle_timer()
        job, self._job = self._job, None
        if job is not None and not job.closing and job.ended is None:
            await job.close()

    # -- the idle bound ------------------------------------------------------------------------------
    def _quiet_since_now(self, job: _StreamJob) -> None:
        """`job` owes nothing now: close it if nothing comes for VOICE_TTS_STREAM_IDLE_SECONDS."""
        if job is self._job and not job.waiting and not self._cancelled:
            self._cancel_idle_timer()
            loop = asyncio.get_running_loop()
            self._idle_timer = loop.call_later(settings.VOICE_TTS_STREAM_IDLE_SECONDS, self._idle, job)

    def _idle(self, job: _StreamJob) -> None:
        self._idle_timer = None
        if job is self._job and not job.waiting:
            logger.info("Synthesis stream %s idle for %g s: closed", job.job_id, settings.VOICE_TTS_STREAM_IDLE_SECONDS)
            self.close()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    @staticmethod
    async def _listen(queue: asyncio.Queue) -> AsyncIterator[dict]:
        while True:
            message = await queue.get()
            yield message
            if message["type"] in messages.TERMINAL_TYPES:
                return
