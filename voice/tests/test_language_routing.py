"""Each sentence goes to the first engine of the chain that speaks its language (issue 14).

On this CPU host the chain is CosyVoice2 (absent) -> Piper (the bundled English voice only: no Piper
Mandarin voice can be downloaded here) -> espeak-ng (a voice per language, Mandarin cmn-latn-pinyin).
Real engines throughout; what reaches an engine is recorded by wrapping its `stream`.
"""

import io
import shutil
import subprocess
import wave

import pytest
from django.core.management import call_command

from voice.jobs import messages, runners
from voice.tts import registry

from .test_tts import FakeEngine, rms
from .test_tts_api import api, post  # noqa: F401 - the fixture and the helper of the TTS route tests

ZH = "今天天气很好，我们去公园散步吧。"
EN = "The weather is lovely today."


@pytest.fixture
def chain(settings, monkeypatch):
    """The default chain on this host, with what each engine is given recorded."""
    monkeypatch.setattr(registry, "_engines", {})
    monkeypatch.setattr(registry, "_failures", {})
    settings.VOICE_TTS_ENGINES = ["cosyvoice2", "piper", "espeak-ng"]
    settings.PIPER_VOICES = {"zh": "zh_CN-huayan-medium", "en": "en_US-joe-medium"}  # zh absent here
    settings.MODELS_DIR = settings.MODELS_DIR / "absent-for-this-test"
    heard: list[tuple[str, str, str]] = []
    for name in ("piper", "espeak-ng"):
        engine = registry.get_tts_engine(name)
        real = engine.stream

        def recording(text, voice=None, language=None, _real=real, _name=name):
            heard.append((_name, language, text))
            yield from _real(text, voice, language)

        monkeypatch.setattr(engine, "stream", recording)
    return heard


def run(text, **kwargs) -> list[dict]:
    sent: list[dict] = []
    runners.tts_run(send=sent.append, job_id="job-1", text=text, **kwargs)
    return sent


def firsts(sent):
    return [m for m in sent if m["type"] == messages.TTS_CHUNK and "engine" in m]


def phonemes(voice: str, text: str) -> str:
    return subprocess.run(
        [shutil.which("espeak-ng"), "-v", voice, "-x", "-q", text], capture_output=True, text=True, check=True
    ).stdout


def test_engines_declare_their_languages(chain):
    assert registry.get_tts_engine("piper").languages == {"en"}
    espeak = registry.get_tts_engine("espeak-ng")
    assert {"zh", "en", "ko"} <= espeak.languages and espeak.default_voice_name("zh") == "cmn-latn-pinyin"
    from voice.tts.cosyvoice2 import CosyVoice2Engine

    assert CosyVoice2Engine.languages == {"zh", "en", "ja", "ko", "yue"} and CosyVoice2Engine.reads_numbers


def test_a_chinese_reply_is_spoken_by_mandarin_espeak_without_english_letters(chain):
    sent = run(ZH + "气温是25℃。")
    done = sent[-1]
    assert done["type"] == messages.TTS_DONE and done["samples"] > 22050
    assert [(m["engine"], m["voice"], m["language"]) for m in firsts(sent)] == [("espeak-ng", "cmn-latn-pinyin", "zh")]
    assert [h[:2] for h in chain] == [("espeak-ng", "zh")]
    text = chain[0][2]
    assert "二十五摄氏度" in text and not any(c.isdigit() for c in text)  # numbers as Chinese words
    assert "(en)" not in phonemes("cmn-latn-pinyin", text)  # no switch to English letter names
    assert "(en)" in phonemes("cmn", text)  # what the old voice did (the check can fail)


def test_an_english_reply_is_spoken_by_piper(chain):
    sent = run(EN + " It is 25% warmer.")
    assert [(m["engine"], m["voice"], m["language"]) for m in firsts(sent)] == [("piper", "en_US-joe-medium", "en")]
    assert chain == [("piper", "en", "The weather is lovely today.\nIt is twenty-five percent warmer.")]


