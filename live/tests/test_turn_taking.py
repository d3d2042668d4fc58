"""Hands-free turn-taking: end of turn (live.turn_end), preemptive replies (live.preemptive), barge-in
that tells an interruption from a cough (live.barge_in), through a real VoiceSession.

Time is the audio's own: the VAD below counts the milliseconds of the frames it is fed (30 ms each),
so "200 ms of pause" is seven quiet frames, whatever the machine's speed. The end-of-turn model is
scripted (its verdicts are the point; the real model has its own test below). Recognition jobs are
driven by the test (partials, finals); the LLM is the fake OpenAI-compatible server; synthesis is
real-shaped job messages. The user, conversations and messages are real rows (both backends).
"""

import asyncio
import itertools
import threading

import pytest
from prometheus_client import REGISTRY

from chat.models import Message
from devtools.fake_llm import Reply, ToolCalls
from live.session import VoiceSession
from voice import jobs
from voice.jobs import messages

from .recording import Recorder, fake_synthesis

pytestmark = pytest.mark.django_db(transaction=True)

FRAME_MS = 30
SPEECH = b"\x7f\x7f" * 480  # 30 ms at 16 kHz
QUIET = b"\1\0" * 480


class FrameVAD:
    """Speech is a frame starting with 0x7f7f; counts speech and trailing quiet in milliseconds of audio."""

    min_speech_ms = 60

    def __init__(self, silence_ms):
        self.silence_ms = silence_ms
        self.reset()

    def reset(self):
        self.speech_started = self.ended = False
        self.speech_ms = self.trailing_silence_ms = 0

    def feed(self, pcm16k):
        ms = len(pcm16k) // 32
        if pcm16k[:2] == b"\x7f\x7f":
            self.speech_ms += ms
            self.trailing_silence_ms = 0
            self.speech_started = self.speech_started or self.speech_ms >= self.min_speech_ms
        elif self.speech_started:
            self.trailing_silence_ms += ms
            self.ended = self.trailing_silence_ms >= self.silence_ms


class ScriptedModel:
    """The end-of-turn model: answers the probabilities given, in order; `hold()` makes the next
    call wait until `release()` (a verdict that comes late)."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.calls: list[int] = []  # bytes of audio heard per call
        self._gate = threading.Event()
        self._gate.set()

    def hold(self):
        self._gate.clear()

    def release(self):
        self._gate.set()

    def probability(self, pcm16k):
        self._gate.wait(20)
        self.calls.append(len(pcm16k))
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Client(Recorder):
    async def until_event(self, kind, count=1, **fields):
        def seen(log):
            found = [e for e in self.events(kind) if all(e.get(k) == v for k, v in fields.items())]
            return len(found) >= count

        await self.wait_until(seen)
        return self.events()

    def frames(self):
        return [entry[1] for entry in self.log if entry[0] == "audio"]


class FakeASR:
    """Recognition jobs driven by the test: `partial(text)` and `final(text)` on the open job."""

    def __init__(self):
        self.ids = itertools.count(1)
        self.queues: dict[str, asyncio.Queue] = {}
        self.ended: list[str] = []
        self.last: str | None = None

    async def asr_start(self, *, reply_to, phrases=None, trace_id=None, language=None):
        job_id = self.last = f"asr{next(self.ids)}"
        self.queues[job_id] = asyncio.Queue()
        return job_id

    async def audio_put(self, job_id, pcm):
        pass

    async def audio_end(self, job_id):
        self.ended.append(job_id)

    async def job_messages(self, channel, job_id, *, may_be_quiet=None):
        queue = self.queues[job_id]
        while True:
            message = await queue.get()
            yield message
            if message["type"] == messages.ASR_FINAL:
                return

    def partial(self, text, job_id=None):
        self.queues[job_id or self.last].put_nowait({"type": messages.ASR_PARTIAL, "job_id": job_id, "text": text})

    def final(self, text, job_id=None):
        self.queues[job_id or self.last].put_nowait({"type": messages.ASR_FINAL, "job_id": job_id, "text": text})


@pytest.fixture
def asr(monkeypatch):
    fake = FakeASR()
    for name in ("asr_start", "audio_put", "audio_end", "job_messages"):
        monkeypatch.setattr(jobs, name, getattr(fake, name))
    return fake


@pytest.fixture
def tts(monkeypatch):
    """Synthesis as real-shaped job messages: one 0.1 s chunk per sentence."""
    texts: list[str] = []
    ids = itertools.count(1)

    async def synthesize(*, text, speaker_id=None, engine_name=None, language=None):
        texts.append(text)
        job_id = f"tts{next(ids)}"
        common = {"job_id": job_id, "t": 0.0, "engine": "piper", "voice": "joe", "clones": False, "sample_rate": 22050}
        yield {"type": messages.TTS_CHUNK, **common, "seq": 0, "part": 0, "pcm": b"\1\2" * 2205, "started": 0.0}
        yield {"type": messages.TTS_DONE, **common, "chunks": 1, "samples": 2205, "duration": 0.1}

    fake_synthesis(monkeypatch, synthesize)
    monkeypatch.setattr("live.preemptive.jobs.synthesize", synthesize)
    return texts


@pytest.fixture
def turn_settings(settings):
    settings.TURN_DETECTION = "smart_turn"
    settings.TURN_PAUSE_MS = 200
    settings.TURN_MAX_SILENCE_MS = 2000
    settings.SMART_TURN_THRESHOLD = 0.5
    settings.TURN_PREEMPTIVE = True
    settings.BARGE_IN_MIN_SPEECH_MS = 600
    settings.BARGE_IN_MIN_WORDS = 1
    settings.VOICE_MAX_AUDIO_RATE = 1e6  # the test feeds audio as fast as it can; time is the audio's
    return settings


def counter(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def open_session(user, client, model, **fields):
    session = VoiceSession(
        user=user, emit=client.emit, send_audio=client.send_audio, vad_factory=FrameVAD, turn_model=model
    )
    await session.dispatch({"type": "start", "protocol": 1, "mode": "handsfree", **fields})
    return session


async def speak(session, ms):
    for _ in range(ms // FRAME_MS):
        await session.audio(SPEECH)


async def pause(session, ms):
    for _ in range(ms // FRAME_MS):
        await session.audio(QUIET)


async def verdict(session):
    """The end-of-turn model's verdict on the current pause has been applied."""
    task = session.listening.judging
    assert task is not None
    await asyncio.wait_for(task, 20)


