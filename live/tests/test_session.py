"""live.session on its own: VoiceSession driven through dispatch(), without a WebSocket.

Events and audio frames are collected in lists; the user and their conversations are real rows,
and the LLM is the fake OpenAI-compatible server (devtools/fake_llm.py, the `fake_llm` fixture).
"""

import asyncio
import itertools

import pytest

from chat.models import Conversation, Message
from devtools.fake_llm import Reply
from live.protocol import FRAME_HEADER_DESCRIPTION, Limits, SessionError
from live.session import VoiceSession
from magicmirror.errors import ApplicationError
from speakers.models import Speaker, UserSettings
from voice import jobs
from voice.jobs import messages

from .recording import Recorder, fake_synthesis

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 20


class Client(Recorder):
    """The other end of the session: what it was sent, in order, and a way to wait for it."""

    def frames(self):
        return [entry[1] for entry in self.log if entry[0] == "audio"]

    async def until(self, predicate, timeout=TIMEOUT):
        await self.wait_until(lambda log: predicate(self.events()), timeout)
        return self.events()

    async def until_event(self, kind, count=1, **fields):
        def seen(events):
            matching = [e for e in events if e["type"] == kind and all(e.get(k) == v for k, v in fields.items())]
            return len(matching) >= count

        return await self.until(seen)

    async def until_idle_after(self, kind):
        """Until `kind` has been sent and then the state went back to idle."""

        def done(events):
            kinds = [e["type"] for e in events]
            if kind not in kinds:
                return False
            return {"type": "state", "state": "idle"} in events[kinds.index(kind) :]

        return await self.until(done)


@pytest.fixture
def client():
    return Client()


@pytest.fixture
async def voice(user, client):
    session = VoiceSession(user=user, emit=client.emit, send_audio=client.send_audio)
    yield session
    await asyncio.wait_for(session.close(), TIMEOUT)


async def start(session, client, **fields):
    await session.dispatch({"type": "start", "protocol": 1, **fields})
    ready = client.events()[-1]
    assert ready["type"] == "ready"
    return ready


@pytest.fixture
def fake_tts(monkeypatch):
    """Synthesis as real-shaped job messages, without an engine: one 0.1 s chunk per sentence."""
    texts: list[str] = []
    ids = itertools.count(1)

    async def synthesize(*, text, speaker_id=None, engine_name=None, language=None):
        texts.append(text)
        job_id = f"tts{next(ids)}"
        pcm = b"\x01\x02" * 2205
        yield {
            "type": messages.TTS_CHUNK,
            "job_id": job_id,
            "t": 0.0,
            "seq": 0,
            "part": 0,
            "produced": 0.0,
            "pcm": pcm,
            "sample_rate": 22050,
            "engine": "piper",
            "voice": "en_US-joe-medium",
            "clones": False,
            "started": 0.0,
        }
        yield {
            "type": messages.TTS_DONE,
            "job_id": job_id,
            "t": 0.0,
            "chunks": 1,
            "samples": 2205,
            "duration": 0.1,
            "engine": "piper",
            "voice": "en_US-joe-medium",
            "clones": False,
            "sample_rate": 22050,
        }

    fake_synthesis(monkeypatch, synthesize)
    return texts


@pytest.fixture
async def fake_asr(monkeypatch):
    """Recognition jobs that take audio and never answer (audio handling is the point)."""
    fed: dict[str, list[bytes]] = {}
    ended: list[str] = []
    ids = itertools.count(1)
    listeners: list[asyncio.Task] = []

    async def asr_start(*, reply_to, phrases=None, trace_id=None, language=None):
        job_id = f"asr{next(ids)}"
        fed[job_id] = []
        return job_id

    async def audio_put(job_id, pcm):
        fed[job_id].append(pcm)

    async def audio_end(job_id):
        ended.append(job_id)

    async def job_messages(channel, job_id, *, may_be_quiet=None):
        listeners.append(asyncio.current_task())
        await asyncio.Event().wait()
        yield {}

    for name, fake in [
        ("asr_start", asr_start),
        ("audio_put", audio_put),
        ("audio_end", audio_end),
        ("job_messages", job_messages),
    ]:
        monkeypatch.setattr(jobs, name, fake)
    yield fed, ended
    for task in listeners:
        task.cancel()
    await asyncio.gather(*listeners, return_exceptions=True)


