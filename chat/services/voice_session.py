"""A live voice session: utterances in, spoken replies out (the WebSocket consumer's logic).

The consumer only translates frames; everything a session does lives here:

- an utterance streams to a recognition job (Celery worker, or a thread in the embedded default)
  while the user speaks; partials go to the client; the final transcript starts a turn;
- a turn streams the LLM's reply (chat.services.replies), cuts it into sentences as it arrives
  and sends each sentence to a synthesis job as soon as it is complete; audio goes to the client
  in order, paced a little ahead of real time so a slow client never makes us buffer much;
- an interruption is one path: cancel the turn's task; every stage drops its pending work, the
  reply is saved with what was actually spoken, and only then is the interruption acknowledged.

See docs/protocol.md for the frames.
"""

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
from channels.layers import get_channel_layer
from django.conf import settings

from chat.models import Message
from chat.selectors import conversation_get
from magicmirror import metrics
from magicmirror.dbasync import db_call
from magicmirror.errors import ApplicationError
from speakers.selectors import speaker_get, user_settings_get
from voice import inbox, jobs

from .conversations import message_text_clean
from .replies import reply_stream
from .sentences import SentenceSplitter

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
ASR_RATE = 16000
# Binary audio frames to the client: turn id, sentence id, chunk sequence (uint32 LE each), PCM16.
AUDIO_HEADER = struct.Struct("<III")
MODES = ("ptt", "handsfree")


class SessionError(ApplicationError):
    pass


@dataclass
class Limits:
    max_frame_bytes: int = field(default_factory=lambda: settings.VOICE_WS_MAX_FRAME_BYTES)
    max_utterance_s: float = field(default_factory=lambda: settings.VOICE_MAX_UTTERANCE_SECONDS)
    # Audio may arrive faster than real time only by this factor (bursts after a network stall).
    max_audio_rate: float = field(default_factory=lambda: settings.VOICE_MAX_AUDIO_RATE)
    max_message_chars: int = field(default_factory=lambda: settings.CHAT_MESSAGE_MAX_CHARS)
    audio_lead_s: float = field(default_factory=lambda: settings.VOICE_AUDIO_LEAD_SECONDS)

    def as_dict(self):
        return {
            "max_frame_bytes": self.max_frame_bytes,
            "max_utterance_seconds": self.max_utterance_s,
            "max_audio_rate": self.max_audio_rate,
            "max_message_chars": self.max_message_chars,
            "concurrent_turns": 1,
        }


class Resampler:
    """PCM16 mono at the client's rate -> 16 kHz for recognition (PyAV's resampler, streaming)."""

    def __init__(self, rate: int):
        import av

        self.rate = rate
        self._av = av
        self._resampler = None if rate == ASR_RATE else av.AudioResampler(format="s16", layout="mono", rate=ASR_RATE)

    def __call__(self, pcm: bytes) -> bytes:
        if self._resampler is None:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2").reshape(1, -1)
        frame = self._av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = self.rate
        return b"".join(bytes(out.planes[0])[: out.samples * 2] for out in self._resampler.resample(frame))


class TokenBucket:
    """Audio bytes allowed per second, with a burst allowance."""

    def __init__(self, rate_bytes: float, burst_bytes: float):
        self.rate, self.capacity = rate_bytes, burst_bytes
        self.tokens, self.stamp = burst_bytes, time.monotonic()

    def take(self, amount: int) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if amount > self.tokens:
            return False
        self.tokens -= amount
        return True