# -- end of turn ------------------------------------------------------------------------------------
async def test_a_turn_ends_at_a_pause_the_model_accepts(user, turn_settings, asr):
    client, model = Client(), ScriptedModel(0.9)
    session = await open_session(user, client, model, voice_output=False)
    try:
        before = counter("mm_turn_ends_total", reason="model")
        await speak(session, 900)
        await pause(session, 180)
        assert session.listening.judging is None  # not yet a pause
        await pause(session, 30)
        await verdict(session)
        assert asr.ended == ["asr1"] and session.state == "thinking"  # after 210 ms, far from 2 s
        assert model.calls == [32 * (900 + 210)]  # the whole utterance so far (16 kHz PCM16)
        assert counter("mm_turn_ends_total", reason="model") == before + 1
    finally:
        await session.close()


async def test_an_inner_pause_the_model_rejects_does_not_end_the_turn(user, turn_settings, asr):
    client, model = Client(), ScriptedModel(0.2, 0.8)
    session = await open_session(user, client, model, voice_output=False)
    try:
        await speak(session, 600)
        await pause(session, 600)  # a long inner pause: still below the 2 s limit
        await verdict(session)
        assert asr.ended == [] and session.listening.utterance is not None
        first = session.listening.judging
        await speak(session, 300)  # the user goes on
        await pause(session, 210)
        assert session.listening.judging is not first
        await verdict(session)
        assert asr.ended == ["asr1"] and len(model.calls) == 2
    finally:
        await session.close()


async def test_a_verdict_that_comes_after_speech_resumed_does_not_count(user, turn_settings, asr):
    client, model = Client(), ScriptedModel(0.95)
    session = await open_session(user, client, model, voice_output=False)
    try:
        await speak(session, 300)
        model.hold()
        await pause(session, 210)
        await speak(session, 60)  # speech again while the model thinks
        model.release()
        await verdict(session)
        assert asr.ended == [] and session.listening.utterance is not None
    finally:
        model.release()
        await session.close()


async def test_the_silence_limit_ends_a_turn_the_model_never_accepts(user, turn_settings, asr):
    client, model = Client(), ScriptedModel(0.1)
    session = await open_session(user, client, model, voice_output=False)
    try:
        before = counter("mm_turn_ends_total", reason="silence_limit")
        await speak(session, 300)
        await pause(session, 1980)
        await verdict(session)
        assert asr.ended == []
        await pause(session, 30)
        assert asr.ended == ["asr1"]
        assert counter("mm_turn_ends_total", reason="silence_limit") == before + 1
    finally:
        await session.close()