# -- dispatch -----------------------------------------------------------------------------------------
async def test_ping_is_answered_before_and_after_start(voice, client):
    await voice.dispatch({"type": "ping", "id": 7})
    await voice.dispatch({"type": "ping"})
    assert client.events() == [{"type": "pong", "id": 7}, {"type": "pong", "id": None}]
    await start(voice, client)
    await voice.dispatch({"type": "ping", "id": "abc"})
    assert client.events()[-1] == {"type": "pong", "id": "abc"}


@pytest.mark.parametrize(
    "message",
    [
        {"type": "configure", "mode": "ptt"},
        {"type": "text", "text": "hi"},
        {"type": "audio_end"},
        {"type": "interrupt"},
        {"type": "dance"},
    ],
)
async def test_everything_but_ping_and_start_needs_start(voice, client, message):
    with pytest.raises(SessionError) as caught:
        await voice.dispatch(message)
    assert caught.value.code == "not_started"
    assert client.events() == [] and not voice.started


async def test_audio_before_start_and_oversized_frames(voice, settings):
    with pytest.raises(SessionError) as caught:
        await voice.audio(b"\0\0" * 10)
    assert caught.value.code == "not_started"
    with pytest.raises(SessionError) as caught:
        await voice.audio(b"\0" * (settings.VOICE_WS_MAX_FRAME_BYTES + 2))
    assert caught.value.code == "frame_too_large"  # checked first: never even looked at


async def test_start_answers_ready_with_the_users_defaults(voice, client, settings):
    ready = await start(voice, client)
    assert voice.started
    assert ready == {
        "type": "ready",
        "protocol": 1,
        "conversation": None,
        "speaker": None,
        "mode": "ptt",
        "voice_output": True,
        "input": {"format": "pcm_s16le", "sample_rate": 16000, "channels": 1},
        "output": {"format": "pcm_s16le", "sample_rate": None, "channels": 1, "frame_header": FRAME_HEADER_DESCRIPTION},
        "engines": {"asr": settings.VOICE_ASR_ENGINE, "tts": list(settings.VOICE_TTS_ENGINES)},
        "spoken_language": "zh",  # "I speak" unset: the site's language
        "limits": Limits().as_dict(),
    }


async def test_start_with_the_users_settings_and_every_field(voice, client, user):
    speaker = await Speaker.objects.acreate(owner=user, slot=1, name="Grandma", prompt_text="你好", audio="a.wav")
    other = await Speaker.objects.acreate(owner=user, slot=2, name="Grandpa", prompt_text="你好", audio="b.wav")
    await UserSettings.objects.acreate(user=user, input_mode="handsfree", voice_output=False, current_speaker=speaker)
    conversation = await Conversation.objects.acreate(owner=user, title="Ours")
    ready = await start(voice, client)
    assert (ready["mode"], ready["voice_output"], ready["speaker"]) == (
        "handsfree",
        False,
        {"id": speaker.pk, "name": "Grandma"},
    )
    ready = await start(
        voice,
        client,
        conversation_id=conversation.pk,
        speaker_id=other.pk,
        mode="ptt",
        voice_output=True,
        sample_rate=48000,
        phrases=["你好"],
    )
    assert ready["conversation"] == {"id": conversation.pk, "title": "Ours"}
    assert ready["speaker"] == {"id": other.pk, "name": "Grandpa"}
    assert (ready["mode"], ready["voice_output"], ready["input"]["sample_rate"]) == ("ptt", True, 48000)
    assert voice.phrases == ["你好"] and voice.conversation_id == conversation.pk


async def test_configure_changes_only_what_was_sent(voice, client):
    await start(voice, client, mode="handsfree", voice_output=False, phrases=["네"])
    await voice.dispatch({"type": "configure", "sample_rate": 24000})
    ready = client.events()[-1]
    assert ready["type"] == "ready"
    assert (ready["mode"], ready["voice_output"], ready["input"]["sample_rate"]) == ("handsfree", False, 24000)
    assert voice.phrases == ["네"]
    await voice.dispatch({"type": "configure", "phrases": [], "voice_output": True})
    assert voice.phrases is None and client.events()[-1]["voice_output"] is True


async def test_unknown_type_after_start(voice, client):
    await start(voice, client)
    with pytest.raises(SessionError) as caught:
        await voice.dispatch({"type": "dance"})
    assert caught.value.code == "unknown_type" and "'dance'" in caught.value.message


