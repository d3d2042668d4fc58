"""live.turn on its own: Turn with a scripted reply_stream, a fake speaker and a fake session."""

import asyncio
import logging

import pytest

from live.protocol import Limits
from live.turn import Turn
from magicmirror.errors import ApplicationError

from .recording import Recorder

TIMEOUT = 10


class FakeSession(Recorder):
    def __init__(self, *, voice_output=True, speaker_id=3, conversation_id=None):
        self.user = object()
        self.voice_output = voice_output
        self.speaker_id = speaker_id
        self.conversation_id = conversation_id
        super().__init__()
        self.limits = Limits()
        self.ended: list[Turn] = []
        self.block_on: str | None = None  # emit of this event type waits (a slow client)
        self.unblock = asyncio.Event()

    async def emit(self, event):
        await super().emit(event)
        if event["type"] == self.block_on:
            await self.unblock.wait()

    async def set_state(self, state):
        await self.record(("state", state))

    async def turn_ended(self, turn):
        self.ended.append(turn)

    async def wait_for_event(self, kind, count=1):
        """Until `count` events of `kind` have been sent."""
        await self.wait_until(lambda log: len(self.events(kind)) >= count, TIMEOUT)


class FakeSpeaker:
    """ReplySpeaker as Turn uses it; what it is given goes to the session's log, in order."""

    instances: list["FakeSpeaker"] = []

    def __init__(self, session, turn_id, speaker_id, input_ended_at=None, source="text"):
        self.session, self.turn_id, self.speaker_id = session, turn_id, speaker_id
        self.input_ended_at, self.source = input_ended_at, source
        self.added: list[str] = []
        self.written: list[str] = []  # what `write` was given: the sentence being written, as it grew
        self.spoken: list[str] = []
        self.finished = self.cancelled = self.hushed = False
        FakeSpeaker.instances.append(self)

    def hush(self):
        self.hushed = True

    def write(self, pending):
        self.written.append(pending)

    def add(self, text, audio=None):
        self.added.append(text)
        self.session.log.append(("speak", text))

    async def finish(self):
        self.finished = True

    async def cancel(self):
        self.cancelled = True


class FakeReplies:
    """chat.services.replies.reply_stream, scripted: `script(send, **kwargs)` is an async generator
    function that gets reply_stream's keyword arguments; the stream's aclose() is recorded."""

    def __init__(self):
        self.script = None
        self.kwargs: dict | None = None
        self.acloses = 0
        self.saved: list[str] = []  # what the generator saved when cut short (content_on_interrupt)

    def __call__(self, **kwargs):
        self.kwargs = kwargs
        return _Stream(self, self.script(**kwargs))


class _Stream:
    def __init__(self, owner, generator):
        self.owner, self.generator = owner, generator

    def __aiter__(self):
        return self

    def __anext__(self):
        return self.generator.__anext__()

    async def aclose(self):
        self.owner.acloses += 1
        await self.generator.aclose()


@pytest.fixture
def replies(monkeypatch):
    fake = FakeReplies()
    monkeypatch.setattr("live.turn.reply_stream", fake)
    return fake


@pytest.fixture(autouse=True)
def speaker(monkeypatch):
    FakeSpeaker.instances = []
    monkeypatch.setattr("live.turn.ReplySpeaker", FakeSpeaker)


def payload(message_id, role, content, source="text"):
    return {
        "id": message_id,
        "role": role,
        "content": content,
        "source": source,
        "interrupted": False,
        "error_code": "",
        "speaker_id": None,
        "created_at": "2025-01-01T00:00:00+08:00",
    }


DELTAS = ["Hello ", "there. ", "How are", " you? ", "Fine"]


def full_reply(replies, deltas=DELTAS, *, done_id=82, title="Greeting", source="text", user_text="Say hi"):
    async def script(*, content_on_interrupt, on_reply_complete, **kwargs):
        finished = False
        try:
            yield {"type": "conversation", "conversation": {"id": 12, "title": "Say hi"}}
            yield {"type": "user_message", "message": payload(81, "user", user_text, source)}
            for delta in deltas:
                yield {"type": "delta", "text": delta}
            finished = True
            on_reply_complete()
        finally:
            if not finished:
                replies.saved.append(content_on_interrupt())
        message = payload(done_id, "assistant", "".join(deltas)) if done_id is not None else None
        yield {"type": "done", "message": message}
        if title:
            yield {"type": "title", "conversation_id": 12, "title": title}

    replies.script = script


def paused_reply(replies, deltas=("Partial answer. ", "more ")):
    """A reply that streams `deltas` and then waits forever (the LLM is slow); saves when cut short."""

    async def script(*, content_on_interrupt, on_reply_complete, **kwargs):
        try:
            yield {"type": "conversation", "conversation": {"id": 12, "title": "t"}}
            yield {"type": "user_message", "message": payload(81, "user", "Talk")}
            for delta in deltas:
                yield {"type": "delta", "text": delta}
            await asyncio.Event().wait()
            yield {"type": "delta", "text": "never"}
        finally:
            replies.saved.append(content_on_interrupt())

    replies.script = script


