"""CosyVoice2 engine against a stand-in that honours the official CosyVoice2 API (voice/tests/cosyvoice_standin.py)."""

import importlib
import pickle
import sys
import threading

import numpy as np
import pytest

from voice.tts import cosyvoice2 as cv
from voice.tts.base import TTSError, VoiceRef
from voice.tts.cosyvoice2 import CosyVoice2Engine

from .cosyvoice_standin import (
    SAMPLES_PER_TOKEN,
    CosyVoice2NoVllmStandIn,
    CosyVoice2StandIn,
    CosyVoice2TensorPromptStandIn,
    FakeTensor,
)

SENTENCE = "Hello there, this is a test."  # one sentence: 112 stand-in tokens, three streamed chunks
FIRST_HOP_SAMPLES = 25 * SAMPLES_PER_TOKEN


def no_cuda():
    return False


def with_cuda():
    return True


@pytest.fixture
def make_voice(tmp_path, wav_bytes):
    def make(speaker_id=7, version="v1", seconds=2.0, rate=24000, name="Grandma", write=True):
        audio = tmp_path / f"speaker-{speaker_id}-{version}.wav"
        if write:
            audio.write_bytes(wav_bytes(seconds, rate))
        return VoiceRef(
            speaker_id=speaker_id,
            name=name,
            prompt_text="This is how I sound  when I read aloud.",
            audio_path=str(audio),
            version=version,
        )

    return make


def engine_for(model_dir, standin=None, **kwargs):
    kwargs.setdefault("cuda_available", no_cuda)
    return CosyVoice2Engine(model_dir, cosyvoice_cls=standin or CosyVoice2StandIn.fresh(), **kwargs)


def pcm_of(chunk) -> bytes:
    return np.rint(np.clip(np.asarray(chunk, dtype=np.float32).reshape(-1), -1, 1) * 32767).astype("<i2").tobytes()


