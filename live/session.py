"""A live voice session: its state, the client's messages, interruption and close.

The consumer only translates frames; the session holds what the client configured and runs the
stages: listening (audio in -> utterances), turn (a message -> the reply's events) and speaking
(the reply's sentences -> audio). One turn at a time: new input replaces the running reply. An
interruption is one path: cancel the turn's task; every stage drops its pending work, the reply
is saved with what was actually spoken, and only then is the interruption acknowledged.

Hands-free turn-taking: the end of a turn is decided by live.turn_end (in listening); at a pause
the reply may be prepared already (live.preemptive); speech over a reply pauses it first and
interrupts it only when it is long enough or has words (live.barge_in), else the reply resumes.

See docs/protocol.md for the frames.
"""

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

from django.conf import settings

from chat.models import Message
from chat.selectors import conversation_get
from chat.services.conversations import message_text_clean
from chat.services.limits import turn_budget_take
from magicmirror import metrics
from magicmirror.dbasync import cache_call, db_call
from magicmirror.errors import ApplicationError
from speakers.selectors import speaker_get, user_settings_get
from voice.selectors import spoken_language_get

from .barge_in import BargeInRule
from .listening import HandsFreeGate, Listening, Utterance, VoiceActivityDetector
from .preemptive import PreparedReply
from .protocol import FRAME_HEADER_DESCRIPTION, PROTOCOL_VERSION, Limits, SessionError, parse_config
from .reminders import ReminderListener, ReminderTurn
from .turn import Turn
from .turn_end import EndOfTurnModel, TurnEndPolicy