async def test_the_silence_rule_alone_when_the_model_is_turned_off(user, turn_settings, asr):
    turn_settings.TURN_DETECTION = "silence"
    turn_settings.VAD_SILENCE_MS = 700
    client, model = Client(), ScriptedModel(0.99)
    session = await open_session(user, client, model, voice_output=False)
    try:
        await speak(session, 300)
        await pause(session, 660)
        assert asr.ended == [] and session.listening.judging is None and model.calls == []
        await pause(session, 60)
        assert asr.ended == ["asr1"]
    finally:
        await session.close()


# -- preemptive replies ------------------------------------------------------------------------------
# The reply is prepared from the recogniser's FINAL transcript of the audio before the pause: at the
# pause the utterance's job is ended (split), so its final comes then. Vosk's partial lags the audio
# and differs from its final (the hands-free benchmark: not one prepared reply matched when it was
# prepared from the partial), so the partials below lag on purpose.
async def prepared_at_pause(session, asr, fake_llm, final, *, text=None, requests=1):
    """The pause split the job: its `final` comes, and the session prepares the reply to the
    utterance's transcript so far (`text`: the finals joined; default `final`)."""
    job = asr.last
    assert asr.ended[-1:] == [job]  # the job was ended at the pause ...
    asr.final(final, job)  # ... so the recogniser gives its final for the audio so far
    assert await asyncio.to_thread(fake_llm.wait_for_requests, requests)
    prepared = session._prepared
    assert prepared is not None and prepared.text == (text or final)
    return prepared


async def test_a_preemptive_reply_is_used_when_the_transcript_matches(user, turn_settings, asr, fake_llm, tts):
    fake_llm.queue(Reply("Sure. Here it is."), Reply("Title"))
    client, model = Client(), ScriptedModel(0.9)
    session = await open_session(user, client, model, voice_output=True)
    try:
        used = counter("mm_preemptive_generations_total", outcome="used")
        await speak(session, 600)
        asr.partial("tell me a")  # the partial lags the audio: the last word is not in it yet
        await client.until_event("partial")
        model.hold()  # the model answers after the recogniser
        await pause(session, 210)
        prepared = await prepared_at_pause(session, asr, fake_llm, "tell me a story")
        await asyncio.wait_for(prepared._task, 20)  # the LLM has answered, all of it buffered
        assert tts == ["Sure."]  # the first piece synthesised ahead
        # Nothing of it was sent or saved before the turn ended.
        assert {e["type"] for e in client.events()} <= {"ready", "state", "partial"}
        assert await Message.objects.acount() == 0
        model.release()
        await verdict(session)  # the turn ends: its transcript is that final, no other job was opened
        await client.until_event("audio_done")
        assert asr.ended == ["asr1"] and len(asr.queues) == 1
        assert [e["text"] for e in client.events("final")] == ["tell me a story"]
        assert [r.get("stream") for r in fake_llm.requests].count(True) == 1  # one reply request (and the title)
        assert fake_llm.requests[0]["messages"][-1]["content"] == "tell me a story"
        assert tts == ["Sure.", "Here it is."]  # the first piece was not synthesised twice
        assert [e["text"] for e in client.events("sentence")] == ["Sure.", "Here it is."]
        reply = await Message.objects.aget(role="assistant")
        assert reply.content == "Sure. Here it is." and not reply.interrupted
        assert counter("mm_preemptive_generations_total", outcome="used") == used + 1
    finally:
        model.release()
        await session.close()


