"""The voice WebSocket, through the real ASGI application (session cookie, origin check)."""

import json
import struct

import pytest
from channels.testing import WebsocketCommunicator

from chat.models import Message
from devtools.fake_llm import Reply

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def voice_workers(request):
    """With Redis configured, voice jobs run on a real Celery worker; embedded, in this process."""
    from django.conf import settings

    if not settings.VOICE_JOBS_IN_PROCESS:
        request.getfixturevalue("celery_worker_process")


@pytest.fixture
def application():
    from magicmirror.asgi import application

    return application


async def connect(application, client=None, origin=b"http://testserver"):
    headers = [(b"origin", origin), (b"host", b"testserver")]
    if client is not None:
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    communicator = WebsocketCommunicator(application, "/ws/voice/", headers=headers)
    connected, _ = await communicator.connect(timeout=10)
    return communicator, connected


async def events_until(communicator, kind, timeout=30):
    """Collect (json events, audio frames) until an event of `kind` arrives."""
    events, frames = [], []
    while True:
        message = await communicator.receive_output(timeout)
        if message["type"] == "websocket.close":
            raise AssertionError(f"closed before {kind}: {events}")
        if message.get("bytes") is not None:
            frames.append(message["bytes"])
            continue
        event = json.loads(message["text"])
        events.append(event)
        if event["type"] == kind:
            return events, frames


@pytest.fixture
async def ws(application, async_client, user):
    await async_client.aforce_login(user)
    communicator, connected = await connect(application, async_client)
    assert connected
    hello = await communicator.receive_json_from(10)
    assert hello == {"type": "hello", "protocol": 1}
    yield communicator
    await communicator.disconnect()


async def test_unauthenticated_socket_is_refused(application):
    communicator, connected = await connect(application)
    assert connected
    event = await communicator.receive_json_from(10)
    assert event["code"] == "not_authenticated"
    close = await communicator.receive_output(10)
    assert close == {"type": "websocket.close", "code": 4401}


async def test_bad_origin_is_refused(application, async_client, user):
    await async_client.aforce_login(user)
    _, connected = await connect(application, async_client, origin=b"http://evil.example")
    assert not connected


async def test_typed_turn_streams_text_and_audio(ws, user, fake_llm, settings):
    settings.VOICE_TTS_ENGINES = ["piper"]
    fake_llm.queue(Reply("Hello there. This is the second sentence, spoken too.", tokens_per_s=200), Reply("Greeting"))
    await ws.send_json_to({"type": "start", "protocol": 1, "voice_output": True})
    ready = await ws.receive_json_from(10)
    assert ready["type"] == "ready" and ready["protocol"] == 1
    await ws.send_json_to({"type": "text", "text": "Say hello"})
    events, frames = await events_until(ws, "audio_done", timeout=60)
    kinds = [e["type"] for e in events]
    assert kinds.index("state") < kinds.index("delta")
    sentences = [e for e in events if e["type"] == "sentence"]
    assert [s["text"] for s in sentences] == ["Hello there.", "This is the second sentence, spoken too."]
    assert frames, "no audio"
    turn_ids = {struct.unpack("<III", f[:12])[0] for f in frames}
    assert turn_ids == {events[[e["type"] for e in events].index("turn")]["turn_id"]}
    sentence_ids = [struct.unpack("<III", f[:12])[1] for f in frames]
    assert sentence_ids == sorted(sentence_ids) and set(sentence_ids) == {0, 1}
    done = next(e for e in events if e["type"] == "reply_done")
    reply = await Message.objects.aget(pk=done["message_id"])
    assert reply.content == "Hello there. This is the second sentence, spoken too."
    assert not reply.interrupted