async def test_interrupt_with_nothing_running(voice, client):
    await start(voice, client)
    await voice.dispatch({"type": "interrupt"})
    assert client.events()[-1] == {"type": "interrupted", "turn_id": None, "message_id": None}
    assert voice.state == "idle"


async def test_audio_end_with_no_utterance_does_nothing(voice, client):
    await start(voice, client)
    sent = list(client.log)
    await voice.dispatch({"type": "audio_end"})
    assert client.log == sent


@pytest.mark.parametrize(
    ("text", "code"),
    [
        pytest.param("   ", "invalid_message", id="blank"),
        pytest.param(None, "invalid_message", id="not_text"),
        pytest.param("x" * 5000, "message_too_long", id="too_long"),
    ],
)
async def test_bad_typed_messages(voice, client, fake_llm, text, code):
    await start(voice, client)
    with pytest.raises(ApplicationError) as caught:
        await voice.dispatch({"type": "text", "text": text})
    assert caught.value.code == code
    assert not voice.turn_running and fake_llm.request_count == 0


# -- configure refused: nothing applied ------------------------------------------------------------
async def test_configure_with_another_users_conversation(voice, client, other_user):
    theirs = await Conversation.objects.acreate(owner=other_user, title="private")
    await start(voice, client, mode="ptt", voice_output=False)
    sent = list(client.log)
    with pytest.raises(ApplicationError) as caught:
        await voice.dispatch(
            {"type": "configure", "conversation_id": theirs.pk, "mode": "handsfree", "voice_output": True}
        )
    assert caught.value.code == "conversation_not_found"
    assert (voice.conversation_id, voice.mode, voice.voice_output) == (None, "ptt", False)
    assert client.log == sent  # no ready either


async def test_configure_with_another_users_speaker(voice, client, other_user):
    theirs = await Speaker.objects.acreate(owner=other_user, slot=1, name="Impostor", prompt_text="hi", audio="b.wav")
    await start(voice, client, mode="ptt")
    with pytest.raises(ApplicationError) as caught:
        await voice.dispatch({"type": "configure", "speaker_id": theirs.pk, "mode": "handsfree"})
    assert caught.value.code == "speaker_not_found"
    assert (voice.speaker_id, voice.mode) == (None, "ptt")


async def test_start_with_another_users_conversation_does_not_start(voice, client, other_user):
    theirs = await Conversation.objects.acreate(owner=other_user, title="private")
    with pytest.raises(ApplicationError) as caught:
        await voice.dispatch({"type": "start", "protocol": 1, "conversation_id": theirs.pk})
    assert caught.value.code == "conversation_not_found"
    assert not voice.started and client.events() == []


async def test_an_invalid_configure_applies_nothing(voice, client):
    await start(voice, client, mode="ptt")
    with pytest.raises(SessionError) as caught:
        await voice.dispatch({"type": "configure", "mode": "handsfree", "sample_rate": "48000"})
    assert caught.value.code == "invalid_config"
    assert voice.mode == "ptt" and voice.listening.sample_rate == 16000


# -- turns ----------------------------------------------------------------------------------------
async def test_a_typed_turn_end_to_end(voice, client, user, fake_llm):
    fake_llm.queue(Reply("Hello there. Nice to meet you."), Reply("Greeting"))
    await start(voice, client, voice_output=False)
    await voice.dispatch({"type": "text", "text": "  Say hello  "})
    events = await client.until_idle_after("reply_done")
    turn_events = events[1:]  # after ready
    kinds = [e["type"] for e in turn_events]
    assert kinds[:3] == ["state", "conversation", "turn"] and turn_events[0]["state"] == "thinking"
    assert kinds[-3:] == ["reply_done", "title", "state"] and turn_events[-1]["state"] == "idle"
    assert set(kinds[3:-3]) == {"delta"}
    assert "".join(e["text"] for e in turn_events if e["type"] == "delta") == "Hello there. Nice to meet you."
    conversation = await Conversation.objects.aget(owner=user)
    assert turn_events[1] == {"type": "conversation", "turn_id": 1, "id": conversation.pk, "title": "Say hello"}
    assert turn_events[-2] == {"type": "title", "conversation_id": conversation.pk, "title": "Greeting"}
    question = await Message.objects.aget(pk=turn_events[2]["user_message_id"])
    assert (question.role, question.content, question.source) == ("user", "Say hello", "text")
    reply = await Message.objects.aget(pk=turn_events[-3]["message_id"])
    assert (reply.role, reply.content, reply.interrupted) == ("assistant", "Hello there. Nice to meet you.", False)
    assert fake_llm.requests[0]["messages"][-1] == {"role": "user", "content": "Say hello"}
    assert not voice.turn_running and client.frames() == []

    # The next turn continues the same conversation.
    fake_llm.queue(Reply("Again."))
    await voice.dispatch({"type": "text", "text": "Once more"})
    await client.until_event("reply_done", turn_id=2)
    assert client.events("conversation")[-1]["id"] == conversation.pk
    assert await Message.objects.filter(conversation=conversation).acount() == 4


