"""Voice turns in which the LLM calls tools: relayed events, spoken text only, the slow-tool
acknowledgement, an interrupt while a tool runs, and a tool that switches the session's voice.

VoiceSession is driven through dispatch() (as in test_session), and through the real WebSocket with
Piper and Vosk for a typed and a spoken turn; the LLM is the fake server answering with streamed
`tool_calls` (devtools.fake_llm.ToolCalls).
"""

import asyncio
import itertools
import json

import pytest

from chat.models import Message
from devtools.fake_llm import Reply, ToolCalls
from live.turn import TOOL_ACKS
from speakers.models import Speaker, UserSettings
from tools.tests.helpers import Gate, offered
from voice.jobs import messages

from . import test_consumer, test_session
from .recording import fake_synthesis
from .test_consumer import events_until, fixture_pcm, stream_audio
from .test_session import TIMEOUT, start

# The fixtures of the session and socket tests, shared.
client, voice = test_session.client, test_session.voice
application, voice_workers, ws = test_consumer.application, test_consumer.voice_workers, test_consumer.ws

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def spoken(monkeypatch):
    """Synthesis as real-shaped job messages without an engine; records (text, speaker_id) asked for."""
    asked: list[tuple[str, int | None]] = []
    ids = itertools.count(1)

    async def synthesize(*, text, speaker_id=None, engine_name=None, language=None):
        asked.append((text, speaker_id))
        job_id = f"tts{next(ids)}"
        common = {"job_id": job_id, "t": 0.0, "engine": "piper", "voice": "v", "clones": False, "sample_rate": 22050}
        yield {"type": messages.TTS_CHUNK, "seq": 0, "part": 0, "produced": 0.0, "pcm": b"\x01\x02" * 220,
               "started": 0.0, **common}  # fmt: skip
        yield {"type": messages.TTS_DONE, "chunks": 1, "samples": 220, "duration": 0.01, **common}

    fake_synthesis(monkeypatch, synthesize)
    return asked


async def test_a_typed_voice_turn_calls_the_time_tool(voice, client, fake_llm, spoken, settings):
    settings.TOOLS_ACK_AFTER_MS = 0
    fake_llm.queue(ToolCalls([("current_time", {})], text="我看一下"), Reply("现在是三点。"))
    await start(voice, client, voice_output=True)
    await voice.dispatch({"type": "text", "text": "现在几点？"})
    events = await client.until_event("audio_done")
    kinds = [e["type"] for e in events]
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("reply_done")
    result = client.events("tool_result")[0]
    assert result["turn_id"] == 1 and result["name"] == "current_time" and result["outcome"] == "ok"
    # The text before the call is said when the call is made (no punctuation needed), then the continuation;
    # the result is never spoken.
    assert [s["text"] for s in client.events("sentence")] == ["我看一下", "现在是三点。"]
    assert [text for text, _ in spoken] == ["我看一下", "现在是三点。"]
    assert json.loads(result["result"])["time"] not in "".join(text for text, _ in spoken)
    reply = await Message.objects.aget(role="assistant")
    assert reply.content == "我看一下现在是三点。" and reply.tool_calls[0]["outcome"] == "ok"


async def test_an_interrupt_cancels_a_running_tool(voice, client, fake_llm, spoken):
    slow = Gate("slow")
    fake_llm.queue(ToolCalls([("slow", {})], text="Checking. "), Reply("never said"))
    with offered(slow.tool):
        await start(voice, client, voice_output=True)
        await voice.dispatch({"type": "text", "text": "check it"})
        await asyncio.wait_for(slow.started.wait(), TIMEOUT)
        await client.until_event("sentence_end")  # "Checking." was heard
        await asyncio.wait_for(voice.dispatch({"type": "interrupt"}), TIMEOUT)
    assert slow.cancelled.is_set()
    assert not voice.turn_running and fake_llm.request_count == 1  # no continuation asked for
    ack = client.events("interrupted")[0]
    reply = await Message.objects.aget(pk=ack["message_id"])
    assert reply.interrupted and reply.content == "Checking."
    assert [(c["name"], c["outcome"]) for c in reply.tool_calls] == [("slow", "cancelled")]
    assert not client.events("tool_result")


async def test_a_slow_tool_is_acknowledged(voice, client, fake_llm, spoken, settings):
    settings.TOOLS_ACK_AFTER_MS = 1
    slow = Gate("slow", result={"weather": "sunny"})
    fake_llm.queue(ToolCalls([("slow", {})]), Reply("It is sunny."))
    with offered(slow.tool):
        await start(voice, client, voice_output=True)
        await voice.dispatch({"type": "text", "text": "weather?"})
        await client.until(lambda events: any(e["type"] == "sentence" for e in events))
        assert slow.started.is_set() and not slow.opened.is_set()  # said while the tool still ran
        slow.open()
        await client.until_event("audio_done")
    ack = TOOL_ACKS[voice.spoken_language]
    assert [s["text"] for s in client.events("sentence")] == [ack, "It is sunny."]
    reply = await Message.objects.aget(role="assistant")
    assert reply.content == "It is sunny."  # the acknowledgement is no part of the reply
    assert ack not in json.dumps(fake_llm.requests[1]["messages"], ensure_ascii=False)