async def test_with_the_silence_rule_the_prepared_reply_is_used_when_the_silence_ends_the_turn(
    user, turn_settings, asr, fake_llm, tts
):
    """The benchmark's case: the partial 200 ms into the pause lags the final; the reply prepared
    at the pause is the turn's when the 700 ms silence ends it (one LLM request, not two)."""
    turn_settings.TURN_DETECTION = "silence"
    turn_settings.VAD_SILENCE_MS = 700
    fake_llm.queue(Reply("A table for two, done."), Reply("Title"))
    client, model = Client(), ScriptedModel(0.99)
    session = await open_session(user, client, model, voice_output=False)
    try:
        await speak(session, 900)
        asr.partial("I would like to book a")
        await client.until_event("partial")
        await pause(session, 210)
        await prepared_at_pause(session, asr, fake_llm, "I would like to book a table")
        assert {e["type"] for e in client.events()} <= {"ready", "state", "partial"}
        await pause(session, 510)  # 720 ms of quiet: the silence rule ends the turn
        await client.until_event("reply_done")
        assert [e["text"] for e in client.events("final")] == ["I would like to book a table"]
        assert [r.get("stream") for r in fake_llm.requests].count(True) == 1
        assert "".join(e["text"] for e in client.events("delta")) == "A table for two, done."
        assert asr.ended == ["asr1"] and len(asr.queues) == 1  # the quiet after the split went to no job
    finally:
        await session.close()


async def test_speech_after_the_split_is_recognised_by_a_new_job_and_the_finals_joined(
    user, turn_settings, asr, fake_llm, tts
):
    """The user goes on after the pause: the prepared reply is dropped, the rest of the utterance
    (with a short pre-roll) goes to a new job, and the turn's transcript is both finals."""
    turn_settings.TURN_DETECTION = "silence"
    turn_settings.VAD_SILENCE_MS = 700
    fake_llm.queue(Reply("Half an answer.", pause_after=2), Reply("The real answer."), Reply("T"))
    client, model = Client(), ScriptedModel(0.99)
    session = await open_session(user, client, model, voice_output=False)
    try:
        discarded = counter("mm_preemptive_generations_total", outcome="discarded")
        await speak(session, 600)
        asr.partial("I would")
        await client.until_event("partial")
        await pause(session, 210)
        await prepared_at_pause(session, asr, fake_llm, "I would like")
        await pause(session, 90)  # quiet after the split: held, sent to no job
        assert len(asr.queues) == 1
        await speak(session, 300)  # the user goes on
        assert session._prepared is None
        assert counter("mm_preemptive_generations_total", outcome="discarded") == discarded + 1
        assert len(asr.queues) == 2 and asr.last == "asr2"
        asr.partial("some", "asr2")
        await client.until_event("partial", text="I would like some")  # shown with what came before
        await pause(session, 210)  # a second pause: a second split, a second preparation
        fake_llm.release()
        await prepared_at_pause(session, asr, fake_llm, "some tea", text="I would like some tea", requests=2)
        await pause(session, 510)
        await client.until_event("reply_done")
        assert asr.ended == ["asr1", "asr2"]
        assert [e["text"] for e in client.events("final")] == ["I would like some tea"]
        assert [r.get("stream") for r in fake_llm.requests].count(True) == 2  # the discarded one, the used one
        assert "".join(e["text"] for e in client.events("delta")) == "The real answer."
        assert "Half" not in str(client.events())
        assert [m async for m in Message.objects.order_by("id").values_list("content", flat=True)] == [
            "I would like some tea",
            "The real answer.",
        ]
    finally:
        fake_llm.release()
        await session.close()


async def test_no_split_without_preemptive_replies(user, turn_settings, asr, fake_llm, tts):
    """Preemptive off: one job per utterance, ended only when the turn ends, as before."""
    turn_settings.TURN_PREEMPTIVE = False
    turn_settings.TURN_DETECTION = "silence"
    turn_settings.VAD_SILENCE_MS = 700
    fake_llm.queue(Reply("Fine."), Reply("T"))
    client, model = Client(), ScriptedModel(0.99)
    session = await open_session(user, client, model, voice_output=False)
    try:
        await speak(session, 600)
        asr.partial("hello there")
        await client.until_event("partial")
        await pause(session, 660)
        assert asr.ended == [] and session._prepared is None
        await pause(session, 60)
        assert asr.ended == ["asr1"]
        asr.final("hello there")
        await client.until_event("reply_done")
        assert [e["text"] for e in client.events("final")] == ["hello there"]
    finally:
        await session.close()