# --- streaming and chunk conversion -------------------------------------------------------------------
def test_stream_yields_one_pcm16_chunk_per_tts_speech_item(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    chunks = list(engine.stream(SENTENCE, make_voice()))

    (call,) = standin.calls.inference
    assert call["stream"] is True and call["tts_text"] == SENTENCE
    assert call["prompt_text"] == "" and call["prompt_wav"] == ""
    assert call["zero_shot_spk_id"] == "mm-spk-7-v1"
    assert len(chunks) == len(call["chunks"]) == 3
    assert chunks == [pcm_of(c) for c in call["chunks"]]
    assert engine.sample_rate == 24000
    for chunk, source in zip(chunks, call["chunks"], strict=True):
        samples = np.frombuffer(chunk, dtype="<i2")
        assert len(samples) == source.shape[1]
        assert np.abs(samples.astype(np.int32) - source.reshape(-1) * 32767).max() <= 0.5
    assert sum(len(c) for c in chunks) // 2 == sum(call["chunk_tokens"]) * SAMPLES_PER_TOKEN


def test_chunk_conversion_clips_rounds_and_is_little_endian():
    pcm = cv.speech_to_pcm16(np.array([[0.0, 0.5, -0.5, 1.0, -1.0, 1.5, -2.0, np.nan]], dtype=np.float32))
    assert np.frombuffer(pcm, dtype="<i2").tolist() == [0, 16384, -16384, 32767, -32767, 32767, -32767, 0]
    assert pcm[2:4] == (16384).to_bytes(2, "little", signed=True)
    assert cv.speech_to_pcm16(FakeTensor(np.array([[0.25]], dtype=np.float64))) == (8192).to_bytes(2, "little")


def test_torch_like_tensors_and_clipping_through_the_engine(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh(tensor_type=FakeTensor, amplitude=1.5)
    chunks = list(engine_for(model_dir, standin).stream(SENTENCE, make_voice()))
    samples = np.frombuffer(b"".join(chunks), dtype="<i2")
    assert len(chunks) == len(standin.calls.inference[0]["chunks"])
    assert samples.max() == 32767 and samples.min() == -32767


def test_split_sentences():
    assert cv.split_sentences("Good morning to you. How did you sleep last night? Fine.") == [
        "Good morning to you.",
        "How did you sleep last night? Fine.",
    ]
    assert cv.split_sentences("Hi. Nice to see you again!") == ["Hi. Nice to see you again!"]
    assert cv.split_sentences("It costs 3.50 dollars today.\nSee you soon") == [
        "It costs 3.50 dollars today.",
        "See you soon",
    ]
    assert cv.split_sentences("今天天气很好，阳光明媚。我们一起去公园散步吧，好不好？对。") == [
        "今天天气很好，阳光明媚。",
        "我们一起去公园散步吧，好不好？对。",
    ]
    assert cv.split_sentences("   ") == []


def test_several_sentences_make_several_calls(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    text = "Good morning to you. How did you sleep last night? Fine."
    chunks = list(engine.stream(text, make_voice()))
    assert [c["tts_text"] for c in standin.calls.inference] == [
        "Good morning to you.",
        "How did you sleep last night? Fine.",
    ]
    assert len(chunks) == sum(len(c["chunks"]) for c in standin.calls.inference)
    assert len(standin.calls.add_zero_shot_spk) == 1


def test_empty_text_loads_nothing(model_dir):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    assert list(engine.stream("  ")) == []
    assert standin.calls.init == [] and not engine.loaded


# --- speakers: registration, persistence, versions -----------------------------------------------------
def test_speaker_registered_once_and_persisted(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    voice = make_voice()
    list(engine.stream(SENTENCE, voice))
    list(engine.stream(SENTENCE, voice))

    (added,) = standin.calls.add_zero_shot_spk
    assert added["zero_shot_spk_id"] == "mm-spk-7-v1"
    assert added["prompt"] == voice.audio_path  # current API: a path
    assert added["prompt_text"] == "This is how I sound when I read aloud."  # normalised as upstream does
    assert standin.calls.save_spkinfo == 1
    saved = pickle.loads((model_dir / "spk2info.pt").read_bytes())  # noqa: S301 - written by the stand-in
    assert list(saved) == ["mm-spk-7-v1"]
    assert [c["zero_shot_spk_id"] for c in standin.calls.inference] == ["mm-spk-7-v1"] * 2


def test_new_engine_on_same_model_dir_reuses_saved_speakers(model_dir, make_voice):
    voice = make_voice()
    first = CosyVoice2StandIn.fresh()
    list(engine_for(model_dir, first).stream(SENTENCE, voice))
    assert len(first.calls.add_zero_shot_spk) == 1

    restarted = CosyVoice2StandIn.fresh()  # a worker restart: new process, new model object
    engine = engine_for(model_dir, restarted)
    chunks = list(engine.stream(SENTENCE, voice))
    assert chunks
    assert restarted.calls.add_zero_shot_spk == [] and restarted.calls.save_spkinfo == 0
    assert restarted.calls.init[0]["model_dir"] == str(model_dir)
    assert restarted.calls.inference[0]["zero_shot_spk_id"] == "mm-spk-7-v1"


def test_changed_version_registers_again_and_drops_the_old_entry(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    list(engine.stream(SENTENCE, make_voice(version="v1")))
    list(engine.stream(SENTENCE, make_voice(version="v2")))
    list(engine.stream(SENTENCE, make_voice(speaker_id=8, version="v1")))

    assert [a["zero_shot_spk_id"] for a in standin.calls.add_zero_shot_spk] == [
        "mm-spk-7-v1",
        "mm-spk-7-v2",
        "mm-spk-8-v1",
    ]
    assert standin.calls.save_spkinfo == 3
    saved = pickle.loads((model_dir / "spk2info.pt").read_bytes())  # noqa: S301 - written by the stand-in
    assert sorted(saved) == ["mm-spk-7-v2", "mm-spk-8-v1"]


def test_speaker_cache_id_is_stable_and_safe():
    voice = VoiceRef(3, "A", "text", "/x.wav", "ab/c d")
    assert cv.speaker_cache_id(voice) == "mm-spk-3-ab_c_d"
    assert cv.speaker_cache_id(voice) == cv.speaker_cache_id(VoiceRef(3, "B", "other", "/y.wav", "ab/c d"))


def test_older_api_gets_a_16k_float_prompt(model_dir, make_voice):
    standin = CosyVoice2TensorPromptStandIn.fresh()
    engine = engine_for(model_dir, standin)
    voice = make_voice(seconds=2.0, rate=24000)
    chunks = list(engine.stream(SENTENCE, voice))

    (added,) = standin.calls.add_zero_shot_spk
    prompt = added["prompt"]
    assert isinstance(prompt, np.ndarray)  # torch is absent here; a torch tensor where it is installed
    assert prompt.dtype == np.float32 and prompt.shape == (1, 32000)
    assert 0.35 < np.abs(prompt).max() <= 0.41  # the 0.4 tone, resampled 24 kHz -> 16 kHz
    assert standin.calls.inference[0]["zero_shot_spk_id"] == "mm-spk-7-v1"
    assert len(chunks) == 3


def test_prompt_form_detection():
    assert cv.prompt_form(CosyVoice2StandIn.__new__(CosyVoice2StandIn)) == cv.PROMPT_PATH
    assert cv.prompt_form(CosyVoice2TensorPromptStandIn.__new__(CosyVoice2TensorPromptStandIn)) == cv.PROMPT_TENSOR_16K


def test_missing_speaker_audio_is_a_clear_error(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE, make_voice(write=False, name="Grandpa")))
    assert excinfo.value.code == "speaker_audio_missing"
    assert "Grandpa" in str(excinfo.value) and "missing" in str(excinfo.value)
    assert standin.calls.add_zero_shot_spk == [] and standin.calls.inference == []
    list(engine.stream(SENTENCE, make_voice()))  # the lock was released
    assert len(standin.calls.inference) == 1


def test_prompt_that_upstream_refuses_is_speaker_audio_invalid(model_dir, make_voice):
    engine = engine_for(model_dir)
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE, make_voice(rate=8000)))
    assert excinfo.value.code == "speaker_audio_invalid"


# --- no speaker: default prompt ------------------------------------------------------------------------
def test_no_speaker_and_no_default_prompt(model_dir):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE))
    assert excinfo.value.code == "no_speaker"
    assert "COSYVOICE_DEFAULT_PROMPT_WAV" in str(excinfo.value)
    assert engine.voice_info(None).clones is False


