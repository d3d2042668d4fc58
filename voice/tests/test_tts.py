"""TTS engines (real Piper and espeak-ng), the engine registry, and the synthesis service."""

import numpy as np
import pytest

from voice.jobs import runners, sending
from voice.tts import TTSEngine, TTSError, get_tts_engine, registry
from voice.tts.espeak import EspeakEngine

SENTENCE = "The quick brown fox jumps over the lazy dog."


def rms(pcm: bytes) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0


def seconds(pcm: bytes, rate: int) -> float:
    return len(pcm) / 2 / rate


@pytest.fixture
def engines(monkeypatch):
    """The registry's state, restored after the test (loaded engines are kept: loading is slow)."""
    monkeypatch.setattr(registry, "_engines", dict(registry._engines))
    monkeypatch.setattr(registry, "_failures", {})
    return registry._engines


class FakeEngine(TTSEngine):
    """Yields the given PCM pieces; optionally fails after them."""

    name = "fake"
    sample_rate = 22050
    languages = frozenset({"zh", "en", "ja", "ko"})

    def __init__(self, pieces=(), error=None):
        self.pieces, self.error, self.produced = list(pieces), error, 0

    def default_voice_name(self, language=None):
        return "fake-voice"

    def stream(self, text, voice=None, language=None):
        for piece in self.pieces:
            self.produced += 1
            yield piece
        if self.error is not None:
            raise self.error


def run_tts(**kwargs) -> list[dict]:
    sent = []
    runners.tts_run(send=sent.append, job_id="job-1", **kwargs)
    return sent


# -- real engines ----------------------------------------------------------------------------
def test_piper_speaks_english_at_22050_hz():
    engine = get_tts_engine("piper")
    assert engine.name == "piper" and engine.sample_rate == 22050
    pcm = b"".join(engine.stream(SENTENCE))
    # Nine words: about two to three seconds of speech, clearly not silence.
    assert 1.2 < seconds(pcm, 22050) < 6.0
    assert rms(pcm) > 1000
    assert len(pcm) % 2 == 0


def test_piper_synthesises_sentence_by_sentence_as_asked(monkeypatch):
    engine = get_tts_engine("piper")
    inferences = []
    infer = engine._voices["en"].phoneme_ids_to_audio  # one ONNX run per sentence

    def counting(*args, **kwargs):
        inferences.append(1)
        return infer(*args, **kwargs)

    monkeypatch.setattr(engine._voices["en"], "phoneme_ids_to_audio", counting)
    stream = engine.stream("One sentence here. Then a second one. And a third.")
    first = next(stream)
    assert len(inferences) == 1  # the later sentences are not synthesised yet
    assert rms(first) > 1000 and 0.3 < seconds(first, 22050) < 3.0
    rest = list(stream)
    assert len(rest) == 2 and len(inferences) == 3


@pytest.mark.parametrize(("voice", "text"), [("en-us", SENTENCE), ("cmn", "今天天气很好，我们去公园散步吧。")])
def test_espeak_speaks_at_its_real_rate(voice, text):
    engine = EspeakEngine(voice)
    assert engine.sample_rate == 22050
    pieces = list(engine.stream(text))
    pcm = b"".join(pieces)
    assert all(len(p) % 2 == 0 for p in pieces)
    assert 1.0 < seconds(pcm, 22050) < 8.0
    assert rms(pcm) > 1000


def test_espeak_unknown_voice_is_refused_at_load():
    with pytest.raises(TTSError) as info:
        EspeakEngine("nosuchvoice")
    assert info.value.code == "tts_engine_missing"


def test_empty_text_gives_no_audio():
    assert list(get_tts_engine("piper").stream("   ")) == []
    assert list(EspeakEngine("en-us").stream("")) == []


# -- registry --------------------------------------------------------------------------------
def test_unknown_engine_name(engines):
    with pytest.raises(TTSError) as info:
        get_tts_engine("no-such-engine")
    assert info.value.code == "tts_engine_unknown"


