"""Listening: the user's audio in, utterances out.

Audio frames are checked (whole samples, no faster than real time beyond a burst), resampled to
the recogniser's 16 kHz and streamed to one recognition job per utterance (voice.jobs) while the
user speaks; partials go to the client as they come, the final transcript starts a turn. In
hands-free mode a VAD gate opens an utterance only when speech starts (with a short pre-roll, so
the first syllable is not lost) and ends it when the user's turn is over (live.turn_end: the
end-of-turn model at a pause, or the silence rule); speech starting while a reply plays is a
barge-in (the session pauses the reply, then interrupts or resumes it: live.barge_in). Each pause
is reported to the session (it may start the reply early: live.preemptive).
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from magicmirror import metrics
from magicmirror.logging import new_trace_id
from voice import jobs
from voice.asr.base import SAMPLE_RATE, clean_transcript
from voice.audio import StreamResampler
from voice.jobs import messages

from .protocol import SessionError
from .turn_end import TurnEndPolicy, judge

RECENT_BYTES = SAMPLE_RATE * 2 * 8  # the end-of-turn model hears the last 8 s
HELD_BYTES = SAMPLE_RATE * 2 * 3 // 10  # after a split, the next job starts with 300 ms before the speech

if TYPE_CHECKING:
    from .session import VoiceSession

logger = logging.getLogger(__name__)


class VoiceActivityDetector(Protocol):
    speech_started: bool
    ended: bool
    # EndOfUtteranceDetector also counts these (a detector without them never reports a pause).
    # speech_ms: speech heard in the utterance; trailing_silence_ms: quiet since the last speech.

    def feed(self, pcm16k: bytes) -> None: ...

    def reset(self) -> None: ...


class TokenBucket:
    """Audio bytes allowed per second, with a burst allowance."""

    def __init__(self, rate_bytes: float, burst_bytes: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.capacity = rate_bytes, burst_bytes
        self._clock = clock
        self.tokens, self.stamp = burst_bytes, clock()

    def take(self, amount: int) -> bool:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if amount > self.tokens:
            return False
        self.tokens -= amount
        return True


class HandsFreeGate:
    """Hands-free: listens for speech before an utterance starts, keeping a short pre-roll of audio."""

    def __init__(self, vad: VoiceActivityDetector, preroll_s: float):
        self.vad = vad
        self._preroll: list[bytes] = []
        self._preroll_bytes = int(SAMPLE_RATE * 2 * preroll_s)

    def listen(self, pcm16k: bytes) -> bytes | None:
        """Audio while no utterance is open: None while there is no speech; once speech starts, the
        audio the utterance begins with (the pre-roll and this frame)."""
        self._preroll.append(pcm16k)
        # Older audio goes first; the newest frame always stays, however long (it may hold the speech).
        while len(self._preroll) > 1 and sum(map(len, self._preroll)) > self._preroll_bytes:
            self._preroll.pop(0)
        self.vad.feed(pcm16k)
        if not self.vad.speech_started:
            return None
        audio, self._preroll = b"".join(self._preroll), []
        return audio

    def hear(self, pcm16k: bytes) -> None:
        """Audio of an open utterance (the VAD listens for its end)."""
        self.vad.feed(pcm16k)

    @property
    def speech_ended(self) -> bool:
        return self.vad.ended

    @property
    def speech_ms(self) -> int:
        return getattr(self.vad, "speech_ms", 0)

    @property
    def trailing_silence_ms(self) -> int:
        return getattr(self.vad, "trailing_silence_ms", 0)

    def reset(self) -> None:
        self.vad.reset()


class _Segment:
    """One recognition job of an utterance (an utterance split at a pause has several)."""

    def __init__(self, channel: str, job_id: str):
        self.channel, self.job_id = channel, job_id
        self.ended = False  # its audio_end was sent: its final comes soon
        self.split = False  # ended at a pause, not at the utterance's end


class Utterance:
    """One stretch of user speech on its way to recognition jobs.

    Usually one job. When the session prepares replies at pauses (live.preemptive) the job is ended
    at each pause (`split`): Vosk gives a final transcript only for audio it is told has ended, and
    its partial lags the audio and differs from that final (measured in the hands-free benchmark:
    no prepared reply matched). The final of the audio so far is what the turn will say if the user
    says nothing more, so the reply is prepared from it. If the user goes on, a new job recognises
    the rest, and the utterance's final transcript is the finals of its jobs joined.
    """

    def __init__(self, session: "VoiceSession", utterance_id: int):
        self.session = session
        self.id = utterance_id
        self.seconds = 0.0
        self.ended = False
        self.ended_at: float | None = None
        self.speech_ended_at: float | None = None  # hands-free: when the speech before the end stopped
        self.partial = ""  # the latest transcript: the finals so far and the open job's partial
        self.recent = bytearray()  # the last seconds of audio (what the end-of-turn model hears)
        self.trace_id = new_trace_id()  # joins web and worker log lines of this turn
        self.listener: asyncio.Task | None = None
        self.on_split_final: Callable[[Utterance], Awaitable[None]] | None = None
        self._phrases = None
        self._segments: list[_Segment] = []
        self._open: _Segment | None = None  # the job audio goes to; None between a split and new speech
        self._finals: list[str] = []  # the finals of the segments recognised so far
        self._changed = asyncio.Event()  # a segment was added or the utterance ended
        self._held = bytearray()  # quiet audio after a split: the next job's pre-roll

    @property
    def job_id(self) -> str | None:
        return self._segments[-1].job_id if self._segments else None

    @property
    def channel(self) -> str | None:
        return self._segments[-1].channel if self._segments else None

    async def start(self, phrases) -> None:
        self._phrases = phrases
        await self._open_segment()
        self.listener = asyncio.create_task(self._listen())

    async def _open_segment(self) -> None:
        channel = await jobs.new_reply_channel()
        job_id = await jobs.asr_start(
            reply_to=channel,
            phrases=self._phrases,
            trace_id=self.trace_id,
            language=getattr(self.session, "spoken_language", None),
        )
        self._open = _Segment(channel, job_id)
        self._segments.append(self._open)
        self._changed.set()

    async def feed(self, pcm16k: bytes, speech: bool = True) -> None:
        """`speech`: the frame has speech (after a split, quiet is held back until speech resumes)."""
        self.seconds += len(pcm16k) / 2 / SAMPLE_RATE
        self.recent += pcm16k
        if len(self.recent) > RECENT_BYTES:
            del self.recent[: len(self.recent) - RECENT_BYTES]
        if self._open is None:
            self._held += pcm16k
            if len(self._held) > HELD_BYTES:
                del self._held[: len(self._held) - HELD_BYTES]
            if not speech:
                return
            await self._open_segment()
            pcm16k, self._held = bytes(self._held), bytearray()
        assert self._open is not None
        await jobs.audio_put(self._open.job_id, pcm16k)

    @property
    def splittable(self) -> bool:
        return self._open is not None and not self.ended

    async def split(self) -> None:
        """A pause: end the open job, so that its final (the transcript so far) comes now."""
        segment = self._open
        if segment is None or self.ended:
            return
        self._open = None
        segment.ended = segment.split = True
        await jobs.audio_end(segment.job_id)

    async def end(self) -> None:
        if not self.ended:
            self.ended = True
            self.ended_at = time.monotonic()
            self._changed.set()
            segment, self._open = self._open, None
            if segment is not None:
                segment.ended = True
                await jobs.audio_end(segment.job_id)

    @property
    def transcript(self) -> str:
        """The finals of the segments recognised so far, joined as one recogniser would write them."""
        return self._joined()

    def _joined(self, partial: str | None = None) -> str:
        texts = [*self._finals, partial] if partial is not None else self._finals
        if len(texts) == 1:
            return texts[0]  # one job: its text as it is
        return clean_transcript(" ".join(texts))

    async def _listen(self) -> None:
        """The segments' messages in order; the utterance's final once it has ended and all are in."""
        session = self.session
        index = 0
        try:
            while True:
                while index >= len(self._segments):
                    if self.ended:
                        await self._final()
                        return
                    self._changed.clear()
                    await self._changed.wait()
                segment = self._segments[index]
                index += 1
                if not await self._listen_segment(segment):
                    return
                if segment.split and index == len(self._segments) and not self.ended:
                    # The transcript so far, as final as it gets: shown, and the session may prepare.
                    self.partial = self.transcript
                    if self.partial:
                        await session.emit({"type": "partial", "utterance_id": self.id, "text": self.partial})
                    if self.on_split_final is not None:
                        await self.on_split_final(self)
        except jobs.JobTimeout:
            await session.on_utterance_error(self, "voice_worker_timeout", "Speech recognition did not answer in time.")

    async def _listen_segment(self, segment: _Segment) -> bool:
        """True once the segment's final is in; False after an error (reported)."""
        session = self.session
        # While the user is still talking a recogniser may rightly say nothing for a long time
        # (silence, no new words): the job's silence only counts once the segment has ended.
        stream = jobs.job_messages(segment.channel, segment.job_id, may_be_quiet=lambda: not segment.ended)
        async for message in stream:
            kind = message["type"]
            if kind == messages.ASR_PARTIAL:
                self.partial = self._joined(message["text"])
                await session.emit({"type": "partial", "utterance_id": self.id, "text": self.partial})
                await session.on_partial(self, self.partial)
            elif kind == messages.ASR_FINAL:
                self._finals.append(message["text"])
                return True
            elif kind == messages.ASR_ERROR:
                await session.on_utterance_error(self, message["code"], message["message"])
                return False
        return False

    async def _final(self) -> None:
        if self.ended_at is not None:
            metrics.observe_transcript_latency(time.monotonic() - self.ended_at)
        if self.speech_ended_at is not None:
            metrics.observe_turn_stage("final", time.monotonic() - self.speech_ended_at)
        await self.session.on_final(self, self.transcript)

    def cancel(self) -> None:
        if self.listener and not self.listener.done():
            self.listener.cancel()