async def run(turn):
    await asyncio.wait_for(turn.run(), TIMEOUT)


# -- events -------------------------------------------------------------------------------------------
async def test_each_reply_event_becomes_its_protocol_event(replies):
    session = FakeSession(voice_output=True, speaker_id=3)
    full_reply(replies)
    turn = Turn(session, 1, "Say hi", "text", input_ended_at=123.0, trace_id="trace-1")
    await run(turn)
    assert session.events() == [
        {"type": "conversation", "turn_id": 1, "id": 12, "title": "Say hi"},
        {"type": "turn", "turn_id": 1, "user_message_id": 81, "source": "text"},
        *({"type": "delta", "turn_id": 1, "text": d} for d in DELTAS),
        {"type": "reply_done", "turn_id": 1, "message_id": 82},
        {"type": "title", "conversation_id": 12, "title": "Greeting"},
        {"type": "audio_done", "turn_id": 1},
    ]
    assert session.conversation_id == 12  # the next turn goes to the same conversation
    assert session.ended == [turn]
    assert replies.acloses == 1 and replies.saved == []
    kwargs = replies.kwargs
    assert (kwargs["user"], kwargs["conversation_id"], kwargs["text"], kwargs["source"], kwargs["speaker_id"]) == (
        session.user,
        None,
        "Say hi",
        "text",
        3,
    )
    assert kwargs["content_on_interrupt"] == turn.what_was_said
    (speaker,) = FakeSpeaker.instances
    assert (speaker.turn_id, speaker.speaker_id, speaker.input_ended_at, speaker.source) == (1, 3, 123.0, "text")
    assert speaker.finished and speaker.cancelled


async def test_deltas_are_cut_into_sentences_for_the_speaker_as_they_arrive(replies):
    session = FakeSession(voice_output=True)
    full_reply(replies)
    await run(Turn(session, 1, "Say hi", "text"))
    (speaker,) = FakeSpeaker.instances
    assert speaker.added == ["Hello there.", "How are you?", "Fine"]
    order = [
        entry[1] if entry[0] == "speak" else (entry[1]["type"], entry[1].get("text"))
        for entry in session.log
        if entry[0] == "speak" or entry[1]["type"] in ("delta", "reply_done")
    ]
    # Each sentence goes to the speaker as soon as it is complete; the last one when the LLM has
    # finished (before the reply is saved and reply_done goes out).
    assert order == [
        ("delta", "Hello "),
        ("delta", "there. "),
        "Hello there.",
        ("delta", "How are"),
        ("delta", " you? "),
        "How are you?",
        ("delta", "Fine"),
        "Fine",
        ("reply_done", None),
    ]


async def test_without_voice_output_the_reply_is_only_shown(replies):
    session = FakeSession(voice_output=False, speaker_id=3)
    full_reply(replies)
    turn = Turn(session, 2, "Say hi", "text")
    await run(turn)
    assert FakeSpeaker.instances == [] and turn.speaker is None
    kinds = [e["type"] for e in session.events()]
    assert kinds == ["conversation", "turn", *["delta"] * len(DELTAS), "reply_done", "title"]
    assert not any(entry[0] == "speak" for entry in session.log)
    assert replies.kwargs["speaker_id"] is None  # no voice: the reply is not tied to a speaker
    assert turn.what_was_said() == "".join(DELTAS)


async def test_a_voice_turn_sends_the_final_transcript_first(replies):
    session = FakeSession(voice_output=False)
    full_reply(replies, source="voice", user_text="안녕하세요")
    await run(Turn(session, 3, "안녕하세요", "voice", utterance_id=4))
    events = session.events()
    assert events[1:3] == [
        {"type": "final", "utterance_id": 4, "text": "안녕하세요", "message_id": 81},
        {"type": "turn", "turn_id": 3, "user_message_id": 81, "source": "voice"},
    ]
    assert replies.kwargs["source"] == "voice"


async def test_a_reply_that_saved_nothing(replies):
    session = FakeSession(voice_output=False)
    full_reply(replies, deltas=[], done_id=None, title=None)
    await run(Turn(session, 1, "hm", "text"))
    assert session.events()[-1] == {"type": "reply_done", "turn_id": 1, "message_id": None}


async def test_the_given_conversation_is_used(replies):
    session = FakeSession(voice_output=False, conversation_id=12)
    full_reply(replies)
    await run(Turn(session, 5, "Again", "text"))
    assert replies.kwargs["conversation_id"] == 12


# -- what was said ------------------------------------------------------------------------------------
async def test_what_was_said_is_what_was_heard_with_voice(replies):
    session = FakeSession(voice_output=True)
    full_reply(replies)
    turn = Turn(session, 1, "Say hi", "text")
    await run(turn)
    turn.speaker.spoken = ["Hello there.", "How are you?"]
    assert turn.what_was_said() == "Hello there. How are you?"
    assert turn.speaker.hushed  # nothing more can be heard than what is saved
    turn.speaker.spoken = ["你好。", "今天天气很好！", "OK, bye."]
    assert turn.what_was_said() == "你好。今天天气很好！OK, bye."