def test_chain_skips_engines_that_do_not_load(engines, settings):
    engines.pop("default", None)
    settings.VOICE_TTS_ENGINES = ["no-such-engine", "espeak"]
    settings.ESPEAK_VOICES = {"en": "en-us"}
    engines.pop("espeak-ng", None)
    engine = get_tts_engine()
    assert engine.name == "espeak-ng"
    assert get_tts_engine() is engine  # the choice is kept
    assert get_tts_engine("espeak") is engine  # the alias names the same engine


def test_chain_with_nothing_loadable(engines, settings):
    engines.pop("default", None)
    settings.VOICE_TTS_ENGINES = ["no-such-engine"]
    with pytest.raises(TTSError) as info:
        get_tts_engine()
    assert info.value.code == "tts_engine_missing"
    assert "no-such-engine" in str(info.value)


def test_an_engine_that_crashes_while_loading_falls_through(engines, settings, monkeypatch):
    engines.pop("default", None)
    settings.VOICE_TTS_ENGINES = ["piper", "espeak-ng"]
    engines.pop("piper", None)
    engines["espeak-ng"] = FakeEngine()
    calls = []

    def broken(name):
        calls.append(name)
        raise RuntimeError("corrupt model file")

    monkeypatch.setattr(registry, "_build", broken)
    assert get_tts_engine() is engines["espeak-ng"]
    with pytest.raises(TTSError) as info:
        get_tts_engine("piper")
    assert info.value.code == "tts_engine_failed"
    assert calls == ["piper"]  # the failure is remembered, not retried on every call


# -- the synthesis service: chunking, order, messages -----------------------------------------
def test_chunks_are_split_to_the_configured_length_in_order(engines, settings):
    settings.VOICE_TTS_CHUNK_MS = 200  # 4410 samples = 8820 bytes at 22050 Hz
    engines["fake"] = FakeEngine([b"\1\0" * 5000, b"\2\0" * 1500])
    sent = run_tts(text="Hello.", engine_name="fake")
    chunks = [m for m in sent if m["type"] == "voice.tts.chunk"]
    assert [len(c["pcm"]) for c in chunks] == [8820, 1180, 3000]  # never across engine output
    assert [c["seq"] for c in chunks] == [0, 1, 2]
    assert [c["part"] for c in chunks] == [0, 0, 1]
    assert chunks[0]["produced"] == chunks[1]["produced"] <= chunks[2]["produced"]
    assert b"".join(c["pcm"] for c in chunks) == b"\1\0" * 5000 + b"\2\0" * 1500
    assert all(c["job_id"] == "job-1" and c["sample_rate"] == 22050 for c in chunks)
    assert (chunks[0]["engine"], chunks[0]["voice"], chunks[0]["clones"]) == ("fake", "fake-voice", False)
    done = sent[-1]
    assert done["type"] == "voice.tts.done" and done["chunks"] == 3
    assert done["samples"] == 6500 and done["duration"] == pytest.approx(6500 / 22050)
    assert [m["t"] for m in sent] == sorted(m["t"] for m in sent)


def test_an_engine_may_return_a_plain_list(engines):
    class ListEngine(FakeEngine):
        def stream(self, text, voice=None, language=None):
            return [b"\1\0" * 10, b"\2\0" * 10]

    engines["list"] = ListEngine()
    sent = run_tts(text="Hello.", engine_name="list")
    assert [m["type"] for m in sent] == ["voice.tts.chunk", "voice.tts.chunk", "voice.tts.done"]


def test_real_piper_chunks_respect_the_limit(settings):
    settings.VOICE_TTS_CHUNK_MS = 50
    sent = run_tts(text="Hello there. How are you today?", engine_name="piper")
    chunks = [m for m in sent if m["type"] == "voice.tts.chunk"]
    assert len(chunks) > 10
    assert all(0 < len(c["pcm"]) <= 2204 and len(c["pcm"]) % 2 == 0 for c in chunks)
    assert [c["seq"] for c in chunks] == list(range(len(chunks)))
    assert sent[-1]["type"] == "voice.tts.done" and sent[-1]["engine"] == "piper"
    assert rms(b"".join(c["pcm"] for c in chunks)) > 1000


