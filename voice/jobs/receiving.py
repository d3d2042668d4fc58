"""Reading a private channel-layer channel without ever cancelling a receive().

channels-redis serves all of a process's private channels from one Redis key: whichever receive()
holds the process's lock pops the next message (BZPOPMIN) for any of them and only then backs it up,
so a receive() cancelled at that moment drops another channel's message for good
(django/channels_redis#366). Measured here: under 16 concurrent sessions a job's whole reply, or
its stream's last `sentence_done`, went missing every few hundred turns, each time a listener
stopped early (an interrupted or finished turn, a closed socket). So a listener here stops by
sending its own channel a message, which ends the pending receive() the normal way.
"""

import asyncio
import logging

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

RELEASE = "voice.channel.release"  # the message that ends a listener's last receive()
_releasing: set[asyncio.Task] = set()  # sends in flight (a task nobody holds may be collected)


class ChannelReader:
    """The messages of one private channel, in order; `release()` when done with it."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self._layer = get_channel_layer()
        self._pending: asyncio.Future | None = None
        self._released = False

    async def get(self, timeout: float | None = None) -> dict | None:
        """The next message, or None after `timeout` seconds (the receive goes on for the next call).
        Cancelling this call leaves the receive running: `release()` ends it."""
        assert not self._released, "the channel was released"
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._layer.receive(self.channel))
        done, _ = await asyncio.wait({self._pending}, timeout=timeout)
        if not done:
            return None
        pending, self._pending = self._pending, None
        return pending.result()

    def release(self) -> asyncio.Future | None:
        """Stop reading: a receive still waiting gets a message of its own (sent in the background,
        so this is safe in a `finally` of a cancelled task), and whatever it returns is dropped.
        Returns that receive (done once it has ended), or None when none was waiting."""
        self._released = True
        pending, self._pending = self._pending, None
        if pending is None or pending.done():
            return None
        pending.add_done_callback(_drop_result)
        task = asyncio.ensure_future(self._layer.send(self.channel, {"type": RELEASE}))
        _releasing.add(task)
        task.add_done_callback(_sent)
        return pending


def _drop_result(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.info("A released channel's receive failed: %s", future.exception())


def _sent(task: asyncio.Task) -> None:
    _releasing.discard(task)
    if not task.cancelled() and task.exception() is not None:  # Redis away: the receive fails with it
        logger.info("Could not release a channel: %s", task.exception())
