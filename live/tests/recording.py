"""What a session stage sends towards the client, recorded in order, with a way to wait for it.

The fakes of the stage tests (a session for a speaker or a turn, the client of a VoiceSession)
build on it, so all of them record the same way: ("event", dict), ("audio", header, pcm),
("state", name).
"""

import asyncio

from live.protocol import AUDIO_HEADER

TIMEOUT = 20


class Recorder:
    def __init__(self):
        self.log: list[tuple] = []
        self._changed = asyncio.Condition()

    async def record(self, entry: tuple) -> None:
        self.log.append(entry)
        async with self._changed:
            self._changed.notify_all()

    async def emit(self, event: dict) -> None:
        await self.record(("event", event))

    async def send_audio(self, frame: bytes) -> None:
        await self.record(("audio", AUDIO_HEADER.unpack(frame[:12]), frame[12:]))

    def events(self, kind: str | None = None) -> list[dict]:
        return [e[1] for e in self.log if e[0] == "event" and (kind is None or e[1]["type"] == kind)]

    async def wait_until(self, predicate, timeout: float = TIMEOUT) -> None:
        """Until `predicate(log)` holds (asyncio.TimeoutError after `timeout` seconds)."""

        async def wait():
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self.log))

        await asyncio.wait_for(wait(), timeout)