async def test_a_spoken_reply_goes_out_as_sentences_and_frames(voice, client, fake_llm, fake_tts):
    fake_llm.queue(Reply("Hello there. Nice to meet you."))
    await start(voice, client, voice_output=True)
    await voice.dispatch({"type": "text", "text": "Say hello"})
    events = await client.until_idle_after("audio_done")
    assert fake_tts == ["Hello there.", "Nice to meet you."]
    assert [e["text"] for e in events if e["type"] == "sentence"] == fake_tts
    assert client.frames() == [(1, 0, 0), (1, 1, 0)]
    states = [e["state"] for e in events if e["type"] == "state"]
    assert states == ["thinking", "speaking", "idle"]
    assert events.index(client.events("reply_done")[0]) < events.index(client.events("audio_done")[0])


async def test_interrupt_while_the_reply_streams(voice, client, fake_llm):
    fake_llm.queue(Reply("First part here. Second part never.", pause_after=3))
    await start(voice, client, voice_output=False)
    await voice.dispatch({"type": "text", "text": "Talk"})
    await client.until_event("delta", count=3)  # then the LLM pauses
    try:
        await asyncio.wait_for(voice.dispatch({"type": "interrupt"}), TIMEOUT)
    finally:
        fake_llm.release()
    events = client.events()
    ack = client.events("interrupted")[0]
    position = events.index(ack)
    turn_positions = [i for i, e in enumerate(events) if e.get("turn_id") == 1 and e is not ack]
    assert turn_positions and max(turn_positions) < position  # nothing of the turn after the ack
    assert events[position + 1 :] == [{"type": "state", "state": "idle"}]
    assert ack["turn_id"] == 1 and not voice.turn_running
    reply = await Message.objects.aget(role="assistant")
    assert ack["message_id"] == reply.pk
    assert reply.interrupted and reply.content == "First part here. "  # what was shown


async def test_interrupt_while_speaking_saves_what_was_heard(voice, client, fake_llm, fake_tts):
    fake_llm.queue(Reply("First part here. Second part never.", pause_after=3))
    await start(voice, client, voice_output=True)
    await voice.dispatch({"type": "text", "text": "Talk"})
    await client.until_event("sentence_end")
    try:
        await asyncio.wait_for(voice.dispatch({"type": "interrupt"}), TIMEOUT)
    finally:
        fake_llm.release()
    ack = client.events()[-2]
    assert ack["type"] == "interrupted" and client.events()[-1] == {"type": "state", "state": "idle"}
    reply = await Message.objects.aget(pk=ack["message_id"])
    assert reply.interrupted and reply.content == "First part here."
    assert client.frames() == [(1, 0, 0)]


async def test_new_input_replaces_the_running_reply(voice, client, fake_llm):
    fake_llm.queue(Reply("Slow answer. More.", pause_after=2), Reply("Quick answer."))
    await start(voice, client, voice_output=False)
    await voice.dispatch({"type": "text", "text": "First"})
    await client.until_event("delta", count=2)
    try:
        await voice.dispatch({"type": "text", "text": "Second"})
    finally:
        fake_llm.release()
    await client.until_event("reply_done", turn_id=2)
    events = client.events()
    ack = client.events("interrupted")[0]
    assert ack["turn_id"] == 1
    first_of_turn_2 = next(i for i, e in enumerate(events) if e.get("turn_id") == 2)
    assert max(i for i, e in enumerate(events) if e.get("turn_id") == 1 and e is not ack) < events.index(ack)
    assert events.index(ack) < first_of_turn_2


