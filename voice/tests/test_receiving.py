"""Private channels are read without ever cancelling a receive() (voice.jobs.receiving), on the
channel layer of the run: channels-redis where the services run, the in-memory layer otherwise."""

import asyncio

from channels.layers import get_channel_layer

from voice import jobs
from voice.jobs import requester
from voice.jobs.receiving import RELEASE, ChannelReader

TIMEOUT = 10


async def _channel() -> str:
    return await get_channel_layer().new_channel()


async def test_a_released_reader_ends_its_receive_with_a_message_not_a_cancellation():
    reader = ChannelReader(await _channel())
    assert await reader.get(timeout=0.05) is None  # a receive is now waiting
    receive = reader.release()
    assert receive is not None
    message = await asyncio.wait_for(receive, TIMEOUT)
    assert not receive.cancelled()
    assert message == {"type": RELEASE}


async def test_a_timed_out_get_keeps_its_receive_for_the_next_one():
    layer = get_channel_layer()
    reader = ChannelReader(await _channel())
    assert await reader.get(timeout=0.05) is None
    await layer.send(reader.channel, {"type": "first"})
    await layer.send(reader.channel, {"type": "second"})
    assert await asyncio.wait_for(reader.get(), TIMEOUT) == {"type": "first"}
    assert await asyncio.wait_for(reader.get(), TIMEOUT) == {"type": "second"}
    assert reader.release() is None  # nothing was waiting


async def test_cancelling_a_listener_leaves_other_channels_messages_intact():
    """Two listeners share the process's receive; the first is stopped (cancelled, then released) while
    it waits: every message of the second still arrives, in order."""
    layer = get_channel_layer()
    first, second = ChannelReader(await _channel()), ChannelReader(await _channel())
    waiting = asyncio.create_task(first.get())
    got_second = asyncio.create_task(second.get())
    await asyncio.sleep(0)  # both receives are under way
    waiting.cancel()
    receive = first.release()
    assert receive is not None and not receive.cancelled()
    for n in range(5):
        await layer.send(second.channel, {"type": "n", "n": n})
    received = [await asyncio.wait_for(got_second, TIMEOUT)]
    received += [await asyncio.wait_for(second.get(), TIMEOUT) for _ in range(4)]
    assert [m["n"] for m in received] == [0, 1, 2, 3, 4]
    await asyncio.wait_for(receive, TIMEOUT)
    assert not receive.cancelled()


async def test_a_job_listener_closed_early_releases_its_channel(monkeypatch):
    released = []

    class Recorded(ChannelReader):
        def release(self):
            released.append(super().release())
            return released[-1]

    monkeypatch.setattr(requester, "ChannelReader", Recorded)
    layer = get_channel_layer()
    channel = await _channel()
    await layer.send(channel, {"type": "voice.tts.chunk", "job_id": "j1"})
    listener = jobs.job_messages(channel, "j1", may_be_quiet=lambda: True)
    assert (await asyncio.wait_for(anext(listener), TIMEOUT))["type"] == "voice.tts.chunk"
    reading = asyncio.create_task(anext(listener))
    for _ in range(3):
        await asyncio.sleep(0)  # the listener asks for its next message: a receive waits
    reading.cancel()  # the turn is over (an interruption)
    await asyncio.gather(reading, return_exceptions=True)
    await listener.aclose()
    assert len(released) == 1 and released[0] is not None
    assert await asyncio.wait_for(released[0], TIMEOUT) == {"type": RELEASE}
    assert not released[0].cancelled()