def test_a_mixed_reply_is_spoken_sentence_by_sentence(chain):
    sent = run(f"{EN} {ZH} {EN}")
    assert [(m["engine"], m["language"]) for m in firsts(sent)] == [
        ("piper", "en"),
        ("espeak-ng", "zh"),
        ("piper", "en"),
    ]
    assert [h[:2] for h in chain] == [("piper", "en"), ("espeak-ng", "zh"), ("piper", "en")]
    assert {m["sample_rate"] for m in sent if m["type"] == messages.TTS_CHUNK} == {22050}
    assert [p["engine"] for p in sent[-1]["spoken"]] == ["piper", "espeak-ng", "piper"]


def test_a_sentence_no_engine_speaks_is_not_spoken(chain, settings):
    settings.VOICE_TTS_ENGINES = ["piper"]  # English only
    sent = run(f"{ZH} {EN}")
    assert [h[:2] for h in chain] == [("piper", "en")]  # never the Chinese text by the English voice
    assert sent[-1]["unspoken"] == [{"text": ZH, "language": "zh"}]


def test_an_engine_with_its_own_frontend_gets_the_numbers_as_written(chain, monkeypatch):
    class Frontend(FakeEngine):
        reads_numbers = True

        def stream(self, text, voice=None, language=None):
            got.append(text)
            yield from super().stream(text, voice)

    got: list[str] = []
    monkeypatch.setitem(registry._engines, "default", Frontend([b"\1\0" * 100]))
    run("**会议**在2024年3月5日14:30开始。")
    assert got == ["会议在2024年3月5日14:30开始。"]  # markdown gone, numbers left to the engine


@pytest.mark.django_db(transaction=True)
async def test_the_tts_route_says_who_spoke_each_language(chain, api, settings):  # noqa: F811
    settings.VOICE_JOBS_IN_PROCESS = True
    response = await post(api, "/api/tts", {"text": f"{ZH} {EN}"})
    assert response.status_code == 200, response.content[:300]
    assert response["X-TTS-Engine"] == "espeak-ng" and response["X-TTS-Language"] == "zh"
    assert response["X-TTS-Voices"] == "zh=espeak-ng/cmn-latn-pinyin, en=piper/en_US-joe-medium"
    with wave.open(io.BytesIO(response.content)) as w:
        assert rms(w.readframes(w.getnframes())) > 500


@pytest.mark.django_db
def test_synthesize_speaks_chinese_with_mandarin_espeak(chain, tmp_path, settings):
    settings.VOICE_JOBS_IN_PROCESS = True
    out = io.StringIO()
    call_command(
        "synthesize", "你好，今天天气怎么样？我们去公园散步吧。", "--out", str(tmp_path / "zh.wav"), stdout=out
    )
    assert "engine: espeak-ng" in out.getvalue() and "voice: cmn-latn-pinyin" in out.getvalue()
    assert "language: zh" in out.getvalue() and "en_US" not in out.getvalue()


@pytest.mark.django_db
def test_i_speak_is_a_preference_that_chooses_the_recognition_model(client, user, settings):
    from django.urls import reverse

    from speakers.selectors import user_settings_get
    from voice.asr.registry import model_choice

    client.force_login(user)
    url = reverse("api-settings")
    assert client.get(url).json()["spoken_language"] == ""  # the interface language
    response = client.patch(url, {"spoken_language": "en"}, content_type="application/json")
    assert response.status_code == 200 and response.json()["spoken_language"] == "en"
    assert user_settings_get(user=user).spoken_language == "en"
    bad = client.patch(url, {"spoken_language": "xx"}, content_type="application/json")
    assert bad.status_code == 400 and "error" in bad.json()
    # No English or Chinese model on this host: the Korean fallback, said plainly.
    settings.VOSK_MODELS = {"zh": "/nonexistent/zh", "en": "/nonexistent/en"}
    choice = model_choice("en")
    assert choice.fallback and choice.recognises == "ko" and choice.as_dict()["language"] == "en"


def test_the_worker_warms_the_engine_of_every_configured_language(chain):
    from voice.jobs import worker

    loaded = worker.preload_engines(["tts"])
    assert loaded["tts"]["engine"] == "piper"  # the chain's first that loads
    assert loaded["tts"]["by_language"] == {"zh": "espeak-ng", "en": "piper"}
    warmed = [(name, text) for name, _language, text in chain]
    assert ("piper", "Hello.") in warmed and ("espeak-ng", "Hello.") in warmed  # each warmed once
    assert len(warmed) == 2