async def test_a_preemptive_reply_in_a_new_conversation_has_the_persona_and_is_used(
    user, turn_settings, asr, fake_llm, tts
):
    """The prepared request is the turn's own: the user's persona (and memories) included, so the
    turn takes it instead of asking the LLM again."""
    from memory.models import MemoryProfile

    await MemoryProfile.objects.acreate(user=user, persona_name="小白")
    fake_llm.queue(Reply("好的，我来讲。"), Reply("Title"))
    client, model = Client(), ScriptedModel(0.9)
    session = await open_session(user, client, model, voice_output=False)
    try:
        used = counter("mm_preemptive_generations_total", outcome="used")
        await speak(session, 600)
        asr.partial("给我讲")
        await client.until_event("partial")
        model.hold()
        await pause(session, 210)
        prepared = await prepared_at_pause(session, asr, fake_llm, "给我讲个故事")
        await asyncio.wait_for(prepared._task, 20)
        assert "你的名字：小白。" in fake_llm.requests[0]["messages"][0]["content"]
        model.release()
        await verdict(session)
        await client.until_event("reply_done")
        assert [r.get("stream") for r in fake_llm.requests].count(True) == 1
        assert "".join(e["text"] for e in client.events("delta")) == "好的，我来讲。"
        assert counter("mm_preemptive_generations_total", outcome="used") == used + 1
    finally:
        model.release()
        await session.close()


async def test_a_preemptive_reply_is_dropped_when_the_user_goes_on(user, turn_settings, asr, fake_llm, tts):
    fake_llm.queue(Reply("An answer to half a question.", pause_after=2), Reply("The real answer."), Reply("T"))
    client, model = Client(), ScriptedModel(0.1, 0.9)
    session = await open_session(user, client, model, voice_output=True)
    try:
        discarded = counter("mm_preemptive_generations_total", outcome="discarded")
        await speak(session, 600)
        asr.partial("I would like")
        await client.until_event("partial")
        await pause(session, 210)
        await prepared_at_pause(session, asr, fake_llm, "I would like")
        await verdict(session)  # the model says "not finished"
        await speak(session, 300)  # and the user goes on
        assert session._prepared is None
        assert counter("mm_preemptive_generations_total", outcome="discarded") == discarded + 1
        fake_llm.release()
        asr.partial("some")
        await client.until_event("partial", text="I would like some")
        model.hold()
        await pause(session, 210)
        await prepared_at_pause(session, asr, fake_llm, "some tea", text="I would like some tea", requests=2)
        model.release()
        await verdict(session)
        await client.until_event("audio_done")
        assert [r.get("stream") for r in fake_llm.requests].count(True) == 2  # the discarded one, the used one
        deltas = "".join(e["text"] for e in client.events("delta"))
        assert deltas == "The real answer." and "half" not in str(client.events())
        assert [m async for m in Message.objects.order_by("id").values_list("content", flat=True)] == [
            "I would like some tea",
            "The real answer.",
        ]
    finally:
        model.release()
        fake_llm.release()
        await session.close()


async def test_a_preemptive_tool_call_runs_only_in_the_confirmed_turn(user, turn_settings, asr, fake_llm, tts):
    """A prepared reply that calls a tool only buffers the call: the tool acts once the turn is
    confirmed, then the continuation is asked for as in any turn."""
    from reminders.models import Reminder

    fake_llm.queue(ToolCalls([("set_reminder", {"text": "关火", "in_minutes": 10})]), Reply("好的。"), Reply("T"))
    client, model = Client(), ScriptedModel(0.9)
    session = await open_session(user, client, model, voice_output=True)
    try:
        await speak(session, 600)
        asr.partial("十分钟后提醒我")
        await client.until_event("partial")
        model.hold()
        await pause(session, 210)
        prepared = await prepared_at_pause(session, asr, fake_llm, "十分钟后提醒我关火")
        await asyncio.wait_for(prepared._task, 20)  # the call is buffered ...
        assert await Reminder.objects.acount() == 0  # ... and has not acted
        assert not client.events("tool_call")
        model.release()
        await verdict(session)
        await client.until_event("audio_done")
        assert [e["name"] for e in client.events("tool_result")] == ["set_reminder"]
        assert await Reminder.objects.filter(owner=user, text="关火").acount() == 1
        streamed = [r for r in fake_llm.requests if r.get("stream")]
        assert len(streamed) == 2 and streamed[1]["messages"][-1]["role"] == "tool"  # prepared, continuation
        assert [e["text"] for e in client.events("sentence")] == ["好的。"]
    finally:
        model.release()
        await session.close()