class Utterance:
    """One stretch of user speech on its way to a recognition job."""

    def __init__(self, session: "VoiceSession", utterance_id: int):
        self.session = session
        self.id = utterance_id
        self.job_id: str | None = None
        self.channel: str | None = None
        self.seconds = 0.0
        self.ended = False
        self.ended_at: float | None = None
        self.turn_log_id = metrics.new_turn_id()  # joins web and worker log lines of this turn
        self.listener: asyncio.Task | None = None

    async def start(self, phrases):
        self.channel = await jobs.new_reply_channel()
        self.job_id = await jobs.asr_start(reply_to=self.channel, phrases=phrases, turn_id=self.turn_log_id)
        self.listener = asyncio.create_task(self._listen())

    async def feed(self, pcm16k: bytes):
        self.seconds += len(pcm16k) / 2 / ASR_RATE
        await inbox.audio_put(self.job_id, pcm16k)

    async def end(self):
        if not self.ended:
            self.ended = True
            self.ended_at = time.monotonic()
            await inbox.audio_end(self.job_id)

    async def _messages(self):
        """The job's messages. While the user is still talking a recogniser may rightly say nothing
        for a long time (silence, no new words), so the job's silence only counts once the
        utterance has ended: then the final must come within VOICE_JOB_IDLE_TIMEOUT."""
        layer = get_channel_layer()
        pending = None
        quiet_since = None
        try:
            while True:
                if pending is None:
                    pending = asyncio.ensure_future(layer.receive(self.channel))
                done, _ = await asyncio.wait({pending}, timeout=0.25)
                if not done:
                    if self.ended:
                        quiet_since = quiet_since or time.monotonic()
                        if time.monotonic() - quiet_since > settings.VOICE_JOB_IDLE_TIMEOUT:
                            raise jobs.JobTimeout(f"The recognition job {self.job_id} went quiet.")
                    continue
                message, pending, quiet_since = pending.result(), None, None
                if message.get("job_id") != self.job_id:
                    continue
                yield message
                if message["type"] in jobs.TERMINAL_TYPES:
                    return
        finally:
            if pending is not None:
                pending.cancel()

    async def _listen(self):
        session = self.session
        try:
            async for message in self._messages():
                kind = message["type"]
                if kind == "voice.asr.partial":
                    await session.emit({"type": "partial", "utterance_id": self.id, "text": message["text"]})
                elif kind == "voice.asr.final":
                    if self.ended_at is not None:
                        metrics.observe_transcript_latency(time.monotonic() - self.ended_at)
                    await session.on_final(self, message["text"])
                elif kind == "voice.asr.error":
                    await session.on_utterance_error(self, message["code"], message["message"])
        except jobs.JobTimeout:
            await session.on_utterance_error(self, "voice_worker_timeout", "Speech recognition did not answer in time.")

    def cancel(self):
        if self.listener and not self.listener.done():
            self.listener.cancel()


class SentenceAudio:
    """One sentence's synthesis job, its chunks buffered until it is this sentence's turn to play."""

    def __init__(self, sentence_id: int, text: str):
        self.id, self.text = sentence_id, text
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task: asyncio.Task | None = None


