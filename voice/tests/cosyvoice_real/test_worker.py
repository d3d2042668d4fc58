"""A speaker's reference clip through the real CosyVoice2 classes in a real Celery worker, back through
the channel layer (Redis) to the requester, as the voice WebSocket consumer and the TTS routes receive it,
and on to a client of the voice WebSocket (the real ASGI application) in a typed turn."""

import json
import struct

import numpy as np
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from devtools.fake_llm import Reply
from speakers.services import speaker_create
from voice import jobs
from voice.tts import cosyvoice2 as cv

from ..samples import tone, wav
from .conftest import copy_model, import_upstream

import_upstream()
pytestmark = [pytest.mark.cosyvoice_real, pytest.mark.services_only, pytest.mark.django_db(transaction=True)]

SAMPLES_PER_TOKEN = 960
TOKENS_PER_TEXT_TOKEN = 20


@pytest.fixture(scope="session")
def cosyvoice_worker(request, tiny_model_template, tmp_path_factory, worker_netguard):
    """The project's Celery worker fixture, started with CosyVoice2 on the tiny model as its only TTS engine."""
    model_dir = copy_model(tiny_model_template, tmp_path_factory.mktemp("worker") / "CosyVoice2-tiny")
    guard_env, guard_log = worker_netguard
    env = {
        "COSYVOICE_MODEL_DIR": str(model_dir),
        "VOICE_TTS_ENGINES": "cosyvoice2",
        "VOICE_PRELOAD": "tts",
        "COSYVOICE_WARMUP": "true",  # loads the model before the worker answers its first ping
        **guard_env,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        worker = request.getfixturevalue("celery_worker_process")
    return worker, model_dir, guard_log


def text_tokens(model_dir, sentence) -> int:
    """Text tokens of a sentence as upstream's frontend makes them (its English normaliser, then the tokenizer)."""
    from cosyvoice.tokenizer.tokenizer import get_qwen_tokenizer
    from tn.english.normalizer import Normalizer

    normalised = Normalizer().normalize(sentence)
    tokenizer = get_qwen_tokenizer(token_path=str(model_dir / "CosyVoice-BlankEN"), skip_special_tokens=True)
    return len(tokenizer.encode(normalised, allowed_special="all"))


async def test_a_speakers_clip_streams_through_the_worker(cosyvoice_worker, user, settings):
    import torch

    _, model_dir, guard_log = cosyvoice_worker
    settings.VOICE_JOBS_IN_PROCESS = False
    settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT = 300  # a CPU runs the first inference of a fresh model slowly
    settings.VOICE_JOB_IDLE_TIMEOUT = 300
    clip = wav([tone(2.0, 24000)], 24000)
    speaker = await sync_to_async(speaker_create)(
        user=user, name="Anna", prompt_text="This is how I sound.", audio_data=clip
    )
    text = "Hello there. How are you today?"

    messages = [message async for message in jobs.synthesize(text=text, speaker_id=speaker.pk)]

    done = messages[-1]
    assert done["type"] == "voice.tts.done", done
    assert done["engine"] == "cosyvoice2" and done["clones"] is True and done["sample_rate"] == 24000
    chunks = messages[:-1]
    assert chunks and all(m["type"] == "voice.tts.chunk" for m in chunks)
    assert [m["seq"] for m in chunks] == list(range(len(chunks)))  # in order, none lost
    assert {m["sample_rate"] for m in chunks} == {24000}
    parts = [m["part"] for m in chunks]
    assert parts == sorted(parts) and len(set(parts)) >= 4  # several model chunks per sentence, in order
    assert all(len(m["pcm"]) % 2 == 0 for m in chunks)
    pcm = np.frombuffer(b"".join(m["pcm"] for m in chunks), dtype="<i2")
    assert np.abs(pcm.astype(np.int32)).max() > 0
    # Exactly the speech the model made for the two sentences: 20 speech tokens per text token.
    expected_tokens = sum(
        TOKENS_PER_TEXT_TOKEN * text_tokens(model_dir, sentence) for sentence in cv.split_sentences(text)
    )
    assert len(pcm) == done["samples"] == expected_tokens * SAMPLES_PER_TOKEN
    # The worker registered the speaker with upstream and saved it for its next start.
    saved = torch.load(model_dir / "spk2info.pt", map_location="cpu")
    assert [key for key in saved if key.startswith(f"{cv.SPEAKER_ID_PREFIX}{speaker.pk}-")]
    # And it never reached for the network.
    assert not guard_log.exists() or guard_log.read_text() == ""


async def test_a_speakers_clip_reaches_the_voice_socket(cosyvoice_worker, user, async_client, fake_llm, settings):
    """A typed turn on the voice WebSocket, spoken in the user's current speaker's voice by the worker."""
    from magicmirror.asgi import application

    _, model_dir, guard_log = cosyvoice_worker
    settings.VOICE_JOBS_IN_PROCESS = False
    settings.VOICE_TTS_ENGINES = ["cosyvoice2"]  # as the worker has them (the web process only reports them)
    # Whole sentences: upstream's bi-streaming reads more text only when the LLM writes a fill token,
    # which the tiny random model never does (test_text_stream.py steers it there instead).
    settings.VOICE_TTS_TEXT_AS_WRITTEN = False
    settings.VOICE_JOB_FIRST_MESSAGE_TIMEOUT = 300
    settings.VOICE_JOB_IDLE_TIMEOUT = 300
    settings.VOICE_AUDIO_LEAD_SECONDS = 3600.0  # no pacing to real time: frames go out as they arrive
    speaker = await sync_to_async(speaker_create)(
        user=user,
        name="Anna",
        prompt_text="This is how I sound.",
        audio_data=wav([tone(2.0, 24000)], 24000),
        make_current=True,
    )
    reply = "Hello there. How are you today?"
    fake_llm.queue(Reply(reply, tokens_per_s=200), Reply("Greeting"))
    await async_client.aforce_login(user)
    cookie = f"sessionid={async_client.cookies['sessionid'].value}".encode()
    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver"), (b"cookie", cookie)]
    ws = WebsocketCommunicator(application, "/ws/voice/", headers=headers)
    connected, _ = await ws.connect(timeout=10)
    assert connected
    received = []  # what the socket sent after `text`, in order: event dicts and audio frames (bytes)
    try:
        assert await ws.receive_json_from(10) == {"type": "hello", "protocol": 1}
        await ws.send_json_to({"type": "start", "protocol": 1, "voice_output": True})  # no speaker_id: the current one
        ready = await ws.receive_json_from(10)
        assert ready["type"] == "ready" and ready["speaker"] == {"id": speaker.pk, "name": "Anna"}
        await ws.send_json_to({"type": "text", "text": "Say hello"})
        while not received or isinstance(received[-1], bytes) or received[-1]["type"] != "audio_done":
            message = await ws.receive_output(300)  # a CPU runs a fresh model slowly
            assert message["type"] == "websocket.send", (message, received)
            if message.get("bytes") is not None:
                received.append(message["bytes"])
            else:
                received.append(json.loads(message["text"]))
                assert received[-1]["type"] != "error", received[-1]
    finally:
        await ws.disconnect()

    turn_id = next(e["turn_id"] for e in received if isinstance(e, dict) and e["type"] == "turn")
    header = struct.Struct("<III")
    sentences, audio = [], {}  # the `sentence` events; sentence id -> [(seq, pcm)]
    playing = None  # the sentence between its `sentence` and `sentence_end` events
    for item in received:
        if isinstance(item, bytes):
            frame_turn, sentence_id, seq = header.unpack(item[: header.size])
            assert frame_turn == turn_id and sentence_id == playing  # only the sentence announced last
            audio[sentence_id].append((seq, item[header.size :]))
        elif item["type"] == "sentence":
            assert playing is None and item["sentence_id"] == len(sentences)  # one after another, from 0
            sentences.append(item)
            playing = item["sentence_id"]
            audio[playing] = []
        elif item["type"] == "sentence_end":
            assert item["sentence_id"] == playing
            playing = None
    assert playing is None and received[-1] == {"type": "audio_done", "turn_id": turn_id}

    assert [s["text"] for s in sentences] == cv.split_sentences(reply) == ["Hello there.", "How are you today?"]
    max_samples = 24000 * settings.VOICE_TTS_CHUNK_MS // 1000
    for sentence in sentences:
        assert sentence["turn_id"] == turn_id
        assert sentence["sample_rate"] == 24000  # the tiny model's rate, as the real class reports it
        assert (sentence["engine"], sentence["voice"], sentence["clones"]) == ("cosyvoice2", "Anna", True)
        frames = audio[sentence["sentence_id"]]
        assert len(frames) > 1  # streamed: several frames for the sentence
        assert [seq for seq, _ in frames] == list(range(len(frames)))  # in order from 0, none lost
        assert all(len(pcm) % 2 == 0 and 0 < len(pcm) // 2 <= max_samples for _, pcm in frames)
        pcm = np.frombuffer(b"".join(pcm for _, pcm in frames), dtype="<i2")
        assert np.abs(pcm.astype(np.int32)).max() > 0
        # Exactly the speech the model made for this sentence: 20 speech tokens per text token.
        assert len(pcm) == TOKENS_PER_TEXT_TOKEN * text_tokens(model_dir, sentence["text"]) * SAMPLES_PER_TOKEN
        # The worker cuts each piece of model output into frames on its own, so a frame shorter than
        # VOICE_TTS_CHUNK_MS before the last one ends a piece: the sentence came out of the model streamed,
        # in more than one piece (here the first hop of 25 tokens, less the vocoder's cache, then the rest).
        piece_ends = [i for i, (_, pcm) in enumerate(frames[:-1]) if len(pcm) // 2 < max_samples]
        assert piece_ends, [len(pcm) // 2 for _, pcm in frames]
    assert not guard_log.exists() or guard_log.read_text() == ""