async def test_a_discarded_preemptive_tool_call_never_acts(user, turn_settings, asr, fake_llm, tts):
    from reminders.models import Reminder

    fake_llm.queue(ToolCalls([("set_reminder", {"text": "关火", "in_minutes": 10})]), Reply("The real answer."))
    client, model = Client(), ScriptedModel(0.1, 0.9)
    session = await open_session(user, client, model, voice_output=False)
    try:
        await speak(session, 600)
        asr.partial("remind")
        await client.until_event("partial")
        await pause(session, 210)
        prepared = await prepared_at_pause(session, asr, fake_llm, "remind me")
        await asyncio.wait_for(prepared._task, 20)
        await verdict(session)  # not finished
        await speak(session, 300)  # the user goes on: the prepared call is dropped
        assert session._prepared is None
        asr.partial("of nothing, tell me a joke")
        await client.until_event("partial", count=2)
        model.hold()
        await pause(session, 210)
        text = "remind me of nothing, tell me a joke"
        await prepared_at_pause(session, asr, fake_llm, "of nothing, tell me a joke", text=text, requests=2)
        model.release()
        await verdict(session)
        await client.until_event("reply_done")
        assert await Reminder.objects.acount() == 0 and not client.events("tool_result")
        assert "".join(e["text"] for e in client.events("delta")) == "The real answer."
    finally:
        model.release()
        await session.close()


async def test_a_preemptive_reply_whose_request_is_not_the_turns_is_not_used(user, turn_settings, asr, fake_llm, tts):
    """Same transcript, other messages (the persona changed between the pause and the turn): the
    prepared reply is dropped and the turn asks the LLM with its own request."""
    from memory.models import MemoryProfile

    fake_llm.queue(Reply("Stale one."), Reply("Fresh one."), Reply("T"))
    client, model = Client(), ScriptedModel(0.9)
    session = await open_session(user, client, model, voice_output=False)
    try:
        discarded = counter("mm_preemptive_generations_total", outcome="discarded")
        await speak(session, 600)
        asr.partial("what is the")
        await client.until_event("partial")
        model.hold()
        await pause(session, 210)
        prepared = await prepared_at_pause(session, asr, fake_llm, "what is the weather")
        await asyncio.wait_for(prepared._task, 20)
        await MemoryProfile.objects.acreate(user=user, persona_name="Robin")
        model.release()
        await verdict(session)
        await client.until_event("reply_done")
        assert "".join(e["text"] for e in client.events("delta")) == "Fresh one."
        streamed = [r for r in fake_llm.requests if r.get("stream")]
        assert len(streamed) == 2 and streamed[1]["messages"][-1]["content"] == "what is the weather"
        assert "Robin" in streamed[1]["messages"][0]["content"] and "Robin" not in streamed[0]["messages"][0]["content"]
        assert counter("mm_preemptive_generations_total", outcome="discarded") == discarded + 1
    finally:
        model.release()
        await session.close()


async def test_a_turn_that_starts_before_the_prepared_request_is_known_waits_for_it(
    user, turn_settings, asr, fake_llm, tts, monkeypatch
):
    """The model says yes the moment the transcript so far comes: the turn asks for its LLM stream
    while the prepared reply is still reading its messages. It waits for them (the same request:
    used), instead of dropping the prepared reply and asking the LLM a second time."""
    from live import preemptive

    gate = asyncio.Event()  # the prepared reply's read of its messages waits for the turn
    read = preemptive.db_call

    async def held_read(*args, **kwargs):  # waits here, not in the database thread the turn needs too
        await gate.wait()
        return await read(*args, **kwargs)

    monkeypatch.setattr(preemptive, "db_call", held_read)
    asked_before_known = []
    stream_for = preemptive.PreparedReply.stream_for

    def turn_asks(self, messages, tools=None):
        asked_before_known.append(not self._request_known.is_set())
        stream = stream_for(self, messages, tools)
        gate.set()
        return stream

    monkeypatch.setattr(preemptive.PreparedReply, "stream_for", turn_asks)
    fake_llm.queue(Reply("Right away."), Reply("T"))
    client, model = Client(), ScriptedModel(0.9)
    session = await open_session(user, client, model, voice_output=False)
    try:
        used = counter("mm_preemptive_generations_total", outcome="used")
        await speak(session, 600)
        asr.partial("hello")
        await client.until_event("partial")
        model.hold()
        await pause(session, 210)
        asr.final("hello there", "asr1")
        await client.until_event("partial", text="hello there")
        assert session._prepared is not None and session._prepared.messages is None
        model.release()
        await verdict(session)
        await client.until_event("reply_done")
        assert asked_before_known == [True]
        assert [r.get("stream") for r in fake_llm.requests].count(True) == 1
        assert "".join(e["text"] for e in client.events("delta")) == "Right away."
        assert counter("mm_preemptive_generations_total", outcome="used") == used + 1
    finally:
        gate.set()
        model.release()
        await session.close()


