"""Reminders on the voice socket: each session listens on its user's channel-layer group
(reminders.delivery.user_group) and, when a reminder fires, sends the `reminder` event and speaks it
through the normal speaking path (live.speaking) once the session is idle.

The listener is a task of its own with its own channel, not the consumer's channel: the consumer has
none (an idle socket must not depend on Redis), and a channel layer that is down only delays this
listener, which joins again after a pause, never the socket.
"""

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from channels.layers import get_channel_layer

from reminders.delivery import EVENT_TYPE, user_group
from voice.jobs.receiving import ChannelReader
from voice.text import split_sentences

from .speaking import ReplySpeaker

if TYPE_CHECKING:
    from .session import VoiceSession

logger = logging.getLogger(__name__)

RETRY_SECONDS = 2.0


class ReminderListener:
    def __init__(self, session: "VoiceSession"):
        self.session = session
        self.joined = asyncio.Event()  # set once the group has this listener's channel (tests wait on it)
        self._task = asyncio.create_task(self._listen(), name="reminder-listener")

    async def _listen(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        group = user_group(self.session.user.pk)
        while True:
            channel = reader = None
            try:
                channel = await layer.new_channel()
                reader = ChannelReader(channel)  # stopped by a message, never a cancelled receive
                await layer.group_add(group, channel)
                self.joined.set()
                while True:
                    message = await reader.get()
                    if message is not None and message.get("type") == EVENT_TYPE:
                        await self.session.reminder(message["reminder"])
            except asyncio.CancelledError:
                if channel is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(layer.group_discard(group, channel))
                raise
            except Exception:  # Redis away: try again shortly; the socket itself is unaffected
                logger.warning(
                    "Reminder listener of user %s failed; joining again", self.session.user.pk, exc_info=True
                )
                self.joined.clear()
                await asyncio.sleep(RETRY_SECONDS)
            finally:
                if reader is not None:
                    reader.release()

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


class ReminderTurn:
    """A reminder being spoken: a turn of its own (turn id, interruptible like a reply), without the LLM."""

    def __init__(self, session: "VoiceSession", turn_id: int, reminder: dict):
        self.session, self.id, self.reminder = session, turn_id, reminder
        self.reply_id = reminder.get("message_id")
        self.speaker: ReplySpeaker | None = None
        self.shown_text = reminder.get("content") or reminder.get("text") or ""

    async def run(self) -> None:
        session = self.session
        self.speaker = ReplySpeaker(session, self.id, session.speaker_id)
        try:
            for sentence in split_sentences(self.shown_text) or [self.shown_text]:
                self.speaker.add(sentence)
            await self.speaker.finish()
            await session.emit({"type": "audio_done", "turn_id": self.id})
        finally:
            await self.speaker.cancel()
        await session.turn_ended(self)