async def test_interrupt_saves_what_was_spoken(ws, user, fake_llm, settings):
    settings.VOICE_TTS_ENGINES = ["piper"]
    fake_llm.queue(Reply("First sentence here. Second sentence never spoken.", pause_after=4))
    await ws.send_json_to({"type": "start", "protocol": 1, "voice_output": True})
    await ws.receive_json_from(10)
    await ws.send_json_to({"type": "text", "text": "Talk"})
    events, frames = await events_until(ws, "sentence_end", timeout=60)
    await ws.send_json_to({"type": "interrupt"})
    events, frames = await events_until(ws, "interrupted", timeout=30)
    fake_llm.release()
    ack = events[-1]
    # Nothing of the old turn after the acknowledgement: only the state change, then our pong.
    await ws.send_json_to({"type": "ping", "id": 1})
    after, frames = await events_until(ws, "pong")
    assert frames == []
    assert [e["type"] for e in after] == ["state", "pong"] and after[0]["state"] == "idle"
    reply = await Message.objects.aget(pk=ack["message_id"])
    assert reply.interrupted is True
    assert reply.content == "First sentence here."


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "bad_json"),
        ("[1,2]", "bad_message"),
        ('{"type": "dance"}', "not_started"),
        ('{"type": "text", "text": "hi"}', "not_started"),
    ],
)
async def test_bad_frames_get_errors_and_keep_the_socket(ws, frame, code):
    await ws.send_to(text_data=frame)
    event = await ws.receive_json_from(10)
    assert event["type"] == "error" and event["code"] == code
    await ws.send_json_to({"type": "ping", "id": 7})
    assert await ws.receive_json_from(10) == {"type": "pong", "id": 7}


async def test_audio_before_start_and_oversized_frames(ws, settings):
    await ws.send_to(bytes_data=b"\0\0" * 100)
    assert (await ws.receive_json_from(10))["code"] == "not_started"
    await ws.send_to(bytes_data=b"\0" * (settings.VOICE_WS_MAX_FRAME_BYTES + 2))
    assert (await ws.receive_json_from(10))["code"] == "frame_too_large"


async def test_another_users_conversation_is_refused(ws, other_user):
    from chat.models import Conversation

    theirs = await Conversation.objects.acreate(owner=other_user, title="private")
    await ws.send_json_to({"type": "start", "protocol": 1, "conversation_id": theirs.pk})
    event = await ws.receive_json_from(10)
    assert event["type"] == "error" and event["code"] == "conversation_not_found"


def fixture_pcm(name):
    import wave

    from devtools import samples

    with wave.open(str(samples.path(name))) as w:
        assert w.getframerate() == 16000
        return w.readframes(w.getnframes())


def direct_vosk(pcm, phrases=None, chunk_bytes=None):
    """What plain Vosk makes of the same audio (same model, dither and chunking): the app must match it."""
    from voice.tests.test_asr import direct_decode

    return direct_decode(pcm, phrases, chunk_bytes)


async def stream_audio(ws, pcm, chunk_ms=100, rate=16000):
    step = rate * 2 * chunk_ms // 1000
    for start in range(0, len(pcm), step):
        await ws.send_to(bytes_data=pcm[start : start + step])


async def test_push_to_talk_turn_with_real_vosk(ws, user, fake_llm, settings):
    settings.VOICE_TTS_ENGINES = ["piper"]
    settings.VOICE_MAX_AUDIO_RATE = 1000.0  # the test streams faster than real time
    phrases = ["안녕하세요", "오늘", "좋네요"]
    pcm = fixture_pcm("hello.wav")
    fake_llm.queue(Reply("반가워요. Nice to hear you."))
    await ws.send_json_to({"type": "start", "protocol": 1, "mode": "ptt", "phrases": phrases, "voice_output": True})
    await ws.receive_json_from(10)
    await stream_audio(ws, pcm)
    await ws.send_json_to({"type": "audio_end"})
    events, frames = await events_until(ws, "audio_done", timeout=90)
    kinds = [e["type"] for e in events]
    assert "partial" in kinds and kinds.index("partial") < kinds.index("final")
    final = next(e for e in events if e["type"] == "final")
    assert final["text"] == direct_vosk(pcm, phrases, chunk_bytes=3200)
    assert "안녕하세요" in final["text"]
    user_message = await Message.objects.aget(pk=final["message_id"])
    assert (user_message.role, user_message.source, user_message.content) == ("user", "voice", final["text"])
    done = next(e for e in events if e["type"] == "reply_done")
    reply = await Message.objects.aget(pk=done["message_id"])
    assert reply.pk > user_message.pk and reply.content == "반가워요. Nice to hear you."
    assert frames