def test_default_prompt_from_settings(settings, model_dir, tmp_path, wav_bytes):
    default_wav = tmp_path / "default.wav"
    default_wav.write_bytes(wav_bytes(3.0, 24000))
    settings.COSYVOICE_MODEL_DIR = str(model_dir)
    settings.COSYVOICE_DEFAULT_PROMPT_WAV = str(default_wav)
    settings.COSYVOICE_DEFAULT_PROMPT_TEXT = "Hello, this is the default voice of the mirror."
    standin = CosyVoice2StandIn.fresh()
    engine = CosyVoice2Engine.from_settings(cosyvoice_cls=standin, cuda_available=no_cuda)

    assert list(engine.stream(SENTENCE)) and list(engine.stream(SENTENCE))
    (added,) = standin.calls.add_zero_shot_spk
    assert added["zero_shot_spk_id"].startswith("mm-default-")
    assert added["prompt"] == str(default_wav.resolve())
    assert added["prompt_text"] == settings.COSYVOICE_DEFAULT_PROMPT_TEXT
    assert engine.default_voice_name() == "default prompt (default)"


def test_default_prompt_without_transcript(model_dir, tmp_path, wav_bytes):
    default_wav = tmp_path / "default.wav"
    default_wav.write_bytes(wav_bytes(1.0, 24000))
    engine = engine_for(model_dir, default_prompt_wav=str(default_wav))
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE))
    assert excinfo.value.code == "no_speaker" and "COSYVOICE_DEFAULT_PROMPT_TEXT" in str(excinfo.value)


