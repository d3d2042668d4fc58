"""Preemptive generation: the reply starts at the user's first pause, before the turn is confirmed.

At a hands-free pause (live.listening) the session may prepare a reply to the transcript so far:
the recogniser's final transcript of the audio before the pause (listening ends the utterance's
recognition job there and, if the user goes on, recognises the rest with a new one), which is what
the turn will say if the user says nothing more. (Vosk's partial transcript lags the audio and
differs from its final: prepared from it, no reply matched in the hands-free benchmark.) The LLM is
asked with the messages the turn would send (read-only: nothing is saved), its text is
buffered, and the first speakable piece is synthesised, buffered too. Nothing reaches the client.

When the turn ends, the real turn (live.turn, through reply_stream's `start_llm`) asks for the
LLM stream of the messages it built: if they are exactly the prepared ones, it gets the buffered
reply (and the first piece's audio), so the answer plays at once; otherwise the prepared reply is
discarded and the LLM is asked afresh (the reason is logged). A turn that starts while the prepared
request is still being read (the end-of-turn model said yes at once) waits for it rather than
discarding it. Speech resuming after the pause discards it too. A
discarded reply was an extra LLM request, counted in mm_preemptive_generations_total.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator

from django.conf import settings

from chat import llm
from chat.selectors import conversation_get, llm_messages
from chat.services.conversations import message_text_clean
from magicmirror import metrics
from magicmirror.dbasync import db_call
from magicmirror.errors import ApplicationError
from tools import registry as tool_registry
from voice import jobs
from voice.speech_text import EarText
from voice.text import SentenceSplitter

logger = logging.getLogger(__name__)

_END = object()


def turn_messages_preview(*, user, conversation_id, text: str, speaker_id=None) -> list[dict]:
    """The LLM messages a turn with this text would send now (as reply_stream builds them, the user's
    memories and the persona of the voice reading the reply included; no writes)."""
    text = message_text_clean(text)
    conversation = None
    if conversation_id not in (None, ""):
        conversation = conversation_get(user=user, conversation_id=conversation_id)
    return llm_messages(conversation=conversation, pending_user_text=text, user=user, speaker_id=speaker_id)


class PreparedReply:
    def __init__(self, *, user, conversation_id, text: str, speaker_id, voice_output: bool):
        self.text = text
        self.user, self.conversation_id = user, conversation_id
        self.speaker_id, self.voice_output = speaker_id, voice_output
        self.messages: list[dict] | None = None
        self.tools: list[dict] | None = None
        self.outcome: str | None = None  # "used" or "discarded" once decided
        self.first_piece: str | None = None
        self._deltas: asyncio.Queue = asyncio.Queue()  # text, then _END or an LLMError
        self._audio: asyncio.Queue = asyncio.Queue()  # the first piece's job messages, then None
        self._synth: asyncio.Task | None = None
        # Set once `messages` and `tools` are known (or known to be none): a turn that starts before
        # that (the end-of-turn model said yes right after the pause) waits for them, not discards.
        self._request_known = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            await self._prepare_request()
        finally:
            self._request_known.set()  # also when it failed or was cancelled: then it matches nothing
        if self.messages is not None:
            await self._ask()

    async def _prepare_request(self) -> None:
        try:
            self.messages = await db_call(
                turn_messages_preview,
                user=self.user,
                conversation_id=self.conversation_id,
                text=self.text,
                # As live.turn asks: the persona of the voice reading the reply, if one does.
                speaker_id=self.speaker_id if self.voice_output else None,
            )
        except ApplicationError:
            self.messages = None  # a text the turn would refuse: nothing to prepare
            return
        # The tools the turn offers too; calls are only buffered: the turn runs them (they act).
        try:
            self.tools = [tool.openai_schema() for tool in await tool_registry.tools_for(self.user)] or None
        except BaseException:
            self.messages = None  # half known is not known: the turn asks for itself
            raise

    async def _ask(self) -> None:
        assert self.messages is not None
        splitter = SentenceSplitter(
            max_chars=settings.VOICE_SENTENCE_MAX_CHARS, first_min_chars=settings.VOICE_FIRST_PIECE_MIN_CHARS
        )
        try:
            async for delta in llm.stream_turn(self.messages, tools=self.tools):
                self._deltas.put_nowait(delta)
                if self.voice_output and self.first_piece is None and isinstance(delta, str):
                    for piece in splitter.feed(delta):
                        self._start_first_piece(piece)
                        break
        except llm.LLMError as exc:
            self._deltas.put_nowait(exc)
            return
        if self.voice_output and self.first_piece is None:
            for piece in splitter.flush():
                self._start_first_piece(piece)
                break
        self._deltas.put_nowait(_END)

    def _start_first_piece(self, piece: str) -> None:
        self.first_piece = piece
        ear = EarText().feed(piece)  # as the turn's speaker reads its first piece
        if ear:
            self._synth = asyncio.create_task(self._synthesize(ear))
        else:
            self._audio.put_nowait(None)

    async def _synthesize(self, ear: str) -> None:
        try:
            async for message in jobs.synthesize(text=ear, speaker_id=self.speaker_id):
                self._audio.put_nowait(message)
        finally:
            self._audio.put_nowait(None)

    # -- the turn takes it, or it goes -------------------------------------------------------------
    def stream_for(self, messages: list[dict], tools: list[dict] | None = None) -> AsyncIterator[str | list]:
        """reply_stream's `start_llm`: the buffered reply when `messages` and `tools` are the prepared
        ones, else (discarding it) a fresh LLM stream. Decided once the prepared request is known."""
        if self._request_known.is_set():
            return self._decided(messages, tools)
        return self._once_known(messages, tools)

    async def _once_known(self, messages: list[dict], tools: list[dict] | None) -> AsyncGenerator[str | list, None]:
        await self._request_known.wait()  # a database read and the tool list: moments
        stream = self._decided(messages, tools)
        try:
            async for item in stream:
                yield item
        finally:
            await stream.aclose()

    def _decided(self, messages: list[dict], tools: list[dict] | None) -> AsyncGenerator[str | list, None]:
        if self.outcome is None and self.messages is not None and messages == self.messages and tools == self.tools:
            self._decide("used")
            return self._replay()
        if self.outcome is None:
            logger.info("Prepared reply not used: %s", self.mismatch(messages, tools))
        self.discard()
        return llm.stream_turn(messages, tools=tools)

    def mismatch(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """Why the turn's request is not the prepared one, in a few words (for the log)."""
        if self.messages is None:
            return "nothing was prepared (the text was refused or is still being read)"
        for index, (mine, theirs) in enumerate(zip(self.messages, messages, strict=False)):
            if mine != theirs:
                keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
                return f"message {index} ({theirs.get('role')}) differs in {', '.join(keys)}"
        if len(self.messages) != len(messages):
            return f"{len(self.messages)} messages prepared, {len(messages)} asked"
        return "the tools differ" if tools != self.tools else "already decided"

    async def _replay(self) -> AsyncGenerator[str | list, None]:
        try:
            while (item := await self._deltas.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if not self._task.done():  # the turn was cut short: stop reading from the LLM
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task

    def audio_for(self, piece: str) -> AsyncIterator[dict] | None:
        """The first piece's synthesis messages, if `piece` is that piece and the reply was used."""
        if self.outcome != "used" or piece != self.first_piece or self._synth is None:
            return None
        synth, self._synth = self._synth, None
        return self._audio_messages(synth)

    async def _audio_messages(self, synth: asyncio.Task) -> AsyncGenerator[dict, None]:
        try:
            while (message := await self._audio.get()) is not None:
                yield message
        finally:
            if not synth.done():  # closed early (the turn was cut): the job is asked to stop
                synth.cancel()
                with contextlib.suppress(BaseException):
                    await synth

    def discard(self) -> None:
        """Not used: stop the LLM request and the synthesis (nothing of it was sent or saved)."""
        if self.outcome is None:
            self._decide("discarded")
        for task in (self._task, self._synth):
            if task is not None and not task.done():
                task.cancel()

    def _decide(self, outcome: str) -> None:
        self.outcome = outcome
        metrics.preemptive_outcome(outcome)