async def test_hands_free_detects_the_end_of_speech(ws, user, fake_llm, settings):
    settings.VOICE_MAX_AUDIO_RATE = 1000.0
    pcm = fixture_pcm("hello_padded.wav")
    fake_llm.queue(Reply("네."))
    phrases = ["안녕하세요", "오늘", "좋네요"]
    start = {"type": "start", "protocol": 1, "mode": "handsfree", "voice_output": False, "phrases": phrases}
    await ws.send_json_to(start)
    await ws.receive_json_from(10)
    await stream_audio(ws, pcm, chunk_ms=30)  # no audio_end: the VAD ends the utterance
    events, _ = await events_until(ws, "reply_done", timeout=90)
    final = next(e for e in events if e["type"] == "final")
    # The utterance opened when speech began (0.3 s pre-roll) and closed in the trailing silence.
    assert final["text"].startswith("안녕하세요")
    assert final["message_id"] is not None
    assert [e["state"] for e in events if e["type"] == "state"][:2] == ["listening", "thinking"]


async def test_silence_gives_an_empty_final_and_no_turn(ws, fake_llm, settings):
    settings.VOICE_MAX_AUDIO_RATE = 1000.0
    await ws.send_json_to({"type": "start", "protocol": 1, "mode": "ptt"})
    await ws.receive_json_from(10)
    await stream_audio(ws, b"\0\0" * 16000)
    await ws.send_json_to({"type": "audio_end"})
    events, _ = await events_until(ws, "final", timeout=60)
    assert events[-1]["text"] == "" and events[-1]["message_id"] is None
    assert fake_llm.request_count == 0


async def test_audio_faster_than_real_time_is_refused(ws):
    await ws.send_json_to({"type": "start", "protocol": 1, "mode": "ptt"})
    await ws.receive_json_from(10)
    for _ in range(10):
        await ws.send_to(bytes_data=b"\0\0" * 16000)  # 10 s of audio at once
    events, _ = await events_until(ws, "error", timeout=30)
    assert events[-1]["code"] == "audio_rate_exceeded"


async def test_disconnect_mid_reply_saves_the_reply(application, async_client, user, fake_llm, settings):
    settings.VOICE_TTS_ENGINES = ["piper"]
    fake_llm.queue(Reply("Already spoken sentence. This part never arrives.", pause_after=4))
    await async_client.aforce_login(user)
    ws, _ = await connect(application, async_client)
    await ws.receive_json_from(10)
    await ws.send_json_to({"type": "start", "protocol": 1, "voice_output": True})
    await ws.receive_json_from(10)
    await ws.send_json_to({"type": "text", "text": "Go"})
    await events_until(ws, "sentence_end", timeout=60)
    await ws.disconnect()  # returns once the consumer has finished with the socket
    fake_llm.release()
    reply = await Message.objects.aget(role="assistant", conversation__owner=user)
    assert reply.interrupted is True
    assert reply.content == "Already spoken sentence."


async def test_llm_failure_mid_stream_keeps_the_socket(ws, user, fake_llm):
    fake_llm.queue(Reply("Half of an answer that breaks", drop_after=3), Reply("Second try works."))
    await ws.send_json_to({"type": "start", "protocol": 1, "voice_output": False})
    await ws.receive_json_from(10)
    await ws.send_json_to({"type": "text", "text": "one"})
    events, _ = await events_until(ws, "error", timeout=30)
    assert events[-1]["code"] == "llm_unreachable" and events[-1]["turn_id"] == 1
    assert "".join(e["text"] for e in events if e["type"] == "delta") == "Half of an "
    await ws.send_json_to({"type": "text", "text": "two"})
    events, _ = await events_until(ws, "reply_done", timeout=30)
    assert "".join(e["text"] for e in events if e["type"] == "delta") == "Second try works."
    broken = await Message.objects.filter(role="assistant", error_code="llm_unreachable").aget()
    assert broken.content == "Half of an " and broken.interrupted


async def test_hands_free_barge_in_interrupts_the_reply(ws, user, fake_llm, settings):
    settings.VOICE_TTS_ENGINES = ["piper"]
    settings.VOICE_MAX_AUDIO_RATE = 1000.0
    fake_llm.queue(Reply("A first sentence to speak. And a second one that is never heard.", pause_after=6))
    await ws.send_json_to({"type": "start", "protocol": 1, "mode": "handsfree", "voice_output": True})
    await ws.receive_json_from(10)
    await ws.send_json_to({"type": "text", "text": "Tell me something"})
    await events_until(ws, "sentence_end", timeout=60)
    await stream_audio(ws, fixture_pcm("hello.wav"), chunk_ms=30)  # the user talks over the reply
    events, _ = await events_until(ws, "interrupted", timeout=30)
    fake_llm.release()
    reply = await Message.objects.aget(pk=events[-1]["message_id"])
    assert reply.interrupted and reply.content == "A first sentence to speak."