async def test_close_cuts_a_running_turn_short(voice, client, fake_llm):
    fake_llm.queue(Reply("Half of it. The rest never.", pause_after=3))
    await start(voice, client, voice_output=False)
    await voice.dispatch({"type": "text", "text": "Talk"})
    await client.until_event("delta", count=3)
    try:
        await asyncio.wait_for(voice.close(), TIMEOUT)
    finally:
        fake_llm.release()
    assert not voice.turn_running
    assert "interrupted" not in [e["type"] for e in client.events()]  # nobody to tell
    reply = await Message.objects.aget(role="assistant")
    assert reply.interrupted and reply.content == "Half of it. "


async def test_an_interrupted_turn_that_saved_nothing_has_no_message_id(voice, client, fake_llm):
    fake_llm.queue(Reply("First part here. Second part never.", pause_after=3))
    await start(voice, client, voice_output=False)
    await voice.dispatch({"type": "text", "text": "Talk"})
    await client.until_event("delta", count=3)
    try:
        await voice.dispatch({"type": "interrupt"})
    finally:
        fake_llm.release()
    assert client.events("interrupted")[0]["message_id"] is not None  # turn 1's reply
    # Turn 2 is interrupted before it ran at all: nothing of it was saved.
    await voice.dispatch({"type": "text", "text": "Never mind"})
    await voice.dispatch({"type": "interrupt"})
    ack = client.events("interrupted")[-1]
    assert ack["turn_id"] == 2
    assert ack["message_id"] is None


# -- audio through the session -----------------------------------------------------------------------
async def test_audio_faster_than_real_time_is_refused(voice, client, settings, fake_asr):
    settings.VOICE_MAX_AUDIO_RATE = 1.0
    await start(voice, client, mode="ptt")
    await voice.audio(b"\1\0" * 16000)
    await voice.audio(b"\1\0" * 16000)  # the 2 s burst
    with pytest.raises(SessionError) as caught:
        await voice.audio(b"\1\0" * 16000)
    assert caught.value.code == "audio_rate_exceeded"


async def test_configure_does_not_refill_the_audio_allowance(voice, client, settings, fake_asr):
    settings.VOICE_MAX_AUDIO_RATE = 1.0
    await start(voice, client, mode="ptt")
    await voice.audio(b"\1\0" * 16000)
    await voice.audio(b"\1\0" * 16000)  # the 2 s burst
    await voice.dispatch({"type": "configure"})
    with pytest.raises(SessionError) as caught:
        await voice.audio(b"\1\0" * 16000)
    assert caught.value.code == "audio_rate_exceeded"


class FakeVAD:
    """Speech is a frame of 0x7f7f samples; two quiet frames after speech end the utterance."""

    def __init__(self, silence_ms=None):
        self.speech_started = self.ended = False
        self._quiet = 0

    def feed(self, pcm16k):
        if pcm16k[:2] == b"\x7f\x7f":
            self.speech_started, self._quiet = True, 0
        elif self.speech_started:
            self._quiet += 1
            self.ended = self._quiet >= 2

    def reset(self):
        self.speech_started = self.ended = False
        self._quiet = 0


SPEECH, QUIET = b"\x7f\x7f" * 480, b"\1\0" * 480


async def test_hands_free_utterance_through_the_session(user, client, fake_asr):
    fed, ended = fake_asr
    voice = VoiceSession(user=user, emit=client.emit, send_audio=client.send_audio, vad_factory=FakeVAD)
    try:
        await start(voice, client, mode="handsfree")
        await voice.audio(QUIET)
        assert voice.listening.utterance is None
        await voice.audio(SPEECH)
        assert voice.state == "listening"
        await voice.audio(QUIET)
        await voice.audio(QUIET)
        assert ended == ["asr1"] and voice.state == "thinking"
        assert fed["asr1"] == [QUIET + SPEECH, QUIET, QUIET]
    finally:
        await voice.close()


async def test_configure_during_a_hands_free_utterance_keeps_its_end_of_speech(user, client, fake_asr):
    _fed, ended = fake_asr
    voice = VoiceSession(user=user, emit=client.emit, send_audio=client.send_audio, vad_factory=FakeVAD)
    try:
        await start(voice, client, mode="handsfree", voice_output=True)
        await voice.audio(SPEECH)
        await voice.dispatch({"type": "configure", "voice_output": False})
        await voice.audio(QUIET)
        await voice.audio(QUIET)
        assert ended == ["asr1"]
    finally:
        await voice.close()