# --- the token_hop_len guard and serialisation ---------------------------------------------------------
def test_standin_reproduces_the_upstream_hop_len_bug(model_dir, make_voice):
    """Without the guard, the first chunk grows from call to call (what the engine must prevent)."""
    standin = CosyVoice2StandIn.fresh()
    model = standin(str(model_dir))
    model.add_zero_shot_spk("prompt", make_voice().audio_path, "s")
    firsts = []
    for _ in range(3):
        items = list(model.inference_zero_shot(SENTENCE, "", "", "s", stream=True))  # consumed to the end
        firsts.append(items[0]["tts_speech"].shape[1])
    # 25 tokens first; from the second call on the hop is 100 (+ prompt padding) and this sentence
    # (112 tokens) is no longer streamed at all: it comes as one chunk.
    assert firsts == [FIRST_HOP_SAMPLES, 112 * SAMPLES_PER_TOKEN, 112 * SAMPLES_PER_TOKEN]


def test_first_chunk_size_constant_over_calls(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    voice = make_voice()
    first_sizes = []
    for _ in range(4):
        chunks = list(engine.stream(SENTENCE, voice))
        first_sizes.append(len(chunks[0]) // 2)
    assert first_sizes == [FIRST_HOP_SAMPLES] * 4
    assert [c["hop_len_at_start"] for c in standin.calls.inference] == [25] * 4
    assert [c["chunk_tokens"][:2] for c in standin.calls.inference] == [[25, 50]] * 4  # growth within a call
    model = engine._model
    assert model.model.token_hop_len == 25  # set back after the call too


def test_concurrent_streams_never_run_inference_at_once(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    voices = [make_voice(speaker_id=i) for i in range(4)]
    results, errors = {}, []

    def speak(voice):
        try:
            results[voice.speaker_id] = list(engine.stream(f"{SENTENCE} And then, a second sentence.", voice))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=speak, args=(v,)) for v in voices]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and len(results) == 4
    assert standin.calls.max_active == 1
    assert len(standin.calls.init) == 1  # loaded once
    assert len(standin.calls.inference) == 8
    assert all(c["hop_len_at_start"] == 25 for c in standin.calls.inference)
    assert {len(r[0]) // 2 for r in results.values()} == {FIRST_HOP_SAMPLES}


def test_closing_a_stream_early_releases_the_model(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin)
    voice = make_voice()
    stream = engine.stream(SENTENCE, voice)
    assert len(next(stream)) // 2 == FIRST_HOP_SAMPLES
    stream.close()
    assert standin.calls.closed_early == 1 and standin.calls.active == 0
    chunks = list(engine.stream(SENTENCE, voice))  # would block if the lock were still held
    assert len(chunks[0]) // 2 == FIRST_HOP_SAMPLES


def test_synthesis_failure_is_tts_failed(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh(fail_inference=True)
    engine = engine_for(model_dir, standin)
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE, make_voice()))
    assert excinfo.value.code == "tts_failed" and "out of memory" in str(excinfo.value)


# --- lazy loading and warm-up -------------------------------------------------------------------------
def test_model_loads_lazily_once_across_threads(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh(init_delay=0.05)
    engine = engine_for(model_dir, standin)
    assert standin.calls.init == [] and not engine.loaded
    voice = make_voice()
    threads = [threading.Thread(target=lambda: list(engine.stream(SENTENCE, voice))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(standin.calls.init) == 1 and engine.loaded
    assert len(standin.calls.add_zero_shot_spk) == 1 and len(standin.calls.inference) == 4


def test_load_failure_is_reported(model_dir, make_voice):
    (model_dir / "cosyvoice2.yaml").unlink()
    engine_kwargs = {"cosyvoice_cls": CosyVoice2StandIn.fresh(), "cuda_available": no_cuda}
    with pytest.raises(TTSError) as excinfo:
        CosyVoice2Engine(model_dir, **engine_kwargs)
    assert excinfo.value.code == "tts_model_missing" and "cosyvoice2.yaml" in str(excinfo.value)

    (model_dir / "cosyvoice2.yaml").write_bytes(b"")
    engine = CosyVoice2Engine(model_dir, **engine_kwargs)
    (model_dir / "cosyvoice2.yaml").unlink()  # gone between construction and first use
    with pytest.raises(TTSError) as excinfo:
        list(engine.stream(SENTENCE, make_voice()))
    assert excinfo.value.code == "tts_load_failed"


def test_warm_up_loads_and_synthesises_with_default_prompt(model_dir, tmp_path, wav_bytes):
    default_wav = tmp_path / "default.wav"
    default_wav.write_bytes(wav_bytes(2.0, 24000))
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(
        model_dir, standin, warmup=True, default_prompt_wav=str(default_wav), default_prompt_text="Hello there."
    )
    engine.warm_up()
    assert len(standin.calls.init) == 1
    assert [c["tts_text"] for c in standin.calls.inference] == [cv.WARMUP_TEXT]


def test_warm_up_without_default_prompt_only_loads(model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir, standin, warmup=True)
    engine.warm_up()
    assert len(standin.calls.init) == 1 and standin.calls.inference == []
    engine.warm_up(make_voice())  # with a speaker it synthesises
    assert len(standin.calls.inference) == 1


def test_warm_up_disabled_stays_lazy(model_dir):
    standin = CosyVoice2StandIn.fresh()
    engine_for(model_dir, standin, warmup=False).warm_up()
    assert standin.calls.init == []


# --- options ------------------------------------------------------------------------------------------
@pytest.fixture
def cosyvoice_settings(settings, model_dir):
    settings.COSYVOICE_MODEL_DIR = str(model_dir)
    settings.COSYVOICE_LOAD_TRT = True
    settings.COSYVOICE_LOAD_JIT = True
    settings.COSYVOICE_FP16 = True
    settings.COSYVOICE_LOAD_VLLM = True
    settings.COSYVOICE_TRT_CONCURRENT = 3
    settings.COSYVOICE_WARMUP = False
    return settings


def test_options_with_cuda(cosyvoice_settings, model_dir, make_voice, monkeypatch):
    monkeypatch.setattr(cv, "vllm_available", lambda: True)
    standin = CosyVoice2StandIn.fresh()
    engine = CosyVoice2Engine.from_settings(cosyvoice_cls=standin, cuda_available=with_cuda)
    list(engine.stream(SENTENCE, make_voice()))
    assert standin.calls.init == [
        {
            "model_dir": str(model_dir),
            "load_jit": True,
            "load_trt": True,
            "load_vllm": True,
            "fp16": True,
            "trt_concurrent": 3,
        }
    ]
    assert engine.warmup is False and engine.describe()["cuda"] is True


def test_options_without_cuda(cosyvoice_settings, model_dir, make_voice):
    standin = CosyVoice2StandIn.fresh()
    engine = CosyVoice2Engine.from_settings(cosyvoice_cls=standin, cuda_available=no_cuda)
    list(engine.stream(SENTENCE, make_voice()))
    assert standin.calls.init == [
        {
            "model_dir": str(model_dir),
            "load_jit": False,
            "load_trt": False,
            "load_vllm": False,
            "fp16": False,
            "trt_concurrent": 3,
        }
    ]


def test_load_vllm_off_without_vllm(cosyvoice_settings, monkeypatch):
    monkeypatch.setattr(cv, "vllm_available", lambda: False)
    engine = CosyVoice2Engine.from_settings(cosyvoice_cls=CosyVoice2StandIn.fresh(), cuda_available=with_cuda)
    assert engine.options["load_vllm"] is False and engine.options["load_trt"] is True


def test_load_vllm_only_where_the_class_accepts_it(cosyvoice_settings, model_dir, make_voice, monkeypatch):
    monkeypatch.setattr(cv, "vllm_available", lambda: True)
    standin = CosyVoice2NoVllmStandIn.fresh()
    engine = CosyVoice2Engine.from_settings(cosyvoice_cls=standin, cuda_available=with_cuda)
    list(engine.stream(SENTENCE, make_voice()))
    assert "load_vllm" not in standin.calls.init[0]
    assert standin.calls.init[0]["load_trt"] is True and standin.calls.init[0]["trt_concurrent"] == 3


def test_tensorrt_needs_its_onnx_or_plan(model_dir):
    (model_dir / "flow.decoder.estimator.fp32.onnx").unlink()
    with pytest.raises(TTSError) as excinfo:
        engine_for(model_dir, load_trt=True, fp16=True, cuda_available=with_cuda)
    assert excinfo.value.code == "tts_model_missing"
    assert "flow.decoder.estimator.fp16.mygpu.plan or flow.decoder.estimator.fp32.onnx" in str(excinfo.value)
    engine_for(model_dir, load_trt=True, fp16=True, cuda_available=no_cuda)  # no CUDA, no TensorRT: fine
    (model_dir / "flow.decoder.estimator.fp16.mygpu.plan").write_bytes(b"")
    engine_for(model_dir, load_trt=True, fp16=True, cuda_available=with_cuda)


def test_model_dir_is_passed_absolute(model_dir, monkeypatch, make_voice):
    monkeypatch.chdir(model_dir.parent)
    standin = CosyVoice2StandIn.fresh()
    engine = engine_for(model_dir.name, standin)
    list(engine.stream(SENTENCE, make_voice()))
    assert standin.calls.init[0]["model_dir"] == str(model_dir)


def test_cuda_probe_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    assert cv.torch_cuda_available() is False


# --- the package and the model directory ---------------------------------------------------------------
@pytest.fixture
def clean_cosyvoice_modules(monkeypatch):
    for name in [n for n in sys.modules if n == "cosyvoice" or n.startswith(("cosyvoice.", "matcha"))]:
        monkeypatch.delitem(sys.modules, name)
    yield
    for name in [n for n in sys.modules if n == "cosyvoice" or n.startswith(("cosyvoice.", "matcha"))]:
        del sys.modules[name]


def test_missing_package_is_tts_engine_missing(settings, model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "cosyvoice", None)
    settings.COSYVOICE_MODEL_DIR = str(model_dir)
    with pytest.raises(TTSError) as excinfo:
        CosyVoice2Engine.from_settings()
    assert excinfo.value.code == "tts_engine_missing"
    assert "FunAudioLLM/CosyVoice" in str(excinfo.value)


def test_wrong_cosyvoice_package_is_tts_engine_missing(tmp_path, model_dir, monkeypatch, clean_cosyvoice_modules):
    fake = tmp_path / "site" / "cosyvoice"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("def tts(text):\n    return b''\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    with pytest.raises(TTSError) as excinfo:
        CosyVoice2Engine(model_dir)
    assert excinfo.value.code == "tts_engine_missing"
    assert "not the official" in str(excinfo.value)


def test_official_layout_without_the_api_or_matcha(tmp_path, model_dir, monkeypatch, clean_cosyvoice_modules):
    site = tmp_path / "site"
    (site / "cosyvoice" / "cli").mkdir(parents=True)
    (site / "cosyvoice" / "__init__.py").write_text("")
    (site / "cosyvoice" / "cli" / "__init__.py").write_text("")
    module = site / "cosyvoice" / "cli" / "cosyvoice.py"
    module.write_text("class CosyVoice2:\n    def inference_zero_shot(self):\n        pass\n")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(TTSError) as excinfo:
        CosyVoice2Engine(model_dir)
    assert excinfo.value.code == "tts_engine_missing" and "add_zero_shot_spk" in str(excinfo.value)

    for name in [n for n in sys.modules if n.startswith("cosyvoice")]:
        del sys.modules[name]
    module.write_text(
        "from voice.tests.cosyvoice_standin import Calls, CosyVoice2StandIn\n\n\n"
        "class CosyVoice2(CosyVoice2StandIn):\n"
        "    calls = Calls()\n"
    )
    monkeypatch.setitem(sys.modules, "matcha", None)
    with pytest.raises(TTSError) as excinfo:
        CosyVoice2Engine(model_dir)
    assert excinfo.value.code == "tts_engine_missing" and "Matcha-TTS" in str(excinfo.value)

    (site / "matcha").mkdir()
    (site / "matcha" / "__init__.py").write_text("")
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, "matcha")
    engine = CosyVoice2Engine(model_dir, cuda_available=no_cuda)  # the official layout imports
    assert engine.name == "cosyvoice2" and engine.clones_voices and engine.sample_rate == 24000
    assert engine._cls.__module__ == "cosyvoice.cli.cosyvoice"


def test_load_vllm_registers_the_llm_with_vllm_first(tmp_path, model_dir, monkeypatch, make_voice):
    site = tmp_path / "site"
    for package in ("cosyvoice", "cosyvoice/cli", "cosyvoice/vllm", "matcha", "vllm"):
        (site / package).mkdir(parents=True)
        (site / package / "__init__.py").write_text("")
    (site / "cosyvoice" / "cli" / "cosyvoice.py").write_text(
        "from voice.tests.cosyvoice_standin import Calls, CosyVoice2StandIn\n\n\n"
        "class CosyVoice2(CosyVoice2StandIn):\n"
        "    calls = Calls()\n"
    )
    (site / "cosyvoice" / "vllm" / "cosyvoice2.py").write_text("class CosyVoice2ForCausalLM:\n    pass\n")
    (site / "vllm" / "__init__.py").write_text(
        "class ModelRegistry:\n"
        "    registered = {}\n\n"
        "    @classmethod\n"
        "    def register_model(cls, name, model):\n"
        "        cls.registered[name] = model\n"
    )
    names = ("cosyvoice", "matcha", "vllm")
    for name in [n for n in sys.modules if n.split(".")[0] in names]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(cv, "_vllm_registered", False)
    try:
        engine = CosyVoice2Engine(model_dir, load_vllm=True, cuda_available=with_cuda)
        assert engine.options["load_vllm"] is True
        list(engine.stream(SENTENCE, make_voice()))
        registry = sys.modules["vllm"].ModelRegistry.registered
        assert registry["CosyVoice2ForCausalLM"].__module__ == "cosyvoice.vllm.cosyvoice2"
        assert engine._cls.calls.init[0]["load_vllm"] is True
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] in names]:
            del sys.modules[name]


def test_missing_model_dir_is_tts_model_missing(tmp_path):
    with pytest.raises(TTSError) as excinfo:
        engine_for(tmp_path / "nowhere")
    assert excinfo.value.code == "tts_model_missing" and "iic/CosyVoice2-0.5B" in str(excinfo.value)
    with pytest.raises(TTSError) as excinfo:
        engine_for("")
    assert excinfo.value.code == "tts_model_missing"


def test_incomplete_model_dir_names_the_missing_files(model_dir):
    (model_dir / "llm.pt").unlink()
    (model_dir / "speech_tokenizer_v2.onnx").unlink()
    with pytest.raises(TTSError) as excinfo:
        engine_for(model_dir)
    assert excinfo.value.code == "tts_model_missing"
    assert "llm.pt" in str(excinfo.value) and "speech_tokenizer_v2.onnx" in str(excinfo.value)


def test_describe(model_dir):
    engine = engine_for(model_dir)
    info = engine.describe()
    assert info["engine"] == "cosyvoice2" and info["sample_rate"] == 24000 and info["clones_voices"] is True
    assert info["loaded"] is False and info["upstream_commit"] == cv.UPSTREAM_COMMIT