class ReplySpeaker:
    """Speaks a reply sentence by sentence, in order, prefetching the next sentence's synthesis."""

    def __init__(self, session: "VoiceSession", turn_id: int, speaker_id, input_ended_at=None, source="text"):
        self.session, self.turn_id, self.speaker_id = session, turn_id, speaker_id
        self.input_ended_at, self.source = input_ended_at, source
        self.sentences: asyncio.Queue[SentenceAudio | None] = asyncio.Queue()
        self.spoken: list[str] = []  # sentences whose audio reached the client (fully or partly)
        self.failed = False
        self._prefetch = asyncio.Semaphore(settings.VOICE_TTS_PREFETCH)
        self._jobs: list[SentenceAudio] = []
        self._count = 0
        self._player = asyncio.create_task(self._play())
        self._clock_start: float | None = None
        self._audio_seconds = 0.0

    def add(self, text: str):
        sentence = SentenceAudio(self._count, text)
        self._count += 1
        sentence.task = asyncio.create_task(self._synthesize(sentence))
        self._jobs.append(sentence)
        self.sentences.put_nowait(sentence)

    async def finish(self):
        self.sentences.put_nowait(None)
        await self._player

    async def cancel(self):
        tasks = [self._player, *(s.task for s in self._jobs if s.task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _synthesize(self, sentence: SentenceAudio):
        async with self._prefetch:
            if self.failed:
                sentence.queue.put_nowait(None)
                return
            try:
                # At most VOICE_TTS_PREFETCH sentences synthesise at once: the one playing and the
                # next, so there is no gap between sentences when synthesis keeps up.
                async for message in jobs.synthesize(text=sentence.text, speaker_id=self.speaker_id):
                    sentence.queue.put_nowait(message)
            finally:
                sentence.queue.put_nowait(None)

    async def _play(self):
        session = self.session
        while (sentence := await self.sentences.get()) is not None:
            started = False
            while (message := await sentence.queue.get()) is not None:
                kind = message["type"]
                if kind == "voice.tts.chunk":
                    if not started:
                        started = True
                        self.spoken.append(sentence.text)
                        event = {
                            "type": "sentence",
                            "turn_id": self.turn_id,
                            "sentence_id": sentence.id,
                            "text": sentence.text,
                            "sample_rate": message["sample_rate"],
                        }
                        # The first chunk of a job names the engine and voice that speak.
                        event.update({k: message[k] for k in ("engine", "voice", "clones") if k in message})
                        await session.emit(event)
                        await session.set_state("speaking")
                    await self._pace()
                    if self.input_ended_at is not None:
                        metrics.observe_ttfa(time.monotonic() - self.input_ended_at, self.source)
                        self.input_ended_at = None  # the first audio of the turn only
                    await session.send_audio(
                        AUDIO_HEADER.pack(self.turn_id, sentence.id, message["seq"]) + message["pcm"]
                    )
                    self._audio_seconds += len(message["pcm"]) / 2 / message["sample_rate"]
                elif kind == "voice.tts.error" and not self.failed:
                    self.failed = True  # a dead worker fails every later sentence too: say it once
                    await session.emit(
                        {
                            "type": "error",
                            "code": message["code"],
                            "message": message["message"],
                            "turn_id": self.turn_id,
                        }
                    )
            if started:
                await session.emit({"type": "sentence_end", "turn_id": self.turn_id, "sentence_id": sentence.id})

    async def _pace(self):
        """Stay at most `audio_lead_s` ahead of real time (bounded buffering, fast barge-in)."""
        now = time.monotonic()
        if self._clock_start is None:
            self._clock_start = now
        ahead = self._audio_seconds - (now - self._clock_start) - self.session.limits.audio_lead_s
        if ahead > 0:
            await asyncio.sleep(ahead)


class VoiceSession:
    def __init__(
        self,
        *,
        user,
        emit: Callable[[dict], Awaitable[None]],
        send_audio: Callable[[bytes], Awaitable[None]],
        vad_factory=None,
    ):
        self.user = user
        self.emit = emit
        self.send_audio = send_audio
        self.limits = Limits()
        self.started = False
        self.conversation_id = None
        self.speaker_id = None
        self.mode = "ptt"
        self.voice_output = True
        self.phrases: list[str] | None = None
        self.sample_rate = ASR_RATE
        self.state = "idle"
        self._resample: Resampler | None = None
        self._bucket: TokenBucket | None = None
        self._utterance: Utterance | None = None
        self._utterance_count = 0
        self._turn_task: asyncio.Task | None = None
        self._turn_id = 0
        self._speaker: ReplySpeaker | None = None
        self._vad_factory = vad_factory
        self._vad = None
        self._preroll: list[bytes] = []

    # -- configuration ----------------------------------------------------------------------------
    async def start(self, config: dict) -> dict:
        if config.get("protocol", PROTOCOL_VERSION) != PROTOCOL_VERSION:
            raise SessionError(
                f"Unsupported protocol version {config.get('protocol')!r}; this server speaks {PROTOCOL_VERSION}.",
                code="unsupported_protocol",
            )
        self.limits = Limits()  # settings as they are when the session starts
        user_settings = await db_call(user_settings_get, user=self.user)
        self.mode = user_settings.input_mode
        self.voice_output = user_settings.voice_output
        self.speaker_id = user_settings.current_speaker_id
        await self.configure(config)
        self.started = True
        return await self.ready_event()

    async def configure(self, config: dict):
        if "conversation_id" in config:
            conversation_id = config["conversation_id"]
            if conversation_id is not None:
                await db_call(conversation_get, user=self.user, conversation_id=conversation_id)
            self.conversation_id = conversation_id
        if "speaker_id" in config:
            speaker_id = config["speaker_id"]
            if speaker_id is not None:
                await db_call(speaker_get, user=self.user, speaker_id=speaker_id)
            self.speaker_id = speaker_id
        if "mode" in config:
            if config["mode"] not in MODES:
                raise SessionError(f"mode must be one of {', '.join(MODES)}.", code="invalid_config")
            self.mode = config["mode"]
        if "voice_output" in config:
            if not isinstance(config["voice_output"], bool):
                raise SessionError("voice_output must be true or false.", code="invalid_config")
            self.voice_output = config["voice_output"]
        if "phrases" in config:
            phrases = config["phrases"]
            if phrases is not None and not (isinstance(phrases, list) and all(isinstance(p, str) for p in phrases)):
                raise SessionError("phrases must be a list of words.", code="invalid_config")
            self.phrases = phrases or None
        if "sample_rate" in config:
            rate = config["sample_rate"]
            if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= 48000:
                raise SessionError("sample_rate must be an integer between 8000 and 48000.", code="invalid_config")
            if self._utterance is not None:
                raise SessionError("The sample rate cannot change during an utterance.", code="invalid_config")
            self.sample_rate = rate
        self._resample = Resampler(self.sample_rate)
        rate_bytes = self.sample_rate * 2 * self.limits.max_audio_rate
        self._bucket = TokenBucket(rate_bytes, burst_bytes=self.sample_rate * 2 * 2.0)  # 2 s burst
        self._vad = self._vad_factory() if (self._vad_factory and self.mode == "handsfree") else None
        self._preroll = []

    async def ready_event(self) -> dict:
        conversation = None
        if self.conversation_id is not None:
            c = await db_call(conversation_get, user=self.user, conversation_id=self.conversation_id)
            conversation = {"id": c.pk, "title": c.title}
        speaker = None
        if self.speaker_id is not None:
            s = await db_call(speaker_get, user=self.user, speaker_id=self.speaker_id)
            speaker = {"id": s.pk, "name": s.name}
        return {
            "type": "ready",
            "protocol": PROTOCOL_VERSION,
            "conversation": conversation,
            "speaker": speaker,
            "mode": self.mode,
            "voice_output": self.voice_output,
            "input": {"format": "pcm_s16le", "sample_rate": self.sample_rate, "channels": 1},
            "output": {
                "format": "pcm_s16le",
                "sample_rate": None,  # engines differ: each `sentence` event gives its audio's rate
                "channels": 1,
                "frame_header": "turn_id:uint32le, sentence_id:uint32le, seq:uint32le",
            },
            "engines": {"asr": settings.VOICE_ASR_ENGINE, "tts": list(settings.VOICE_TTS_ENGINES)},
            "limits": self.limits.as_dict(),
        }

    async def set_state(self, state: str):
        if state != self.state:
            self.state = state
            await self.emit({"type": "state", "state": state})

    # -- audio in ---------------------------------------------------------------------------------
    async def audio(self, pcm: bytes):
        if len(pcm) % 2:
            raise SessionError("Audio frames must hold whole 16-bit samples.", code="bad_audio_frame")
        if not self._bucket.take(len(pcm)):
            raise SessionError("Audio is arriving faster than real time; frames dropped.", code="audio_rate_exceeded")
        pcm16k = self._resample(pcm)
        if self._vad is not None and self._utterance is None:
            # Hands-free: listen for speech before starting a recognition job; keep a short pre-roll.
            self._preroll.append(pcm16k)
            while sum(map(len, self._preroll)) > ASR_RATE * 2 * settings.VOICE_PREROLL_SECONDS:
                self._preroll.pop(0)
            self._vad.feed(pcm16k)
            if not self._vad.speech_started:
                return
            if self._turn_task is not None and not self._turn_task.done():
                await self.interrupt()  # barge-in: the user talks over the reply
            await self._begin_utterance()
            pcm16k, self._preroll = b"".join(self._preroll), []
        elif self._utterance is None:
            await self._begin_utterance()
        elif self._vad is not None:
            self._vad.feed(pcm16k)
        utterance = self._utterance
        if utterance.seconds + len(pcm16k) / 2 / ASR_RATE > self.limits.max_utterance_s:
            await self.audio_end()
            raise SessionError(
                f"Utterances are limited to {self.limits.max_utterance_s:g} seconds; this one was ended there.",
                code="utterance_too_long",
            )
        await utterance.feed(pcm16k)
        if self._vad is not None and self._vad.ended:
            await self.audio_end()

    async def _begin_utterance(self):
        self._utterance_count += 1
        utterance = Utterance(self, self._utterance_count)
        self._utterance = utterance
        await utterance.start(self.phrases)
        await self.set_state("listening")

    async def audio_end(self):
        utterance = self._utterance
        if utterance is None:
            return
        self._utterance = None
        if self._vad is not None:
            self._vad.reset()
        await utterance.end()
        if self.state == "listening":
            await self.set_state("thinking")

    async def on_final(self, utterance: Utterance, text: str):
        if not text.strip():
            await self.emit({"type": "final", "utterance_id": utterance.id, "text": "", "message_id": None})
            if self._turn_task is None or self._turn_task.done():
                await self.set_state("idle")
            return
        await self.start_turn(
            text,
            Message.Source.VOICE,
            utterance_id=utterance.id,
            input_ended_at=utterance.ended_at,
            log_turn_id=utterance.turn_log_id,
        )

    async def on_utterance_error(self, utterance: Utterance, code: str, message: str):
        if self._utterance is utterance:
            self._utterance = None
        await self.emit({"type": "error", "code": code, "message": message, "utterance_id": utterance.id})
        if self._turn_task is None or self._turn_task.done():
            await self.set_state("idle")

    # -- turns ------------------------------------------------------------------------------------
    async def text(self, text):
        text = message_text_clean(text)
        await self.start_turn(text, Message.Source.TEXT, input_ended_at=time.monotonic())

    async def start_turn(self, text: str, source: str, utterance_id=None, input_ended_at=None, log_turn_id=None):
        if self._turn_task is not None and not self._turn_task.done():
            await self.interrupt()  # one turn at a time: new input replaces the running reply
        self._turn_id += 1
        await self.set_state("thinking")
        self._turn_task = asyncio.create_task(
            self._run_turn(
                self._turn_id, text, source, utterance_id, input_ended_at, log_turn_id or metrics.new_turn_id()
            )
        )

    async def _run_turn(self, turn_id: int, text: str, source: str, utterance_id, input_ended_at, log_turn_id):
        metrics.bind_turn(log_turn_id)  # this task and its children: logs and voice jobs carry the id
        speaker = (
            ReplySpeaker(self, turn_id, self.speaker_id, input_ended_at=input_ended_at, source=source)
            if self.voice_output
            else None
        )
        self._speaker = speaker
        splitter = SentenceSplitter(
            max_chars=settings.VOICE_SENTENCE_MAX_CHARS, first_min_chars=settings.VOICE_FIRST_PIECE_MIN_CHARS
        )
        shown: list[str] = []

        def what_was_said():
            return " ".join(speaker.spoken) if speaker is not None else "".join(shown)

        def speak_the_rest():
            if speaker is not None:
                for piece in splitter.flush():
                    speaker.add(piece)

        events = reply_stream(
            user=self.user,
            conversation_id=self.conversation_id,
            text=text,
            source=source,
            speaker_id=self.speaker_id if self.voice_output else None,
            content_on_interrupt=what_was_said,
            on_reply_complete=speak_the_rest,
        )
        try:
            async for event in events:
                kind = event["type"]
                if kind == "conversation":
                    self.conversation_id = event["conversation"]["id"]
                    await self.emit({"type": "conversation", "turn_id": turn_id, **event["conversation"]})
                elif kind == "user_message":
                    message = event["message"]
                    if source == Message.Source.VOICE:
                        await self.emit(
                            {
                                "type": "final",
                                "utterance_id": utterance_id,
                                "text": message["content"],
                                "message_id": message["id"],
                            }
                        )
                    await self.emit(
                        {"type": "turn", "turn_id": turn_id, "user_message_id": message["id"], "source": source}
                    )
                elif kind == "delta":
                    shown.append(event["text"])
                    await self.emit({"type": "delta", "turn_id": turn_id, "text": event["text"]})
                    if speaker is not None:
                        for piece in splitter.feed(event["text"]):
                            speaker.add(piece)
                elif kind == "done":
                    # The last sentence went to synthesis when the LLM finished (speak_the_rest).
                    message = event["message"]
                    await self.emit(
                        {"type": "reply_done", "turn_id": turn_id, "message_id": message["id"] if message else None}
                    )
                elif kind == "error":
                    await self.emit(
                        {"type": "error", "turn_id": turn_id, "code": event["code"], "message": event["message"]}
                    )
                elif kind == "title":
                    await self.emit(
                        {"type": "title", "conversation_id": event["conversation_id"], "title": event["title"]}
                    )
            if speaker is not None:
                await speaker.finish()
                await self.emit({"type": "audio_done", "turn_id": turn_id})
        except asyncio.CancelledError:
            raise
        except ApplicationError as exc:
            await self.emit({"type": "error", "turn_id": turn_id, "code": exc.code, "message": exc.message})
        except Exception:
            logger.exception("Voice turn %s failed", turn_id)
            await self.emit(
                {"type": "error", "turn_id": turn_id, "code": "turn_failed", "message": "The reply failed."}
            )
        finally:
            await events.aclose()  # saves what arrived if the turn was cut short
            if speaker is not None:
                await speaker.cancel()
            if self._speaker is speaker:
                self._speaker = None
        if self._utterance is None:
            await self.set_state("idle")

    async def interrupt(self) -> dict | None:
        """Stop the running turn at once; returns the acknowledgement event (already sent)."""
        task = self._turn_task
        if task is None or task.done():
            return None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Nothing of the old turn can be sent after this point: its tasks are all finished.
        message_id = await db_call(self._last_interrupted_reply_id)
        event = {"type": "interrupted", "turn_id": self._turn_id, "message_id": message_id}
        await self.emit(event)
        if self._utterance is None:
            await self.set_state("idle")
        return event

    def _last_interrupted_reply_id(self):
        if self.conversation_id is None:
            return None
        return (
            Message.objects.filter(conversation_id=self.conversation_id, role=Message.Role.ASSISTANT, interrupted=True)
            .order_by("-id")
            .values_list("id", flat=True)
            .first()
        )

    async def close(self):
        """The client went away: stop listening; cut the reply short (it is saved)."""
        if self._utterance is not None:
            utterance, self._utterance = self._utterance, None
            with contextlib.suppress(Exception):
                await utterance.end()
            utterance.cancel()
        task = self._turn_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
