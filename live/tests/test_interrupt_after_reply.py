"""A reply cut short after the LLM has finished, while its audio is still playing (issue 13, item 5).

The reply was saved whole when the LLM finished; the cut must turn it into what was heard: the
sentences whose `sentence` events were sent, marked interrupted, and the `interrupted` event names
it. The audio phase is long because audio is paced in real time (VOICE_AUDIO_LEAD_SECONDS = 0) and
the reply has several sentences of a few seconds each, so the test cuts it while it plays; what it
compares is what the client was sent, whichever sentence the cut falls in. The SIGTERM variant is in
magicmirror/tests/test_graceful.py.
"""

import asyncio
import json

import pytest

from chat.models import Message
from devtools.fake_llm import Hang, Reply

from .test_consumer import connect, events_until

pytestmark = pytest.mark.django_db(transaction=True)

SENTENCES = [
    "The first sentence is here to be heard in full.",
    "The second sentence follows it and takes a while.",
    "A third sentence keeps the audio going for longer.",
    "The fourth sentence is the last one of this reply.",
]
REPLY = " ".join(SENTENCES)


@pytest.fixture(autouse=True)
def voice_workers(request, settings):
    """With Redis configured, voice jobs run on a real Celery worker; embedded, in this process."""
    if not settings.VOICE_JOBS_IN_PROCESS:
        request.getfixturevalue("celery_worker_process")


@pytest.fixture
async def socket(async_client, user, settings):
    from magicmirror.asgi import application

    settings.VOICE_TTS_ENGINES = ["piper"]
    settings.VOICE_AUDIO_LEAD_SECONDS = 0.0  # audio in real time: the reply plays for several seconds
    await async_client.aforce_login(user)
    communicator, connected = await connect(application, async_client)
    assert connected
    assert (await communicator.receive_json_from(10))["type"] == "hello"
    yield communicator
    await communicator.disconnect(timeout=30)


async def until_seen(communicator, *kinds, timeout=60):
    """Events (audio frames skipped) until one of each of `kinds` has arrived, in any order."""
    events: list[dict] = []
    async with asyncio.timeout(timeout):
        while not set(kinds) <= {e["type"] for e in events}:
            message = await communicator.receive_output(timeout)
            assert message["type"] != "websocket.close", events
            if message.get("text") is not None:
                events.append(json.loads(message["text"]))
    return events


async def reply_is_playing(communicator, fake_llm, *, voice_output=True, title=None):
    """Start a turn; returns its events once the LLM has finished and the reply is saved
    (`reply_done`) and, with voice, its first sentence is playing."""
    fake_llm.queue(Reply(REPLY, tokens_per_s=500), title or Reply("A title"))
    await communicator.send_json_to({"type": "start", "protocol": 1, "voice_output": voice_output})
    assert (await communicator.receive_json_from(10))["type"] == "ready"
    await communicator.send_json_to({"type": "text", "text": "Tell me four things"})
    return await until_seen(communicator, "reply_done", *(["sentence"] if voice_output else []))


def spoken(events):
    return [e["text"] for e in events if e["type"] == "sentence"]


def cut_while_playing(events):
    """The cut came while audio was still to come: at least one sentence was never announced."""
    assert "audio_done" not in [e["type"] for e in events], events
    assert 0 < len(spoken(events)) < len(SENTENCES), events


async def test_interrupt_after_the_llm_finished_saves_what_was_heard(socket, fake_llm):
    events = await reply_is_playing(socket, fake_llm)
    reply_done = next(e for e in events if e["type"] == "reply_done")
    await socket.send_json_to({"type": "interrupt"})
    events += (await events_until(socket, "interrupted", timeout=30))[0]
    cut_while_playing(events)
    ack = events[-1]
    assert ack["message_id"] == reply_done["message_id"]
    reply = await Message.objects.aget(pk=ack["message_id"])
    assert reply.interrupted is True
    assert reply.content == " ".join(spoken(events))
    # Nothing of the old turn after the acknowledgement.
    await socket.send_json_to({"type": "ping", "id": 1})
    after, frames = await events_until(socket, "pong")
    assert frames == [] and [e["type"] for e in after] == ["state", "pong"]


async def test_disconnect_after_the_llm_finished_saves_what_was_heard(socket, fake_llm):
    events = await reply_is_playing(socket, fake_llm)
    reply_done = next(e for e in events if e["type"] == "reply_done")
    await socket.disconnect(timeout=30)  # returns once the consumer has finished with the socket
    while not socket.output_queue.empty():  # what was sent before the consumer saw the disconnect
        message = socket.output_queue.get_nowait()
        if message.get("text"):
            events.append(json.loads(message["text"]))
    cut_while_playing(events)
    reply = await Message.objects.aget(pk=reply_done["message_id"])
    assert reply.interrupted is True
    assert reply.content == " ".join(spoken(events))


async def test_without_voice_the_reply_is_complete_once_done(socket, fake_llm):
    """No audio phase: an interrupt after `reply_done` (here while the title is being written)
    leaves the saved reply as it is, and the acknowledgement names it."""
    events = await reply_is_playing(socket, fake_llm, voice_output=False, title=Hang(30))
    assert await asyncio.to_thread(fake_llm.wait_for_requests, 2)  # the title request is out (and hangs)
    await socket.send_json_to({"type": "interrupt"})
    ack = (await events_until(socket, "interrupted", timeout=30))[0][-1]
    reply_done = next(e for e in events if e["type"] == "reply_done")
    assert ack["message_id"] == reply_done["message_id"]
    reply = await Message.objects.aget(pk=reply_done["message_id"])
    assert (reply.content, reply.interrupted) == (REPLY, False)


async def test_a_cut_while_the_finished_reply_is_being_saved_still_names_it(fake_llm, user, monkeypatch):
    """The narrowest case: the cut lands while reply_stream is saving the finished reply. The row is
    written all the same; the cancelled stream waits for it, so its listener (the voice turn, which
    then keeps only what was heard) learns its id before the cancellation goes on."""
    import threading

    from chat.services import replies

    saving, go_on = threading.Event(), threading.Event()
    real_save = replies._reply_save

    def slow_save(**kwargs):
        saving.set()
        go_on.wait(10)
        return real_save(**kwargs)

    monkeypatch.setattr(replies, "_reply_save", slow_save)
    fake_llm.queue(Reply("All of the reply."))
    saved_ids: list[int] = []
    known_when_cancelled: list[int] = []

    async def listen():
        events = replies.reply_stream(user=user, conversation_id=None, text="Hi", on_reply_saved=saved_ids.append)
        try:
            async for _ in events:
                pass
        except asyncio.CancelledError:
            known_when_cancelled.extend(saved_ids)
            raise

    task = asyncio.create_task(listen())
    assert await asyncio.to_thread(saving.wait, 10)
    task.cancel()
    go_on.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    reply = await Message.objects.aget(role="assistant")
    assert known_when_cancelled == [reply.pk] and reply.content == "All of the reply."
