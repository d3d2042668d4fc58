"""A speaker's reference clip through the real CosyVoice2 classes in a real Celery worker, back through
the channel layer (Redis) to the requester, as the voice WebSocket consumer and the TTS routes receive it."""

import numpy as np
import pytest
from asgiref.sync import sync_to_async

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
