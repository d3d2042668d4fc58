"""A typed turn over the voice WebSocket whose voice reads text as it is written (CosyVoice2 without vLLM,
over the stand-in of upstream's class, in this process): the sentence the LLM is still writing is
already being spoken, and the client still gets each `sentence` event with its whole text before its
audio, as docs/protocol.md says. The LLM is the fake server, held mid-sentence until the test releases it."""

import asyncio
import json
import struct

import pytest

from devtools.fake_llm import Reply
from voice.tests.conftest import cosyvoice_default, model_dir  # noqa: F401 - the fixtures
from voice.tests.cosyvoice_standin import IGNORE_STOPPED_LLM_JOB

from .test_consumer import application, ws  # noqa: F401 - the fixtures of the socket tests

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.filterwarnings(IGNORE_STOPPED_LLM_JOB)]

FIRST, SECOND = "Hello there,", "this is a test of speaking as it is written."
HELD_AFTER = 8  # tokens: "Hello there, this is a test of speaking " is written, the rest is held
TIMEOUT = 30
AUDIO_HEADER = struct.Struct("<III")  # turn_id, sentence_id, seq


async def condition(check, timeout=TIMEOUT) -> None:
    """Until `check()` holds (a bound, not a pause: the test fails if it never does)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def test_a_sentence_is_spoken_while_the_llm_still_writes_it(
    ws,  # noqa: F811
    fake_llm,
    settings,
    cosyvoice_default,  # noqa: F811
):
    settings.VOICE_JOBS_IN_PROCESS = True  # the stand-in engine lives in this process
    settings.VOICE_AUDIO_LEAD_SECONDS = 3600.0  # no pacing to real time: frames go out as they arrive
    engine, standin = cosyvoice_default
    fake_llm.queue(Reply(f"{FIRST} {SECOND}", pause_after=HELD_AFTER), Reply("Greeting"))
    await ws.send_json_to({"type": "start", "protocol": 1, "voice_output": True})
    assert (await ws.receive_json_from(10))["type"] == "ready"
    await ws.send_json_to({"type": "text", "text": "Say something"})

    def taken() -> str:
        return "".join(t["piece"] for t in standin.calls.text_pieces)

    # The LLM is held mid-sentence; upstream has read its first words and spoken some of them.
    await condition(lambda: "this is a test of" in taken() and len(standin.calls.inference) == 2)
    second_call = standin.calls.inference[1]
    await condition(lambda: len(second_call["chunks"]) >= 1)
    fake_llm.release()

    received: list = []  # events (dicts) and audio frames (header tuples), in the order they came
    while not received or not isinstance(received[-1], dict) or received[-1]["type"] != "audio_done":
        message = await ws.receive_output(TIMEOUT)
        assert message["type"] == "websocket.send", message
        if message.get("bytes") is not None:
            received.append(AUDIO_HEADER.unpack_from(message["bytes"]))
        else:
            received.append(json.loads(message["text"]))
            assert received[-1]["type"] not in ("error", "notice"), received[-1]

    sentences = [e for e in received if isinstance(e, dict) and e["type"] == "sentence"]
    assert [e["text"] for e in sentences] == [FIRST, SECOND]
    assert {e["engine"] for e in sentences} == {"cosyvoice2"}
    # Each sentence's event, with its whole text, before any of its audio; every sentence has audio.
    for sentence in sentences:
        event_at = received.index(sentence)
        frames = [
            i for i, item in enumerate(received) if isinstance(item, tuple) and item[1] == sentence["sentence_id"]
        ]
        assert frames and min(frames) > event_at
    # The second sentence went to upstream as a generator and its last words were read after speech began.
    assert not isinstance(second_call["tts_text"], str)
    pieces = standin.calls.text_pieces
    assert pieces[-1]["chunks_before"] > pieces[0]["chunks_before"]
    assert taken().endswith("as it is written.")
    assert engine.settle(timeout=TIMEOUT) and standin.calls.active == 0