# -- barge-in ------------------------------------------------------------------------------------------
async def playing_reply(session, client, fake_llm):
    """A typed turn whose first sentence has played; the LLM holds the rest until released."""
    fake_llm.queue(Reply("First sentence here. Second sentence after.", pause_after=4), Reply("T"))
    await session.dispatch({"type": "text", "text": "Talk to me"})
    await client.until_event("sentence_end", sentence_id=0)


async def test_a_cough_during_a_reply_pauses_and_resumes_it(user, turn_settings, asr, fake_llm, tts):
    client, model = Client(), ScriptedModel(0.9)
    session = await open_session(user, client, model, voice_output=True)
    try:
        await playing_reply(session, client, fake_llm)
        await speak(session, 120)  # a cough: speech, short
        assert client.events("reply_paused") == [{"type": "reply_paused", "turn_id": 1}]
        assert client.events("interrupted") == []
        fake_llm.release()  # the rest of the reply arrives and is synthesised, not played
        await client.until_event("reply_done")
        assert [e["text"] for e in client.events("sentence")] == ["First sentence here."]
        await pause(session, 210)
        await verdict(session)
        asr.final("")  # no words
        await client.until_event("audio_done")
        events = client.events()
        kinds = [e["type"] for e in events]
        assert kinds.index("reply_resumed") < kinds.index("audio_done")
        assert [e["text"] for e in client.events("sentence")] == ["First sentence here.", "Second sentence after."]
        assert client.events("interrupted") == []
        reply = await Message.objects.aget(role="assistant")
        assert reply.content == "First sentence here. Second sentence after." and not reply.interrupted
    finally:
        fake_llm.release()
        await session.close()


async def test_words_during_a_reply_interrupt_it(user, turn_settings, asr, fake_llm, tts):
    client, model = Client(), ScriptedModel(0.9)
    session = await open_session(user, client, model, voice_output=True)
    try:
        await playing_reply(session, client, fake_llm)
        await speak(session, 120)
        asr.partial("sentence here")  # the reply's own words: its echo, no interruption
        asr.partial("wait stop")
        await client.until_event("interrupted")
        kinds = [e["type"] for e in client.events()]
        assert kinds.index("reply_paused") < kinds.index("interrupted")
        assert kinds.count("partial") == 2 and kinds.index("interrupted") > kinds.index("partial")
        reply = await Message.objects.aget(role="assistant")
        assert reply.interrupted and reply.content == "First sentence here."
    finally:
        fake_llm.release()
        await session.close()


async def test_the_replys_own_echo_does_not_interrupt_it(user, turn_settings, asr, fake_llm, tts):
    client, model = Client(), ScriptedModel(0.9)
    session = await open_session(user, client, model, voice_output=True)
    try:
        await playing_reply(session, client, fake_llm)
        await speak(session, 120)
        asr.partial("first sentence")
        await client.until_event("partial")
        assert client.events("interrupted") == [] and session.turn_running
    finally:
        fake_llm.release()
        await session.close()


async def test_long_speech_during_a_reply_interrupts_it(user, turn_settings, asr, fake_llm, tts):
    client, model = Client(), ScriptedModel(0.9)
    session = await open_session(user, client, model, voice_output=True)
    try:
        await playing_reply(session, client, fake_llm)
        before = counter("mm_barge_ins_total", outcome="interrupted")
        await speak(session, 570)
        assert client.events("interrupted") == []
        await speak(session, 30)  # 600 ms of speech
        assert client.events("interrupted")[0]["turn_id"] == 1
        assert counter("mm_barge_ins_total", outcome="interrupted") == before + 1
    finally:
        fake_llm.release()
        await session.close()


async def test_barge_in_without_a_pause_when_turned_off(user, turn_settings, asr, fake_llm, tts):
    turn_settings.BARGE_IN_MIN_SPEECH_MS = 0
    client, model = Client(), ScriptedModel(0.9)
    session = await open_session(user, client, model, voice_output=True)
    try:
        await playing_reply(session, client, fake_llm)
        await speak(session, 60)
        assert client.events("reply_paused") == [] and client.events("interrupted")[0]["turn_id"] == 1
    finally:
        fake_llm.release()
        await session.close()
