"""Replies over the voice WebSocket are spoken by a voice of their own language (issue 14), on both
backends: in-process jobs (embedded) and a real Celery worker (services). On this CPU host the chain
is CosyVoice2 (absent) -> Piper (the bundled English voice; no Mandarin voice can be downloaded here)
-> espeak-ng (Mandarin cmn-latn-pinyin). Real engines throughout; the LLM is the fake server."""

import shutil
import subprocess

import pytest
from prometheus_client import REGISTRY

from devtools.fake_llm import Reply
from voice.tts import registry

from .test_consumer import application, events_until, ws  # noqa: F401 - the fixtures of the socket tests

pytestmark = pytest.mark.django_db(transaction=True)

ZH = ("今天天气很好。", "我们去公园散步吧。")
EN = ("The weather is lovely today.", "Let us take a walk in the park.")
MANDARIN = ("espeak-ng", "cmn-latn-pinyin", "zh")
ENGLISH = ("piper", "en_US-joe-medium", "en")


@pytest.fixture(autouse=True)
def cpu_chain(request, settings, monkeypatch, tmp_path):
    """The default chain, with no downloaded model: in this process (embedded), or in the worker,
    whose settings are the defaults with an empty MODELS_DIR (services)."""
    monkeypatch.setattr(registry, "_engines", {})
    monkeypatch.setattr(registry, "_failures", {})
    settings.VOICE_TTS_ENGINES = ["cosyvoice2", "piper", "espeak-ng"]
    settings.PIPER_VOICES = {"zh": "zh_CN-huayan-medium", "en": "en_US-joe-medium"}
    settings.MODELS_DIR = tmp_path / "no-models"
    settings.COSYVOICE_MODEL_DIR = str(tmp_path / "no-models" / "CosyVoice2-0.5B")
    if not settings.VOICE_JOBS_IN_PROCESS:
        request.getfixturevalue("celery_worker_process")


def phonemes(text: str) -> str:
    command = [shutil.which("espeak-ng"), "-v", "cmn-latn-pinyin", "-x", "-q", text]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


def jobs_started(kind: str) -> float:
    return REGISTRY.get_sample_value("mm_voice_jobs_total", {"kind": kind}) or 0.0


async def spoken(ws, fake_llm, reply: str):  # noqa: F811
    """The sentences of the reply as spoken: text, (engine, voice, language). One synthesis stream
    speaks all of them, whichever engines it takes."""
    streams, one_offs = jobs_started("tts_stream"), jobs_started("tts")
    fake_llm.queue(Reply(reply, tokens_per_s=400), Reply("标题"))
    await ws.send_json_to({"type": "start", "protocol": 1, "voice_output": True})
    assert (await ws.receive_json_from(10))["type"] == "ready"
    await ws.send_json_to({"type": "text", "text": "说吧"})
    events, frames = await events_until(ws, "audio_done", timeout=90)
    assert frames, "no audio"
    assert not [e for e in events if e["type"] in ("error", "notice")]
    sentences = [e for e in events if e["type"] == "sentence"]
    assert (jobs_started("tts_stream") - streams, jobs_started("tts") - one_offs) == (1, 0)
    return [(e["text"], (e.get("engine"), e.get("voice"), e.get("language"))) for e in sentences]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("".join(ZH), [(ZH[0], MANDARIN), (ZH[1], MANDARIN)]),
        (" ".join(EN), [(EN[0], ENGLISH), (EN[1], ENGLISH)]),
        (f"{ZH[0]}{EN[0]} {ZH[1]}", [(ZH[0], MANDARIN), (EN[0], ENGLISH), (ZH[1], MANDARIN)]),
    ],
    ids=["chinese", "english", "mixed"],
)
async def test_each_sentence_is_spoken_in_its_own_language(ws, fake_llm, reply, expected):  # noqa: F811
    sentences = await spoken(ws, fake_llm, reply)
    assert sentences == expected
    for text, (engine, _voice, _language) in sentences:
        if engine == "espeak-ng":
            assert "(en)" not in phonemes(text)  # Mandarin phonemes, no switch to English letter names
