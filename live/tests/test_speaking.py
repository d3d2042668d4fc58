"""live.speaking on its own: ReplySpeaker with a scripted voice.jobs.synthesize and a fake session."""

import asyncio
import itertools
import struct
import time

import pytest

from live.protocol import Limits
from live.speaking import ReplySpeaker
from voice.jobs import messages

from .recording import Recorder, fake_synthesis

TIMEOUT = 10
RATE = 22050
_real_sleep = asyncio.sleep


class FakeSession(Recorder):
    """What ReplySpeaker uses of VoiceSession: everything sent lands in one ordered `log`."""

    def __init__(self, *, audio_lead_s=1000.0):
        super().__init__()
        self.limits = Limits(audio_lead_s=audio_lead_s)
        self.state = "thinking"

    async def set_state(self, state):
        if state != self.state:
            self.state = state
            await self.record(("state", state))

    async def wait_for(self, predicate):
        await self.wait_until(predicate, TIMEOUT)

    def frames(self):
        return [(entry[1], entry[2]) for entry in self.log if entry[0] == "audio"]


def pcm_for(sentence, seq, samples=RATE // 10) -> bytes:
    return struct.pack("<h", 100 * sentence + seq + 1) * samples


class Script:
    def __init__(self, chunks=2, *, error=None, gated=False, hang_after=None, samples=RATE // 10, yield_between=False):
        self.chunks, self.error, self.hang_after, self.samples = chunks, error, hang_after, samples
        self.gate = asyncio.Event()
        if not gated:
            self.gate.set()
        self.yield_between = yield_between
        self.finished = asyncio.Event()
        self.closed_early = False


class FakeTTS:
    """voice.jobs.synthesize, scripted per sentence text; real-shaped job messages (voice/jobs/messages.py)."""

    def __init__(self):
        self.scripts: dict[str, Script] = {}
        self.calls: list[tuple[str, object]] = []
        self.active = self.max_active = 0
        self._ids = itertools.count(1)

    def script(self, text, **kwargs) -> Script:
        self.scripts[text] = Script(**kwargs)
        return self.scripts[text]

    async def synthesize(self, *, text, speaker_id=None, engine_name=None, language=None):
        script = self.scripts.setdefault(text, Script())
        sentence = len(self.calls)
        self.calls.append((text, speaker_id))
        job_id = f"tts{next(self._ids)}"
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        completed = False
        try:
            await script.gate.wait()
            samples = 0
            for seq in range(script.chunks):
                pcm = pcm_for(sentence, seq, script.samples)
                chunk = {
                    "type": messages.TTS_CHUNK,
                    "job_id": job_id,
                    "t": time.time(),
                    "seq": seq,
                    "part": 0,
                    "produced": time.time(),
                    "pcm": pcm,
                    "sample_rate": RATE,
                }
                if seq == 0:
                    chunk.update(engine="piper", voice="en_US-joe-medium", clones=False, started=time.time())
                yield chunk
                samples += len(pcm) // 2
                if script.hang_after is not None and seq + 1 == script.hang_after:
                    await asyncio.Event().wait()  # a job that goes on forever
                if script.yield_between:
                    await _real_sleep(0)  # let the other jobs run (no time passes)
            if script.error is not None:
                yield messages.error("tts", job_id, script.error, f"{script.error} happened")
            else:
                yield {
                    "type": messages.TTS_DONE,
                    "job_id": job_id,
                    "t": time.time(),
                    "chunks": script.chunks,
                    "samples": samples,
                    "duration": samples / RATE,
                    "engine": "piper",
                    "voice": "en_US-joe-medium",
                    "clones": False,
                    "sample_rate": RATE,
                }
            completed = True
        finally:
            self.active -= 1
            script.closed_early = not completed
            script.finished.set()


@pytest.fixture
def tts(monkeypatch):
    fake = FakeTTS()
    fake_synthesis(monkeypatch, fake.synthesize)
    return fake


@pytest.fixture
def sleeps(monkeypatch):
    """asyncio.sleep as live.speaking sees it: recorded, and no time passes."""
    recorded: list[float] = []

    async def fake_sleep(delay, result=None):
        recorded.append(delay)
        await _real_sleep(0)
        return result

    monkeypatch.setattr("live.speaking.asyncio.sleep", fake_sleep)
    return recorded


async def finish(speaker):
    await asyncio.wait_for(speaker.finish(), TIMEOUT)


# -- order, events and frames -----------------------------------------------------------------------
async def test_sentences_play_in_order_even_when_a_later_one_is_ready_first(tts):
    session = FakeSession()
    first = tts.script("Hello there.", chunks=2, gated=True)
    second = tts.script("How are you?", chunks=3)
    speaker = ReplySpeaker(session, 7, speaker_id=5)
    speaker.add("Hello there.")
    speaker.add("How are you?")
    await asyncio.wait_for(second.finished.wait(), TIMEOUT)  # the second sentence is synthesised...
    assert not first.finished.is_set()
    assert session.log == [] and speaker.spoken == []  # ...but waits for the first one
    first.gate.set()
    await finish(speaker)
    assert tts.calls == [("Hello there.", 5), ("How are you?", 5)]
    assert [entry[:2] for entry in session.log] == [
        (
            "event",
            {
                "type": "sentence",
                "turn_id": 7,
                "sentence_id": 0,
                "text": "Hello there.",
                "sample_rate": RATE,
                "engine": "piper",
                "voice": "en_US-joe-medium",
                "clones": False,
            },
        ),
        ("state", "speaking"),
        ("audio", (7, 0, 0)),
        ("audio", (7, 0, 1)),
        ("event", {"type": "sentence_end", "turn_id": 7, "sentence_id": 0}),
        (
            "event",
            {
                "type": "sentence",
                "turn_id": 7,
                "sentence_id": 1,
                "text": "How are you?",
                "sample_rate": RATE,
                "engine": "piper",
                "voice": "en_US-joe-medium",
                "clones": False,
            },
        ),
        ("audio", (7, 1, 0)),
        ("audio", (7, 1, 1)),
        ("audio", (7, 1, 2)),
        ("event", {"type": "sentence_end", "turn_id": 7, "sentence_id": 1}),
    ]
    # Each frame carries the job's audio as it came (the fake's calls were first sentence, then second).
    assert [pcm for _, pcm in session.frames()] == [
        pcm_for(0, 0),
        pcm_for(0, 1),
        pcm_for(1, 0),
        pcm_for(1, 1),
        pcm_for(1, 2),
    ]
    assert speaker.spoken == ["Hello there.", "How are you?"]
    assert not speaker.failed


async def test_a_finished_reply_with_no_sentences_sends_nothing(tts):
    session = FakeSession()
    speaker = ReplySpeaker(session, 1, speaker_id=None)
    await finish(speaker)
    assert session.log == [] and speaker.spoken == [] and tts.calls == []


async def test_a_sentence_without_audio_is_not_announced(tts):
    session = FakeSession()
    tts.script("...", chunks=0)
    speaker = ReplySpeaker(session, 1, speaker_id=None)
    speaker.add("...")
    speaker.add("Words.")
    await finish(speaker)
    assert [e["type"] for e in session.events()] == ["sentence", "sentence_end"]
    assert session.events("sentence")[0]["sentence_id"] == 1
    assert speaker.spoken == ["Words."]


@pytest.mark.parametrize("prefetch", [1, 2, 3])
async def test_at_most_voice_tts_prefetch_sentences_synthesise_at_once(tts, settings, prefetch):
    settings.VOICE_TTS_PREFETCH = prefetch
    session = FakeSession()
    texts = [f"Sentence {word}." for word in ("one", "two", "three", "four", "five")]  # as the engine gets them
    for text in texts:
        tts.script(text, chunks=3, yield_between=True)
    speaker = ReplySpeaker(session, 2, speaker_id=None)
    for text in texts:
        speaker.add(text)
    await finish(speaker)
    assert tts.max_active == prefetch
    assert [e["text"] for e in session.events("sentence")] == texts
    assert [header for header, _ in session.frames()] == [(2, s, q) for s in range(5) for q in range(3)]


# -- failures ------------------------------------------------------------------------------------
async def test_a_tts_error_is_reported_once_and_later_sentences_are_skipped(tts):
    session = FakeSession()
    tts.script("One.", chunks=0, error="tts_engine_missing")
    tts.script("Two.", chunks=0, error="tts_engine_missing")  # already synthesising: fails too
    speaker = ReplySpeaker(session, 4, speaker_id=None)
    speaker.add("One.")
    speaker.add("Two.")
    await session.wait_for(lambda log: any(e[0] == "event" and e[1]["type"] == "error" for e in log))
    speaker.add("Three.")  # after the failure: not even asked for
    await finish(speaker)
    assert session.events() == [
        {"type": "error", "code": "tts_engine_missing", "message": "tts_engine_missing happened", "turn_id": 4}
    ]
    assert [text for text, _ in tts.calls] == ["One.", "Two."]
    assert session.frames() == [] and speaker.spoken == [] and speaker.failed


async def test_a_failure_after_audio_keeps_what_was_spoken(tts):
    session = FakeSession()
    tts.script("Fine.", chunks=2)
    tts.script("Broken.", chunks=1, error="voice_worker_timeout")
    speaker = ReplySpeaker(session, 3, speaker_id=None)
    speaker.add("Fine.")
    speaker.add("Broken.")
    await session.wait_for(lambda log: any(e[0] == "event" and e[1]["type"] == "error" for e in log))
    speaker.add("Never.")
    await finish(speaker)
    kinds = [e["type"] for e in session.events()]
    # The broken sentence's chunk was heard: it is announced and ended, and the error comes with it.
    assert kinds == ["sentence", "sentence_end", "sentence", "error", "sentence_end"]
    assert session.events("error")[0]["code"] == "voice_worker_timeout"
    assert [header for header, _ in session.frames()] == [(3, 0, 0), (3, 0, 1), (3, 1, 0)]
    assert speaker.spoken == ["Fine.", "Broken."]
    assert [text for text, _ in tts.calls] == ["Fine.", "Broken."]


# -- cancel ---------------------------------------------------------------------------------------
async def test_cancel_stops_playing_and_synthesising(tts):
    session = FakeSession()
    playing = tts.script("Playing now.", chunks=5, hang_after=1)
    waiting = tts.script("Coming next.", gated=True)
    speaker = ReplySpeaker(session, 9, speaker_id=None)
    speaker.add("Playing now.")
    speaker.add("Coming next.")
    speaker.add("Not started.")  # waits for a prefetch slot
    await session.wait_for(lambda log: any(e[0] == "audio" for e in log))
    await asyncio.wait_for(speaker.cancel(), TIMEOUT)
    assert playing.finished.is_set() and playing.closed_early
    assert waiting.finished.is_set() and waiting.closed_early
    assert [text for text, _ in tts.calls] == ["Playing now.", "Coming next."]
    sent = list(session.log)
    waiting.gate.set()
    await _real_sleep(0)
    assert session.log == sent  # nothing more is ever sent
    assert [header for header, _ in session.frames()] == [(9, 0, 0)]
    assert session.events("sentence_end") == []
    assert speaker.spoken == ["Playing now."]


async def test_cancel_before_anything_played(tts):
    session = FakeSession()
    gated = tts.script("Soon.", gated=True)
    speaker = ReplySpeaker(session, 1, speaker_id=None)
    speaker.add("Soon.")
    await asyncio.wait_for(speaker.cancel(), TIMEOUT)
    assert speaker.spoken == [] and session.log == []
    assert not tts.calls or gated.closed_early


# -- pacing and metrics -------------------------------------------------------------------------------
async def test_a_large_audio_lead_never_sleeps(tts, sleeps):
    session = FakeSession(audio_lead_s=1000.0)
    tts.script("A long one.", chunks=50, samples=RATE // 5)  # 10 s of audio
    speaker = ReplySpeaker(session, 1, speaker_id=None)
    speaker.add("A long one.")
    await finish(speaker)
    assert len(session.frames()) == 50
    assert sleeps == []


async def test_audio_is_paced_at_most_the_lead_ahead_of_real_time(tts, sleeps):
    session = FakeSession(audio_lead_s=1.0)
    tts.script("First.", chunks=2, samples=RATE // 2)  # 0.5 s chunks
    tts.script("Second.", chunks=2, samples=RATE // 2)
    speaker = ReplySpeaker(session, 1, speaker_id=None)
    speaker.add("First.")
    speaker.add("Second.")
    await finish(speaker)
    assert len(session.frames()) == 4
    # Before the 4th chunk 1.5 s of audio has gone out (no time has passed: sleep is a fake): 0.5 s
    # over the 1 s lead, one clock for the whole reply, across sentences.
    assert len(sleeps) == 1 and 0.25 < sleeps[0] <= 0.5


async def test_no_lead_sends_in_real_time(tts, sleeps):
    session = FakeSession(audio_lead_s=0.0)
    tts.script("Now.", chunks=4, samples=RATE // 2)
    speaker = ReplySpeaker(session, 1, speaker_id=None)
    speaker.add("Now.")
    await finish(speaker)
    assert len(sleeps) == 3
    for slept, expected in zip(sleeps, [0.5, 1.0, 1.5], strict=True):
        assert expected - 0.25 < slept <= expected


async def test_time_to_first_audio_is_measured_once(tts, monkeypatch):
    observed = []
    monkeypatch.setattr("live.speaking.metrics.observe_ttfa", lambda s, source: observed.append((s, source)))
    session = FakeSession()
    speaker = ReplySpeaker(session, 1, speaker_id=None, input_ended_at=time.monotonic() - 2.0, source="voice")
    speaker.add("One.")
    speaker.add("Two.")
    await finish(speaker)
    assert len(observed) == 1
    seconds, source = observed[0]
    assert source == "voice" and 2.0 <= seconds < 2.0 + TIMEOUT


async def test_hushed_nothing_more_is_sent_and_spoken_is_final(tts):
    session = FakeSession()
    tts.script("Hello there.", chunks=2)
    later = tts.script("How are you?", chunks=2, gated=True)
    speaker = ReplySpeaker(session, 3, speaker_id=None)
    speaker.add("Hello there.")
    speaker.add("How are you?")
    await session.wait_for(lambda log: any(e[0] == "event" and e[1]["type"] == "sentence_end" for e in log))
    speaker.hush()  # e.g. the reply is being saved cut short: what is saved must be all that was heard
    sent = list(session.log)
    later.gate.set()
    await asyncio.wait_for(later.finished.wait(), TIMEOUT)
    await asyncio.wait_for(speaker.cancel(), TIMEOUT)
    assert session.log == sent
    assert speaker.spoken == ["Hello there."]


# -- text for the ear (voice/speech_text.py) --------------------------------------------------------
async def test_the_engine_gets_the_text_for_the_ear_and_the_event_the_displayed_text(tts):
    session = FakeSession()
    speaker = ReplySpeaker(session, 7, speaker_id=None)
    shown = "**注意** 🎉：见 https://example.com 。2024年3月5日14:30开会，涨了50%。"
    speaker.add(shown)
    await finish(speaker)
    # Numbers stay digits here: the synthesis job writes them as words for the engines that need it
    # (voice.jobs.runners.tts_run; CosyVoice2 reads them itself).
    assert tts.calls == [("注意：见链接。2024年3月5日14:30开会，涨了50%。", None)]
    events = [entry[1] for entry in session.log if entry[0] == "event" and entry[1]["type"] == "sentence"]
    assert [e["text"] for e in events] == [shown]
    assert speaker.spoken == [shown]


async def test_a_sentence_with_nothing_for_the_ear_is_not_synthesised_but_counts_as_heard(tts):
    session = FakeSession()
    speaker = ReplySpeaker(session, 7, speaker_id=None)
    for text in ["Look: 👀\n", "```python\n", "print(1)\n", "```\n", "https://example.com/docs\n", "Done."]:
        speaker.add(text)
    await finish(speaker)
    # The fenced block and the emoji say nothing; a bare URL says "a link".
    assert [text for text, _ in tts.calls] == ["Look:", "a link", "Done."]
    assert speaker.heard_all
    assert speaker.spoken == ["Look: 👀\n", "https://example.com/docs\n", "Done."]  # as shown, with audio
    sentence_ids = [e[1]["sentence_id"] for e in session.log if e[0] == "event" and e[1]["type"] == "sentence"]
    assert sentence_ids == [0, 4, 5]
