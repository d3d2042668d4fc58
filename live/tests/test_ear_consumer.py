"""Text for the ear over the real WebSocket: the engine never gets markdown, emoji or URLs; the
reply shown and saved keeps them."""

import pytest

from chat.models import Message
from devtools.fake_llm import Reply
from voice import jobs

from .recording import fake_synthesis
from .test_consumer import application, events_until, voice_workers, ws  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db(transaction=True)


async def test_markdown_emoji_and_urls_are_shown_and_saved_but_never_spoken(ws, fake_llm, settings, monkeypatch):  # noqa: F811
    settings.VOICE_TTS_ENGINES = ["piper"]
    spoken_texts = []
    real_synthesize = jobs.synthesize

    def recording_synthesize(*, text, **kwargs):
        spoken_texts.append(text)
        return real_synthesize(text=text, **kwargs)

    fake_synthesis(monkeypatch, recording_synthesize)
    reply = "**Great** idea 🎉! See [the docs](https://example.com/docs) at 9:30 am.\n🚀"
    fake_llm.queue(Reply(reply, tokens_per_s=400), Reply("Title"))
    await ws.send_json_to({"type": "start", "protocol": 1, "voice_output": True})
    assert (await ws.receive_json_from(10))["type"] == "ready"
    await ws.send_json_to({"type": "text", "text": "Ideas?"})
    events, frames = await events_until(ws, "audio_done", timeout=60)
    assert frames
    # Numbers become words in the job, per engine (voice/tests/test_language_routing.py checks the engine input).
    assert spoken_texts == ["Great idea!", "See the docs at 9:30 am."]
    assert all(not set("*[]()🎉🚀") & set(text) and "http" not in text for text in spoken_texts)
    sentences = [e["text"] for e in events if e["type"] == "sentence"]
    assert sentences == ["**Great** idea 🎉!", "See [the docs](https://example.com/docs) at 9:30 am."]
    done = next(e for e in events if e["type"] == "reply_done")
    assert (await Message.objects.aget(pk=done["message_id"])).content == reply