class Listening:
    """The session's audio input: checks, resampling, the hands-free gate, the open utterance."""

    def __init__(self, session: "VoiceSession"):
        self.session = session
        self.utterance: Utterance | None = None
        self.sample_rate = SAMPLE_RATE
        self._count = 0
        self._resample = StreamResampler(SAMPLE_RATE, SAMPLE_RATE)
        self._bucket: TokenBucket | None = None
        self.gate: HandsFreeGate | None = None
        self.policy: TurnEndPolicy | None = None
        self.judging: asyncio.Task | None = None  # the end-of-turn model's call on the current pause
        self._pause: object | None = None  # the pause going on in the open utterance, if any
        # Audio frames and the model's verdict both end utterances: one at a time.
        self._lock = asyncio.Lock()

    def configure(
        self,
        *,
        sample_rate: int,
        gate: HandsFreeGate | None,
        fresh: bool = False,
        policy: TurnEndPolicy | None = None,
    ) -> None:
        """The input's sample rate and the hands-free gate (None: push-to-talk). The resampler and the
        audio allowance are renewed only for a new rate or when `fresh` (a start): a configure message
        must not refill the allowance."""
        if sample_rate != self.sample_rate and self.utterance is not None:
            raise SessionError("The sample rate cannot change during an utterance.", code="invalid_config")
        if fresh or self._bucket is None or sample_rate != self.sample_rate:
            self.sample_rate = sample_rate
            self._resample = StreamResampler(sample_rate, SAMPLE_RATE)
            rate_bytes = sample_rate * 2 * self.session.limits.max_audio_rate
            self._bucket = TokenBucket(rate_bytes, burst_bytes=sample_rate * 2 * 2.0)  # 2 s burst
        self.gate = gate
        if policy is not None:
            self.policy = policy

    async def audio(self, pcm: bytes) -> None:
        async with self._lock:
            await self._audio(pcm)

    async def _audio(self, pcm: bytes) -> None:
        if len(pcm) % 2:
            raise SessionError("Audio frames must hold whole 16-bit samples.", code="bad_audio_frame")
        assert self._bucket is not None, "configure() first"
        if not self._bucket.take(len(pcm)):
            raise SessionError("Audio is arriving faster than real time; frames dropped.", code="audio_rate_exceeded")
        pcm16k = self._resample(pcm)
        if not pcm16k:
            return  # nothing to hear yet (an empty frame, or the resampler holds it); b"" would end the job
        gate = self.gate
        if gate is not None and self.utterance is None:
            opening = gate.listen(pcm16k)
            if opening is None:
                return
            await self.session.on_speech_started()  # barge-in when a reply is playing
            await self._begin()
            pcm16k = opening
        elif self.utterance is None:
            await self._begin()
        elif gate is not None:
            gate.hear(pcm16k)
        utterance = self.utterance
        assert utterance is not None
        limit = self.session.limits.max_utterance_s
        if utterance.seconds + len(pcm16k) / 2 / SAMPLE_RATE > limit:
            await self._end()
            raise SessionError(
                f"Utterances are limited to {limit:g} seconds; this one was ended there.", code="utterance_too_long"
            )
        await utterance.feed(pcm16k, speech=gate is None or gate.trailing_silence_ms == 0)
        if gate is None:
            return
        if gate.speech_ended:
            await self._end(reason=self.policy.silence_reason if self.policy else "silence_rule")
            return
        await self._follow_pauses(utterance, gate)

    async def _follow_pauses(self, utterance: Utterance, gate: HandsFreeGate) -> None:
        """Hands-free, after each frame: speech (barge-in length), a pause starting (the session may
        prepare a reply; the model is asked), speech resuming (the pause is over)."""
        silence_ms = gate.trailing_silence_ms
        if silence_ms == 0:
            await self.session.on_utterance_speech(utterance, gate.speech_ms)
            if self._pause is not None:
                self._pause = None  # the user goes on: a verdict on that pause no longer counts
                await self.session.on_speech_resumed(utterance)
            return
        policy = self.policy
        pause_ms = policy.pause_ms if policy is not None else None
        if self._pause is not None or pause_ms is None or silence_ms < pause_ms:
            return
        pause = self._pause = object()
        utterance.speech_ended_at = time.monotonic() - silence_ms / 1000
        if self._prepares(utterance):
            # The reply is prepared from the final of the audio so far, once it comes (Utterance).
            utterance.on_split_final = lambda split: self._split_final(split, pause)
            await utterance.split()
        else:
            await self.session.on_pause(utterance)
        if policy is not None and policy.model is not None:
            self.judging = asyncio.create_task(self._judge(utterance, pause, policy))

    def _prepares(self, utterance: Utterance) -> bool:
        """Will the session prepare a reply at this pause (live.session on_pause)? Then the job is split."""
        session = self.session
        return (
            bool(getattr(session, "preemptive", False))
            and not getattr(session, "turn_running", False)
            and bool(utterance.partial.strip())
            and utterance.splittable
        )

    async def _split_final(self, utterance: Utterance, pause: object) -> None:
        async with self._lock:
            if self.utterance is utterance and self._pause is pause:  # the pause is still going on
                await self.session.on_pause(utterance)

    async def _judge(self, utterance: Utterance, pause: object, policy: TurnEndPolicy) -> None:
        assert policy.model is not None
        try:
            probability = await judge(policy.model, bytes(utterance.recent))
        except Exception:  # the model failing must not end the session: the silence limit still ends it
            logger.exception("The end-of-turn model failed")
            return
        async with self._lock:
            if self.utterance is utterance and self._pause is pause and probability >= policy.threshold:
                await self._end(reason="model")

    async def _begin(self) -> None:
        self._count += 1
        utterance = Utterance(self.session, self._count)
        self.utterance = utterance
        await utterance.start(self.session.phrases)
        await self.session.set_state("listening")

    async def end(self) -> None:
        """The end of the open utterance (audio_end, the length limit): its final comes."""
        async with self._lock:
            await self._end()

    async def _end(self, reason: str | None = None) -> None:
        """`reason` (hands-free): what declared the end of the turn (model, silence_limit, silence_rule)."""
        utterance = self.utterance
        if utterance is None:
            return
        self.utterance = None
        self._pause = None
        if self.gate is not None:
            if utterance.speech_ended_at is None or reason != "model":
                utterance.speech_ended_at = time.monotonic() - self.gate.trailing_silence_ms / 1000
            self.gate.reset()
        if reason is not None:
            metrics.turn_ended(reason)
            if utterance.speech_ended_at is not None:
                metrics.observe_turn_stage("turn_end", time.monotonic() - utterance.speech_ended_at)
        await utterance.end()
        if self.session.state == "listening":
            await self.session.set_state("thinking")

    def forget(self, utterance: Utterance) -> None:
        """The utterance failed: it is no longer the open one."""
        if self.utterance is utterance:
            self.utterance = None

    async def close(self) -> None:
        """The client went away: end and stop listening to the open utterance."""
        if self.judging is not None:
            self.judging.cancel()
        if self.utterance is not None:
            utterance, self.utterance = self.utterance, None
            with contextlib.suppress(Exception):  # the session is closing: nothing to report to
                await utterance.end()
            utterance.cancel()
