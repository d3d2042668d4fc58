"""A turn: the user's message (a final transcript or typed text) in, the reply's events out.

The reply streams from the LLM (chat.services.replies.reply_stream); each event becomes a
protocol event for the client, and with voice output on, the reply is cut into sentences as it
arrives and each one goes to the speaker (live.speaking) as soon as it is complete. Cancelling the
task that runs a turn is the one way to interrupt it: every stage drops its pending work and the
reply is saved with what was actually spoken. A cut that comes after the LLM has finished, while the
reply's audio still plays, finds the reply saved whole: the turn then updates it to what was heard.
"""

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from django.conf import settings

from chat.models import Message
from chat.services.replies import reply_mark_interrupted, reply_stream
from magicmirror import metrics
from magicmirror.dbasync import db_call
from magicmirror.errors import ApplicationError
from magicmirror.logging import bind_trace
from voice.text import SentenceSplitter, join_sentences

from .speaking import ReplySpeaker

if TYPE_CHECKING:
    from .preemptive import PreparedReply
    from .session import VoiceSession

logger = logging.getLogger(__name__)

# Said when tools take a while (TOOLS_ACK_AFTER_MS), in the user's spoken language.
TOOL_ACKS = {"zh": "稍等，我查一下。", "en": "One moment."}


class Turn:
    def __init__(
        self,
        session: "VoiceSession",
        turn_id: int,
        text: str,
        source,
        *,
        utterance_id=None,
        input_ended_at=None,
        trace_id=None,
        speech_ended_at=None,
        prepared: "PreparedReply | None" = None,
    ):
        self.session, self.id, self.text, self.source = session, turn_id, text, source
        self.utterance_id, self.input_ended_at, self.trace_id = utterance_id, input_ended_at, trace_id
        # Hands-free: the end of the user's speech, from which the stage latencies are measured.
        self.speech_ended_at = speech_ended_at
        self.prepared = prepared  # a reply started at the user's pause (live.preemptive), if any
        self._stages_seen: set[str] = set()
        self._shown_spoken = False  # a first piece went to the speaker
        self.speaker: ReplySpeaker | None = None
        self.reply_id: int | None = None  # the reply, once saved (whole, or cut short)
        self._saved_whole = False  # the LLM's reply ended before the cut: saved with all its text
        self._shown: list[str] = []
        self._splitter = SentenceSplitter(
            max_chars=settings.VOICE_SENTENCE_MAX_CHARS, first_min_chars=settings.VOICE_FIRST_PIECE_MIN_CHARS
        )
        self._ack_task: asyncio.Task | None = None  # the slow-tool acknowledgement, pending
        self._ack_text: str | None = None  # what it said, once said (not part of the reply's text)

    @property
    def shown_text(self) -> str:
        """The reply's text so far (barge-in tells the reply's own echo from the user's words with it)."""
        return "".join(self._shown)

    def what_was_said(self) -> str:
        """What to save when the turn is cut short: the sentences heard (or the text shown, without voice).

        The speaker is hushed first: a sentence it started while the reply is being saved would be
        heard but missing from the saved text."""
        if self.speaker is None:
            return "".join(self._shown)
        self.speaker.hush()
        spoken = list(self.speaker.spoken)
        if self._ack_text in spoken:  # "One moment." was heard, but is none of the reply's text
            spoken.remove(self._ack_text)
        return join_sentences(spoken)

    def _speak_the_rest(self) -> None:
        self._saved_whole = True  # the LLM has finished: reply_stream saves the reply whole next
        if self.speaker is not None:
            for piece in self._splitter.flush():
                self._add_sentence(piece)

    async def run(self) -> None:
        session = self.session
        bind_trace(self.trace_id)  # this task and its children: logs and voice jobs carry the id
        if session.voice_output:
            self.speaker = ReplySpeaker(
                session, self.id, session.speaker_id, input_ended_at=self.input_ended_at, source=self.source
            )
            self.speaker.on_first_audio = lambda: self._stage("first_audio")
        events = reply_stream(
            user=session.user,
            conversation_id=session.conversation_id,
            text=self.text,
            source=self.source,
            speaker_id=session.speaker_id if session.voice_output else None,
            content_on_interrupt=self.what_was_said,
            on_reply_complete=self._speak_the_rest,
            on_reply_saved=self._reply_saved,
            start_llm=self.prepared.stream_for if self.prepared is not None else None,
        )
        cut = False
        try:
            async for event in events:
                await self._relay(event)
            if self.speaker is not None:
                await self.speaker.finish()
                await session.emit({"type": "audio_done", "turn_id": self.id})
        except asyncio.CancelledError:
            cut = True
            raise
        except ApplicationError as exc:
            await session.emit({"type": "error", "turn_id": self.id, "code": exc.code, "message": exc.message})
        except Exception:
            logger.exception("Voice turn %s failed", self.id)
            await session.emit(
                {"type": "error", "turn_id": self.id, "code": "turn_failed", "message": "The reply failed."}
            )
        finally:
            self._cancel_ack()
            await events.aclose()  # saves what arrived if the turn was cut short (running tools are cancelled)
            if self.prepared is not None:
                self.prepared.discard()  # unused (or what is left of it: its LLM read, its synthesis)
            if self.speaker is not None:
                if cut:  # shielded, as reply_stream's own save: a second cancellation cannot lose it
                    await asyncio.shield(self._stop_speaking_and_keep_what_was_heard(self.speaker))
                else:
                    await self.speaker.cancel()
        await session.turn_ended(self)

    def _stage(self, stage: str) -> None:
        """A hands-free turn reached `stage` (the first time counts)."""
        if self.speech_ended_at is not None and stage not in self._stages_seen:
            self._stages_seen.add(stage)
            metrics.observe_turn_stage(stage, time.monotonic() - self.speech_ended_at)

    def _add_sentence(self, piece: str) -> None:
        assert self.speaker is not None
        self._stage("first_sentence")
        audio = self.prepared.audio_for(piece) if self.prepared is not None and not self._shown_spoken else None
        self._shown_spoken = True
        self.speaker.add(piece, audio=audio)

    # -- tools ---------------------------------------------------------------------------------------
    def _ack_later(self) -> None:
        """Tools are running: if they take TOOLS_ACK_AFTER_MS, say a short acknowledgement (once a turn)."""
        if settings.TOOLS_ACK_AFTER_MS > 0 and self._ack_text is None and self._ack_task is None:
            self._ack_task = asyncio.create_task(self._ack_after(settings.TOOLS_ACK_AFTER_MS / 1000))

    async def _ack_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)  # a deadline, not synchronisation: cancelled when the results come
        self._ack_task = None
        if self.speaker is None:
            return
        language = self.session.spoken_language or "zh"
        self._ack_text = TOOL_ACKS.get(language, TOOL_ACKS["en"])
        self.speaker.add(self._ack_text)

    def _cancel_ack(self) -> None:
        if self._ack_task is not None:
            self._ack_task.cancel()
            self._ack_task = None

    async def _apply_effect(self, event: dict) -> None:
        """A tool changed the session (as a `configure` would): the client gets a new `ready`."""
        session = self.session
        if event["effect"] == "speaker":
            session.speaker_id = event["speaker"]["id"]
            if self.speaker is not None:
                self.speaker.speaker_id = session.speaker_id  # the rest of this reply is in that voice
        elif event["effect"] == "new_conversation":
            session.conversation_id = None  # the next turn starts a new one
        else:
            return
        await session.emit(await session.ready_event())

    def _reply_saved(self, message_id: int) -> None:
        self.reply_id = message_id

    async def _stop_speaking_and_keep_what_was_heard(self, speaker: ReplySpeaker) -> None:
        """The turn was cut short: the speaker stops; if the reply had been saved whole (the LLM had
        finished) and was still being spoken, it keeps only what was heard."""
        await speaker.cancel()  # first: then nothing more is heard
        if self.reply_id is None or not self._saved_whole or speaker.heard_all:
            return  # cut while the LLM was writing (reply_stream saved what was said), or nothing was cut
        try:
            await db_call(reply_mark_interrupted, message_id=self.reply_id, content=self.what_was_said())
        except Exception:  # logged, nothing else to do on the way out (as reply_stream's own save)
            logger.exception("Could not save what was heard of reply %s", self.reply_id)

    async def _relay(self, event: dict) -> None:
        """One reply event as protocol events (and sentences to speak)."""
        session, kind = self.session, event["type"]
        if kind == "conversation":
            session.conversation_id = event["conversation"]["id"]
            await session.emit({"type": "conversation", "turn_id": self.id, **event["conversation"]})
        elif kind == "user_message":
            message = event["message"]
            if self.source == Message.Source.VOICE:
                await session.emit(
                    {
                        "type": "final",
                        "utterance_id": self.utterance_id,
                        "text": message["content"],
                        "message_id": message["id"],
                    }
                )
            await session.emit(
                {"type": "turn", "turn_id": self.id, "user_message_id": message["id"], "source": self.source}
            )
        elif kind == "delta":
            self._stage("llm_first_token")
            self._shown.append(event["text"])
            await session.emit({"type": "delta", "turn_id": self.id, "text": event["text"]})
            if self.speaker is not None:
                for piece in self._splitter.feed(event["text"]):
                    self._add_sentence(piece)
                if self.prepared is None or self._shown_spoken:  # a prepared first sentence has its audio
                    self.speaker.write(self._splitter.pending)
        elif kind == "tool_call":
            if self.speaker is not None:
                for piece in self._splitter.flush():  # what was written before the call is said now
                    self._add_sentence(piece)
                self._ack_later()
            await session.emit({"type": "tool_call", "turn_id": self.id, "calls": event["calls"]})
        elif kind == "tool_result":
            self._cancel_ack()
            await session.emit(
                {
                    "type": "tool_result",
                    "turn_id": self.id,
                    **{k: event[k] for k in ("id", "name", "outcome", "result")},
                }
            )
        elif kind == "effect":
            await self._apply_effect(event)
        elif kind == "done":
            # The last sentence went to synthesis when the LLM finished (_speak_the_rest).
            message = event["message"]
            await session.emit(
                {"type": "reply_done", "turn_id": self.id, "message_id": message["id"] if message else None}
            )
        elif kind == "error":
            # A reply the LLM broke off is saved with all that arrived; a cut while it is spoken keeps
            # what was heard (as after `done`).
            self._saved_whole = event.get("message_id") is not None
            await session.emit(
                {"type": "error", "turn_id": self.id, "code": event["code"], "message": event["message"]}
            )
        elif kind == "title":
            await session.emit({"type": "title", "conversation_id": event["conversation_id"], "title": event["title"]})
