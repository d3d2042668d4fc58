"""What a session stage sends towards the client, recorded in order, with a way to wait for it.

The fakes of the stage tests (a session for a speaker or a turn, the client of a VoiceSession)
build on it, so all of them record the same way: ("event", dict), ("audio", header, pcm),
("state", name).
"""

import asyncio
import functools

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


class FakeStream:
    """voice.jobs.SynthesisStream over a scripted `synthesize` (the voice.jobs.synthesize signature):
    each sentence spoken into it is that function's messages, as the real stream hands them out."""

    takes_text = False  # as a stream whose engine does not read text as it is written

    def __init__(self, synthesize, *, speaker_id=None, language=None, engine_name=None, trace_id=None):
        self._synthesize = synthesize
        self.closed = self.cancelled = False

    def open(self) -> None:
        pass

    def speak(self, text, *, speaker_id=None, language=None):
        return self._synthesize(text=text, speaker_id=speaker_id, language=language)

    def close(self) -> None:
        self.closed = True

    async def cancel(self) -> None:
        self.cancelled = True


def fake_synthesis(monkeypatch, synthesize) -> None:
    """A reply's speech comes from `synthesize` whichever way it is asked for: the turn's stream
    (VOICE_TTS_STREAM) or one job per sentence."""
    monkeypatch.setattr("live.speaking.jobs.synthesize", synthesize)
    monkeypatch.setattr("live.speaking.jobs.SynthesisStream", functools.partial(FakeStream, synthesize))