@pytest.mark.parametrize(
    ("text", "code"), [("", "tts_empty_text"), ("   \n", "tts_empty_text"), ("x" * 1001, "tts_text_too_long")]
)
def test_bad_text_is_one_error(text, code, settings):
    settings.TTS_MAX_CHARS = 1000
    sent = run_tts(text=text)
    assert [(m["type"], m["code"]) for m in sent] == [("voice.tts.error", code)]


def test_unknown_engine_is_an_error_message(engines):
    sent = run_tts(text="Hello.", engine_name="no-such-engine")
    assert [(m["type"], m["code"]) for m in sent] == [("voice.tts.error", "tts_engine_unknown")]


@pytest.mark.django_db
def test_unknown_speaker_is_an_error_message(engines):
    engines["fake"] = FakeEngine([b"\0\0" * 100])
    sent = run_tts(text="Hello.", engine_name="fake", speaker_id=987654)
    assert [(m["type"], m["code"]) for m in sent] == [("voice.tts.error", "speaker_not_found")]


def test_engine_failure_mid_stream_ends_with_an_error(engines):
    engines["fake"] = FakeEngine([b"\0\0" * 100], error=RuntimeError("boom"))
    sent = run_tts(text="Hello.", engine_name="fake")
    assert [m["type"] for m in sent] == ["voice.tts.chunk", "voice.tts.error"]
    assert sent[-1]["code"] == "tts_failed" and "boom" not in sent[-1]["message"]


def test_cancelled_job_stops_producing(engines):
    engine = engines["fake"] = FakeEngine([b"\0\0" * 100] * 5)
    sent = []
    runners.tts_run(send=sent.append, job_id="j", text="Hi.", engine_name="fake", cancelled=lambda: bool(sent))
    assert [m["type"] for m in sent] == ["voice.tts.chunk"]  # no done: nobody is listening
    assert engine.produced == 1


def test_requester_gone_stops_quietly(engines):
    engine = engines["fake"] = FakeEngine([b"\0\0" * 100] * 5)

    def send(message):
        raise sending.RequesterGone("gone")

    runners.tts_run(send=send, job_id="j", text="Hi.", engine_name="fake")  # no exception
    assert engine.produced == 1


def test_patient_sender_waits_for_room_then_gives_up():
    from channels.exceptions import ChannelFull

    attempts = []

    def full_twice(message):
        attempts.append(message)
        if len(attempts) <= 2:
            raise ChannelFull()

    sending.patient(full_twice, timeout=5)({"n": 1})
    assert len(attempts) == 3

    def always_full(message):
        raise ChannelFull()

    with pytest.raises(sending.RequesterGone):
        sending.patient(always_full, timeout=0.05)({"n": 1})


def test_silence_engine_for_benchmarks_is_instant_and_silent():
    from voice.tts.registry import get_tts_engine

    engine = get_tts_engine("silence")
    chunks = list(engine.stream("Hello."))
    assert len(chunks) == 1 and set(chunks[0]) == {0} and len(chunks[0]) == 2 * engine.sample_rate // 10
    assert list(engine.stream("   ")) == []


def test_an_engine_failing_at_warm_up_gives_way_to_the_next(settings, monkeypatch):
    """CosyVoice2 loads its model lazily: a GPU failure at worker start must not leave the chain stuck."""
    from voice.jobs import worker
    from voice.tts import registry
    from voice.tts.base import TTSEngine

    class LoadsLazilyThenFails(TTSEngine):
        name = "cosyvoice2"

        def default_voice_name(self, language=None):
            return "x"

        def stream(self, text, voice=None, language=None):
            yield b""

        def warm_up(self):
            raise RuntimeError("CUDA error: out of memory")

    real_build = registry._build
    monkeypatch.setattr(
        registry, "_build", lambda name: LoadsLazilyThenFails() if name == "cosyvoice2" else real_build(name)
    )
    registry.reset()
    settings.VOICE_TTS_ENGINES = ["cosyvoice2", "piper"]
    try:
        loaded = worker.preload_engines(["tts"])
        assert loaded["tts"]["engine"] == "piper"
        assert registry.get_tts_engine().name == "piper"
        with pytest.raises(registry.TTSError):
            registry.get_tts_engine("cosyvoice2")
    finally:
        registry.reset()