class VoiceSession:
    def __init__(
        self,
        *,
        user,
        emit: Callable[[dict], Awaitable[None]],
        send_audio: Callable[[bytes], Awaitable[None]],
        vad_factory: Callable[[int], VoiceActivityDetector] | None = None,
        turn_model: EndOfTurnModel | None = None,
        interface_language: str | None = None,
    ):
        """`vad_factory(silence_ms)`: a hands-free VAD ending speech after that much quiet.
        `turn_model`: the end-of-turn model (default: Smart Turn, when TURN_DETECTION asks for it)."""
        self.user = user
        self.emit = emit
        self.send_audio = send_audio
        self.limits = Limits()
        self.started = False
        self.conversation_id = None
        self.speaker_id = None
        self.mode = "ptt"
        self.voice_output = True
        self.spoken_language: str | None = None  # "I speak": recognition model, voice tie-breaker
        self.interface_language = interface_language  # the handshake's language cookie / Accept-Language
        self.phrases: list[str] | None = None
        self.state = "idle"
        self.listening = Listening(self)
        self._vad_factory = vad_factory
        self._turn_task: asyncio.Task | None = None
        self._turn: Turn | ReminderTurn | None = None
        self._turn_count = 0
        self._turn_model = turn_model
        self.policy: TurnEndPolicy | None = None
        self.barge_in = BargeInRule.from_settings()
        self.preemptive = False
        self._prepared: PreparedReply | None = None
        self._reminders: ReminderListener | None = None  # the user's reminders, spoken here (live.reminders)
        self._reminders_waiting: list[dict] = []  # fired while a turn ran: spoken when it ends
        self._paused_turn: Turn | ReminderTurn | None = None  # the reply a barge-in paused, until it resumes or is cut

    # -- the client's messages ---------------------------------------------------------------------
    async def dispatch(self, message: dict) -> None:
        """One JSON message of the client (already parsed: a dict with a string `type`)."""
        kind = message["type"]
        if kind == "ping":
            await self.emit({"type": "pong", "id": message.get("id")})
            return
        if kind == "start":
            await self.emit(await self.start(message))
            return
        if not self.started:
            raise SessionError("Send a start message first.", code="not_started")
        if kind == "configure":
            await self.configure(message)
            await self.emit(await self.ready_event())
        elif kind == "audio_end":
            await self.listening.end()
        elif kind == "text":
            await self.text(message.get("text"))
        elif kind == "interrupt":
            if await self.interrupt() is None:
                await self.emit({"type": "interrupted", "turn_id": None, "message_id": None})
        else:
            raise SessionError(f"Unknown message type {kind!r}.", code="unknown_type")

    async def audio(self, pcm: bytes) -> None:
        """One binary frame of microphone audio."""
        if len(pcm) > self.limits.max_frame_bytes:
            raise SessionError(
                f"Audio frames are limited to {self.limits.max_frame_bytes} bytes.", code="frame_too_large"
            )
        if not self.started:
            raise SessionError("Send a start message before audio.", code="not_started")
        await self.listening.audio(pcm)

    # -- configuration ----------------------------------------------------------------------------
    async def start(self, message: dict) -> dict:
        config = parse_config(message, start=True)
        self.limits = Limits()  # settings as they are when the session starts
        self.policy = await asyncio.to_thread(TurnEndPolicy.from_settings, self._turn_model)  # may load the model
        self.barge_in = BargeInRule.from_settings()
        self.preemptive = settings.TURN_PREEMPTIVE
        user_settings = await db_call(user_settings_get, user=self.user)
        self.mode = user_settings.input_mode
        self.voice_output = user_settings.voice_output
        self.speaker_id = user_settings.current_speaker_id
        self.spoken_language = spoken_language_get(
            user_settings=user_settings, interface_language=self.interface_language
        )
        await self._apply(config, fresh=True)
        self.started = True
        if self._reminders is None:
            self._reminders = ReminderListener(self)
        return await self.ready_event()

    async def configure(self, message: dict) -> None:
        await self._apply(parse_config(message, start=False))

    async def _apply(self, config: dict, *, fresh: bool = False) -> None:
        """Apply validated settings; `fresh` (a start) also renews the audio allowance from the limits."""
        # The ids are the user's own or NotFound (another user's object looks like none).
        if config.get("conversation_id") is not None:
            await db_call(conversation_get, user=self.user, conversation_id=config["conversation_id"])
        if config.get("speaker_id") is not None:
            await db_call(speaker_get, user=self.user, speaker_id=config["speaker_id"])
        gate = None
        mode = config.get("mode", self.mode)
        if self._vad_factory is not None and mode == "handsfree":
            # The gate in use keeps listening (an open utterance is still ended by the silence after it).
            kept = None if fresh else self.listening.gate
            silence_ms = self.policy.silence_ms if self.policy is not None else settings.VAD_SILENCE_MS
            gate = kept or HandsFreeGate(self._vad_factory(silence_ms), preroll_s=settings.VOICE_PREROLL_SECONDS)
        self.listening.configure(
            sample_rate=config.get("sample_rate", self.listening.sample_rate),
            gate=gate,
            fresh=fresh,
            policy=self.policy,
        )
        for name in ("conversation_id", "speaker_id", "mode", "voice_output", "phrases"):
            if name in config:
                setattr(self, name, config[name])

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
            "input": {"format": "pcm_s16le", "sample_rate": self.listening.sample_rate, "channels": 1},
            "output": {
                "format": "pcm_s16le",
                "sample_rate": None,  # engines differ: each `sentence` event gives its audio's rate
                "channels": 1,
                "frame_header": FRAME_HEADER_DESCRIPTION,
            },
            "engines": {"asr": settings.VOICE_ASR_ENGINE, "tts": list(settings.VOICE_TTS_ENGINES)},
            "spoken_language": self.spoken_language,
            "limits": self.limits.as_dict(),
        }

    async def set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            await self.emit({"type": "state", "state": state})

    # -- from the listening stage ----------------------------------------------------------------
    async def on_speech_started(self) -> None:
        """Hands-free speech while a reply runs: pause it (a cough must not cut it), or interrupt at once."""
        if not self.turn_running:
            return
        turn = self._turn
        if self.barge_in.pauses_first and turn is not None and turn.speaker is not None:
            if self._paused_turn is None:
                self._paused_turn = turn
                turn.speaker.pause()
                await self.emit({"type": "reply_paused", "turn_id": turn.id})
            return
        await self.interrupt()  # barge-in: the user talks over the reply

    async def on_utterance_speech(self, utterance: Utterance, speech_ms: int) -> None:
        """Hands-free: the open utterance has this much speech so far."""
        if self._paused_turn is not None and self.barge_in.long_enough(speech_ms):
            await self._barge_in_confirmed()

    async def on_partial(self, utterance: Utterance, text: str) -> None:
        turn = self._paused_turn
        if turn is not None and self.barge_in.words_interrupt(text, turn.shown_text):
            await self._barge_in_confirmed()

    async def _barge_in_confirmed(self) -> None:
        self._paused_turn = None
        metrics.barge_in_outcome("interrupted")
        await self.interrupt()

    async def _resume_paused_reply(self) -> None:
        """The speech over the reply was no interruption (no words, too short): the reply goes on."""
        turn, self._paused_turn = self._paused_turn, None
        if turn is None:
            return
        metrics.barge_in_outcome("resumed")
        if turn is self._turn and self.turn_running and turn.speaker is not None:
            turn.speaker.resume()
            await self.emit({"type": "reply_resumed", "turn_id": turn.id})

    async def on_pause(self, utterance: Utterance) -> None:
        """Hands-free: the user paused (TURN_PAUSE_MS). Prepare the reply to what was said so far."""
        text = utterance.partial.strip()
        if not self.preemptive or not text or self.turn_running:
            return
        if self._prepared is not None and self._prepared.outcome is None and self._prepared.text == text:
            return
        self._discard_prepared()
        self._prepared = PreparedReply(
            user=self.user,
            conversation_id=self.conversation_id,
            text=text,
            speaker_id=self.speaker_id,
            voice_output=self.voice_output,
        )

    async def on_speech_resumed(self, utterance: Utterance) -> None:
        self._discard_prepared()  # the user goes on: the prepared reply answers too little

    def _discard_prepared(self) -> None:
        if self._prepared is not None:
            self._prepared.discard()
            self._prepared = None

    def _take_prepared(self, text: str) -> PreparedReply | None:
        """The prepared reply if it was for this transcript (the turn still checks the messages)."""
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared.outcome is None and prepared.text.split() == text.split():
            return prepared
        if prepared is not None:
            prepared.discard()
        return None

    async def on_final(self, utterance: Utterance, text: str) -> None:
        if not text.strip():
            self._discard_prepared()
            await self.emit({"type": "final", "utterance_id": utterance.id, "text": "", "message_id": None})
            await self._resume_paused_reply()
            if not self.turn_running:
                await self.became_idle()
            return
        speech_ended_at = utterance.speech_ended_at
        await self.start_turn(
            text,
            Message.Source.VOICE,
            utterance_id=utterance.id,
            input_ended_at=speech_ended_at or utterance.ended_at,
            trace_id=utterance.trace_id,
            speech_ended_at=speech_ended_at,
            prepared=self._take_prepared(text),
        )

    async def on_utterance_error(self, utterance: Utterance, code: str, message: str) -> None:
        self.listening.forget(utterance)
        self._discard_prepared()
        await self.emit({"type": "error", "code": code, "message": message, "utterance_id": utterance.id})
        await self._resume_paused_reply()
        if not self.turn_running:
            await self.became_idle()

    # -- turns ------------------------------------------------------------------------------------
    @property
    def turn_running(self) -> bool:
        return self._turn_task is not None and not self._turn_task.done()

    async def text(self, text) -> None:
        text = message_text_clean(text)
        await self.start_turn(text, Message.Source.TEXT, input_ended_at=time.monotonic())

    async def start_turn(
        self,
        text: str,
        source,
        *,
        utterance_id=None,
        input_ended_at=None,
        trace_id=None,
        speech_ended_at=None,
        prepared: PreparedReply | None = None,
    ):
        if not await self._turn_budget_take(text, utterance_id=utterance_id):
            if prepared is not None:
                prepared.discard()
            await self._resume_paused_reply()
            return  # refused: no LLM call, and a reply that is playing goes on
        self._paused_turn = None
        if self.turn_running:
            await self.interrupt()  # one turn at a time: new input replaces the running reply
        self._turn_count += 1
        await self.set_state("thinking")
        turn = Turn(
            self,
            self._turn_count,
            text,
            source,
            utterance_id=utterance_id,
            input_ended_at=input_ended_at,
            trace_id=trace_id,
            speech_ended_at=speech_ended_at,
            prepared=prepared,
        )
        self._turn = turn
        self._turn_task = asyncio.create_task(turn.run())

    async def _turn_budget_take(self, text: str, *, utterance_id) -> bool:
        """Count the turn in the user's budget (shared with POST /api/chat and the user's other
        sockets); False, after an `error` event `rate_limited`, when it is spent."""
        try:
            await cache_call(turn_budget_take, user=self.user)
        except ApplicationError as exc:
            error = {"type": "error", "code": exc.code, "message": exc.message}
            if utterance_id is not None:  # the transcript still reaches the client, saved nowhere
                await self.emit({"type": "final", "utterance_id": utterance_id, "text": text, "message_id": None})
                error["utterance_id"] = utterance_id
            await self.emit(error)
            if not self.turn_running and self.listening.utterance is None:
                await self.became_idle()
            return False
        return True

    async def turn_ended(self, turn: Turn | ReminderTurn) -> None:
        """A turn ran to its end (not interrupted)."""
        if self.listening.utterance is None:
            await self.became_idle()

    async def became_idle(self) -> None:
        """Nothing runs and nobody speaks: say so, then speak a reminder that waited for this moment."""
        await self.set_state("idle")
        await self._speak_waiting_reminder()

    # -- reminders (live.reminders) ---------------------------------------------------------------
    async def reminder(self, reminder: dict) -> None:
        """A reminder of this user fired: shown at once, spoken now if the session is idle, else after
        the running turn (a reminder never cuts the user or a reply short)."""
        await self.emit(
            {"type": "reminder", "id": reminder["id"], "text": reminder["text"], "message_id": reminder["message_id"]}
        )
        if self.voice_output:
            self._reminders_waiting.append(reminder)
            await self._speak_waiting_reminder()

    async def _speak_waiting_reminder(self) -> None:
        if not self._reminders_waiting or self.turn_running or self.listening.utterance is not None:
            return
        self._turn_count += 1
        turn = ReminderTurn(self, self._turn_count, self._reminders_waiting.pop(0))
        self._turn = turn
        self._turn_task = asyncio.create_task(turn.run())

    async def interrupt(self) -> dict | None:
        """Stop the running turn at once; returns the acknowledgement event (already sent)."""
        task = self._turn_task
        if task is None or task.done():
            return None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Nothing of the old turn can be sent after this point: its tasks are all finished, and its
        # reply is saved as it ends (cut short, or whole if nothing of it was cut).
        message_id = self._turn.reply_id if self._turn is not None else None
        event = {"type": "interrupted", "turn_id": self._turn_count, "message_id": message_id}
        await self.emit(event)
        if self.listening.utterance is None:
            await self.set_state("idle")
        return event

    async def close(self) -> None:
        """The client went away: stop listening; cut the reply short (it is saved)."""
        await self.listening.close()
        self._discard_prepared()
        if self._reminders is not None:
            await self._reminders.close()
        task = self._turn_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