def test_what_was_said_before_anything(replies):
    turn = Turn(FakeSession(voice_output=False), 1, "x", "text")
    assert turn.what_was_said() == ""


# -- failures -----------------------------------------------------------------------------------------
async def test_an_llm_error_event(replies):
    session = FakeSession(voice_output=False)

    async def script(**kwargs):
        yield {"type": "conversation", "conversation": {"id": 12, "title": "t"}}
        yield {"type": "user_message", "message": payload(81, "user", "x")}
        yield {"type": "delta", "text": "Half"}
        yield {"type": "error", "code": "llm_timeout", "message": "The LLM took too long.", "message_id": 83}

    replies.script = script
    turn = Turn(session, 1, "x", "text")
    await run(turn)
    assert session.events()[-1] == {
        "type": "error",
        "turn_id": 1,
        "code": "llm_timeout",
        "message": "The LLM took too long.",
    }
    assert session.ended == [turn]


@pytest.mark.parametrize("voice_output", [True, False])
async def test_an_application_error_mid_stream(replies, voice_output):
    session = FakeSession(voice_output=voice_output)

    async def script(**kwargs):
        yield {"type": "conversation", "conversation": {"id": 12, "title": "t"}}
        yield {"type": "user_message", "message": payload(81, "user", "x")}
        yield {"type": "delta", "text": "Half a sentence. And"}
        raise ApplicationError("The conversation was deleted.", code="conversation_not_found")

    replies.script = script
    turn = Turn(session, 6, "x", "text")
    await run(turn)
    assert session.events()[-1] == {
        "type": "error",
        "turn_id": 6,
        "code": "conversation_not_found",
        "message": "The conversation was deleted.",
    }
    assert "audio_done" not in [e["type"] for e in session.events()]
    assert replies.acloses == 1 and session.ended == [turn]
    if voice_output:
        (speaker,) = FakeSpeaker.instances
        assert speaker.cancelled and not speaker.finished
        assert speaker.added == ["Half a sentence."]  # the unfinished rest is not spoken


async def test_an_application_error_before_the_first_event(replies):
    session = FakeSession(voice_output=False)

    async def script(**kwargs):
        raise ApplicationError("Say something first.", code="invalid_message")
        yield  # an async generator

    replies.script = script
    await run(Turn(session, 1, "", "text"))
    assert session.events() == [
        {"type": "error", "turn_id": 1, "code": "invalid_message", "message": "Say something first."}
    ]


async def test_an_unexpected_exception_fails_the_turn(replies, caplog):
    session = FakeSession(voice_output=True)

    async def script(**kwargs):
        yield {"type": "conversation", "conversation": {"id": 12, "title": "t"}}
        raise KeyError("surprise")

    replies.script = script
    turn = Turn(session, 8, "x", "text")
    with caplog.at_level(logging.ERROR, logger="live.turn"):
        await run(turn)
    assert session.events()[-1] == {
        "type": "error",
        "turn_id": 8,
        "code": "turn_failed",
        "message": "The reply failed.",
    }
    assert "Voice turn 8 failed" in caplog.text and "surprise" in caplog.text
    assert replies.acloses == 1 and session.ended == [turn]
    assert FakeSpeaker.instances[0].cancelled


# -- cancellation ---------------------------------------------------------------------------------
@pytest.mark.parametrize("voice_output", [True, False])
async def test_cancelling_the_turn_closes_the_reply_which_saves_what_was_said(replies, voice_output):
    session = FakeSession(voice_output=voice_output)
    paused_reply(replies)
    turn = Turn(session, 1, "Talk", "text")
    task = asyncio.create_task(turn.run())
    await session.wait_for_event("delta", count=2)  # then the LLM goes quiet
    if voice_output:
        turn.speaker.spoken = ["Partial answer."]  # what the client heard
    sent = len(session.log)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)
    assert replies.acloses == 1
    assert replies.saved == (["Partial answer."] if voice_output else ["Partial answer. more "])
    assert session.ended == []  # an interrupted turn does not end as a finished one
    assert len(session.log) == sent  # nothing after the cancellation
    if voice_output:
        assert turn.speaker.cancelled and not turn.speaker.finished


async def test_cancelled_while_relaying_an_event_the_reply_is_still_closed(replies):
    """The generator is suspended at a `yield` (the client is slow to take a delta): only aclose()
    runs its clean-up, which saves the reply."""
    session = FakeSession(voice_output=False)
    session.block_on = "delta"
    paused_reply(replies, deltas=("Shown so far",))
    turn = Turn(session, 1, "Talk", "text")
    task = asyncio.create_task(turn.run())
    await session.wait_for_event("delta")
    assert replies.saved == []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)
    assert replies.acloses == 1
    assert replies.saved == ["Shown so far"]
    assert session.ended == []