async def test_switch_voice_changes_the_sessions_speaker(voice, client, user, other_user, fake_llm, spoken):
    first = await Speaker.objects.acreate(owner=user, slot=1, name="Ann", audio="a.wav", prompt_text="hi")
    second = await Speaker.objects.acreate(owner=user, slot=2, name="Bob", audio="b.wav", prompt_text="hi")
    await Speaker.objects.acreate(owner=other_user, slot=1, name="Eve", audio="e.wav", prompt_text="hi")
    await UserSettings.objects.acreate(user=user, current_speaker=first)
    fake_llm.queue(
        ToolCalls([("switch_voice", {"name": "Eve"})], text="Let me try. "),
        Reply("No such voice."),
        Reply("Voices"),  # the conversation's title
        ToolCalls([("switch_voice", {"name": "bob"})], text="Switching. "),
        Reply("Now I am Bob."),
    )
    await start(voice, client, voice_output=True)
    assert voice.speaker_id == first.pk
    await voice.dispatch({"type": "text", "text": "Use Eve's voice"})
    await client.until_event("audio_done")
    assert voice.speaker_id == first.pk and client.events("tool_result")[0]["outcome"] == "error"
    readies = len(client.events("ready"))

    await voice.dispatch({"type": "text", "text": "Use Bob's voice"})
    await client.until_event("audio_done", count=2)
    assert voice.speaker_id == second.pk
    ready = client.events("ready")[readies:]
    assert [r["speaker"] for r in ready] == [{"id": second.pk, "name": "Bob"}]
    # The rest of that reply was already read in the new voice.
    assert spoken[-2:] == [("Switching.", first.pk), ("Now I am Bob.", second.pk)]


async def test_new_conversation_switches_the_session(voice, client, fake_llm, spoken):
    fake_llm.queue(ToolCalls([("new_conversation", {})]), Reply("Fresh start."), Reply("Next one."))
    await start(voice, client, voice_output=False)
    await voice.dispatch({"type": "text", "text": "Let's start over"})
    await client.until_event("reply_done")
    old = client.events("conversation")[0]["id"]
    await client.until(lambda events: events[-1] == {"type": "state", "state": "idle"})
    assert voice.conversation_id is None and client.events("ready")[-1]["conversation"] is None
    await voice.dispatch({"type": "text", "text": "Hello again"})
    await client.until_event("reply_done", count=2)
    assert client.events("conversation")[1]["id"] != old


# -- through the WebSocket, real engines -------------------------------------------------------------
async def test_typed_and_spoken_turns_over_the_socket_hear_the_time(ws, user, fake_llm, settings):
    settings.VOICE_TTS_ENGINES = ["piper"]
    settings.VOICE_MAX_AUDIO_RATE = 1000.0  # the test streams faster than real time
    settings.TOOLS_ACK_AFTER_MS = 0
    fake_llm.queue(ToolCalls([("current_time", {})]), Reply("It is three o'clock."))
    await ws.send_json_to({"type": "start", "protocol": 1, "mode": "ptt", "voice_output": True})
    await ws.receive_json_from(10)
    await ws.send_json_to({"type": "text", "text": "What time is it?"})
    events, frames = await events_until(ws, "audio_done", timeout=60)
    assert [e["outcome"] for e in events if e["type"] == "tool_result"] == ["ok"]
    assert [e["text"] for e in events if e["type"] == "sentence"] == ["It is three o'clock."] and frames

    phrases = ["안녕하세요", "오늘", "좋네요"]
    fake_llm.queue(ToolCalls([("current_time", {})]), Reply("Four o'clock now."))
    await ws.send_json_to({"type": "configure", "phrases": phrases})
    await events_until(ws, "ready")
    await stream_audio(ws, fixture_pcm("hello.wav"))
    await ws.send_json_to({"type": "audio_end"})
    events, frames = await events_until(ws, "audio_done", timeout=90)
    assert "안녕하세요" in next(e for e in events if e["type"] == "final")["text"]
    assert [e["name"] for e in events if e["type"] == "tool_call" for e in e["calls"]] == ["current_time"]
    assert [e["text"] for e in events if e["type"] == "sentence"] == ["Four o'clock now."] and frames
    replies = [m async for m in Message.objects.filter(role="assistant").order_by("id")]
    assert [len(r.tool_calls) for r in replies] == [1, 1]
