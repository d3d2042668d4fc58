"""`CosyVoice2Engine.stream_text` (text_stream.py's TextFeed) over the real upstream bi-streaming, on the tiny model.

Upstream (cosyvoice/llm/llm.py, `Qwen2LM.inference_bistream`) reads the text generator one text token at a
time: it first mixes the prompt in (5 text tokens for every 15 prompt speech tokens, the prompt's own text
tokens counted), then decodes speech until the LLM writes a fill token, when it reads 5 more text tokens;
once the text has ended it decodes "until met eos", with no length limit. The tiny model's LLM never
writes an end-of-speech or a fill token (tiny_model.py pushes both down), so on its own it would never
read past the prompt mixing and never end. `BiStream` gives it the two decisions a trained LLM makes,
through its decoder's logits only (upstream's loop, its sampling and its own breaks do the rest):
- the end: once the text has ended and it has written 20 speech tokens per text token (what upstream's
  non-streaming `inference` stops at, max_token_text_ratio), its end-of-speech token wins (with
  `end=False` it never does, as the tiny model on its own: the engine's cap must end it);
- with `fill=True`, a first fill token after 15 speech tokens (upstream forces every later one itself),
  so that it reads the text as it speaks: 5 text tokens per 15 speech tokens.
"""

import threading
from collections.abc import Generator

import numpy as np
import pytest

from voice.tests.cosyvoice_standin import IGNORE_STOPPED_LLM_JOB
from voice.tts import TTSError
from voice.tts import cosyvoice2 as cv

from .conftest import import_upstream
from .tiny_model import WORDS

import_upstream()
pytestmark = [pytest.mark.cosyvoice_real, pytest.mark.filterwarnings(IGNORE_STOPPED_LLM_JOB)]

SAMPLES_PER_TOKEN = 960  # 24000 Hz / 25 speech tokens a second
TOKENS_PER_TEXT_TOKEN = 20  # upstream's max_token_text_ratio: where BiStream lets the LLM end
MIX_TEXT, MIX_SPEECH = 5, 15  # the tiny yaml's mix_ratio, as the official one
HOP = 25  # token_hop_len; the first chunk also needs flow.pre_lookahead_len (3) tokens more
WAIT = 60.0  # seconds, a bound only: every test releases what it holds itself
SENTENCE = "Hello there, how are you today?"
# One tiny-tokenizer token a word: enough to mix a 6-token prompt in and speak a first hop.
LONG_WORDS = WORDS.split()


class Writer:
    """An LLM writing a sentence: gives its pieces one by one, logging each ("piece", index) just before.

    With `hold_at`, it waits for `release` before giving that piece; with `error`, it raises it after
    the pieces."""

    def __init__(self, pieces, log, hold_at=None, error=None):
        self.pieces, self.log, self.hold_at, self.error = list(pieces), log, hold_at, error
        self.release = threading.Event()
        self.waiting = threading.Event()
        self.given = 0

    def __iter__(self):
        for index, piece in enumerate(self.pieces):
            if index == self.hold_at:
                self.waiting.set()
                assert self.release.wait(WAIT), "the test never released the pieces"
            self.log.append(("piece", index))
            self.given += 1
            yield piece
        if self.error is not None:
            raise self.error


class BiStream:
    """Records each `inference_bistream` call of the real Qwen2LM and makes the LLM's two decisions (above).

    `calls`: one dict per call: the text tokens upstream took from the generator (in order), how many
    speech tokens it had written when it took each, the speech tokens it wrote, whether the text ended,
    whether the LLM ended by itself. Logs ("text token", n)
    as upstream takes its n-th text token."""

    def __init__(self, llm, monkeypatch, log, fill=False, end=True):
        self.calls: list[dict] = []
        self._current = threading.local()  # the call running in this llm_job thread
        eos, fill_token = llm.speech_token_size, llm.speech_token_size + 2
        original, decoder_forward = llm.inference_bistream, llm.llm_decoder.forward

        def bistream(*args, text, **kwargs):
            call = {"text_tokens": [], "read_at": [], "speech_tokens": 0, "text_ended": False, "filled": False}
            call["ended"] = False
            self.calls.append(call)
            self._current.call = call

            def reading():
                for token in text:
                    call["text_tokens"].append(int(token.reshape(-1)[0]))
                    call["read_at"].append(call["speech_tokens"])  # how much it had said by then
                    log.append(("text token", len(call["text_tokens"])))
                    yield token
                call["text_ended"] = True
                call["at_text_end"] = call["speech_tokens"]

            for token in original(*args, text=reading(), **kwargs):
                call["speech_tokens"] += 1
                yield token
            call["ended"] = True

        def deciding(hidden):
            logits = decoder_forward(hidden)
            call = getattr(self._current, "call", None)
            if call is None:
                return logits
            wins = None
            if call["text_ended"]:
                if end and call["speech_tokens"] >= TOKENS_PER_TEXT_TOKEN * len(call["text_tokens"]):
                    wins = eos
            elif fill and not call["filled"] and call["speech_tokens"] == MIX_SPEECH:
                call["filled"] = True
                wins = fill_token
            if wins is not None:
                logits = logits.clone()
                logits[..., wins] += 1.0e5  # above the -1e4 the tiny model gives it: it wins every draw
            return logits

        monkeypatch.setattr(llm, "inference_bistream", bistream)
        monkeypatch.setattr(llm.llm_decoder, "forward", deciding)


@pytest.fixture
def log():
    return []


@pytest.fixture
def bistream(real_engine, monkeypatch, log):
    def make(fill=False, end=True):
        return BiStream(real_engine._model.model.llm, monkeypatch, log, fill=fill, end=end)

    return make


@pytest.fixture
def upstream_calls(real_engine, monkeypatch):
    """The `tts_text` of every `inference_zero_shot` call of the loaded model."""
    model = real_engine._model
    texts = []
    original = model.inference_zero_shot

    def recorded(tts_text, *args, **kwargs):
        texts.append(tts_text)
        return original(tts_text, *args, **kwargs)

    monkeypatch.setattr(model, "inference_zero_shot", recorded)
    return texts


def words(sentence):
    """A sentence as an LLM writes it: word by word, each with its space after."""
    split = sentence.split(" ")
    return [f"{word} " for word in split[:-1]] + [split[-1]]


def text_tokens(model, sentence) -> list[int]:
    """The text tokens upstream's frontend makes of a whole sentence, normalised as one piece.

    split=False, as the engine normalises each chunk: upstream's split_paragraph (split=True, what
    `stream` gets) also ends a sentence without final punctuation with a "."."""
    frontend = model.frontend
    normalised = frontend.text_normalize(sentence, split=False, text_frontend=True)
    return frontend.tokenizer.encode(normalised, allowed_special=frontend.allowed_special)


def llm_job_threads():
    return [t for t in threading.enumerate() if t.name.endswith("(llm_job)")]


def text_threads():
    return [t for t in threading.enumerate() if t.name == "cosyvoice2-text"]


def assert_upstream_idle(engine):
    """Nothing left of any request: the stop done, no LLM thread running, no request state kept."""
    assert engine.settle(timeout=WAIT)
    for thread in llm_job_threads():
        thread.join(timeout=WAIT)
    assert llm_job_threads() == []
    inner = engine._model.model
    assert (inner.tts_speech_token_dict, inner.llm_end_dict, inner.hift_cache_dict) == ({}, {}, {})


def assert_pcm16(chunks, speech):
    """Every chunk is upstream's float tensor as PCM16 little-endian, in upstream's order."""
    assert chunks == [cv.speech_to_pcm16(tensor) for tensor in speech]
    for chunk, tensor in zip(chunks, speech, strict=True):
        samples = np.frombuffer(chunk, dtype="<i2")
        expected = np.clip(tensor.numpy().reshape(-1), -1, 1) * 32767
        assert np.abs(samples - expected).max() <= 0.5


# --- 1. one sentence in pieces: one upstream call, its text a generator -------------------------------
def test_a_sentence_in_pieces_is_one_streamed_call_with_a_text_generator(
    real_engine, make_voice, spy_model, bistream, upstream_calls, log
):
    model = real_engine._model
    spy = spy_model(model)
    llm = bistream()
    pieces = words(SENTENCE)
    assert len(pieces) == 6
    chunks = list(real_engine.stream_text(Writer(pieces, log), make_voice(speaker_id=71), "en"))

    [tts_text] = upstream_calls  # one call for the sentence
    assert isinstance(tts_text, Generator)
    [call] = llm.calls  # ... through upstream's bi-streaming LLM, which read the text to its end
    assert call["text_ended"] and call["ended"]
    # The chunks of whole words were tokenised as upstream tokenises the whole sentence.
    assert call["text_tokens"] == text_tokens(model, SENTENCE)
    assert len(spy.calls) == 1 and len(chunks) == len(spy.calls[0]["speech"]) > 1  # streamed
    assert_pcm16(chunks, spy.calls[0]["speech"])
    assert real_engine.sample_rate == model.sample_rate == 24000
    total = sum(len(chunk) for chunk in chunks) // 2
    assert total == TOKENS_PER_TEXT_TOKEN * len(call["text_tokens"]) * SAMPLES_PER_TOKEN
    # Every speech token the LLM wrote is in the audio. 8 text tokens are fewer than mixing the prompt in
    # takes (first_chunk_needs): upstream read them all before it said anything, then decoded to the end.
    assert call["speech_tokens"] == total // SAMPLES_PER_TOKEN
    assert call["read_at"] == [0] * len(call["text_tokens"])
    assert_upstream_idle(real_engine)


# --- 2. upstream reads the text as it comes ----------------------------------------------------------
def prompt_text_tokens(model, voice) -> int:
    return model.frontend.spk2info[cv.speaker_cache_id(voice)]["prompt_text"].shape[1]


def first_chunk_needs(prompt_tokens: int, fill: bool) -> int:
    """The text tokens upstream reads before its first chunk (HOP + 3 speech tokens) on the tiny LLM.

    The prompt's 50 speech tokens are mixed in 15 at a time (4 times), each time with 5 text tokens,
    the prompt's own first; then it speaks 15 tokens and (with the fill token) reads 5 more text tokens
    for the next 15 speech tokens, enough for a first chunk (28)."""
    mixed = -(-50 // MIX_SPEECH) * MIX_TEXT - prompt_tokens
    return mixed + (MIX_TEXT if fill else 0)


@pytest.mark.parametrize("fill", [False, True], ids=["tiny-llm-as-it-is", "with-fill-tokens"])
def test_speech_begins_before_the_text_has_ended(real_engine, make_voice, bistream, log, fill):
    """Upstream reads the generator while it speaks: its first chunk comes out while the caller still
    writes. The tiny LLM as it is reads only what it needs to mix the prompt in, then speaks without end
    (no fill token): the stream is closed after the first chunk. With fill tokens it reads on as it
    speaks, 5 text tokens per 15 speech tokens, and ends."""
    model = real_engine._model
    voice = make_voice(speaker_id=72)
    list(real_engine.stream("Hello there.", voice))  # registered: its prompt's text tokens are known
    need = first_chunk_needs(prompt_text_tokens(model, voice), fill)
    assert 0 < need < len(LONG_WORDS) - 3
    llm = bistream(fill=fill)
    sentence = LONG_WORDS[: need + 3]
    hold_at = need  # the pieces the first chunk needs are written, then the writer waits
    writer = Writer([f"{word} " for word in sentence], log, hold_at=hold_at)
    stream = real_engine.stream_text(writer, voice, "en")

    first = next(stream)
    log.append(("chunk", 0))
    assert writer.waiting.is_set() and writer.given == hold_at  # the text has not ended
    assert len(first) // 2 == HOP * SAMPLES_PER_TOKEN - model.model.source_cache_len
    [call] = llm.calls
    assert len(call["text_tokens"]) == need and not call["text_ended"]
    assert log.index(("text token", need)) < log.index(("chunk", 0))
    if not fill:
        # All read while mixing the prompt in, before any speech; from there upstream's decode loop would
        # only read on at a fill token, which the tiny LLM never writes: the stream is closed here
        # (test_closing_after_the_first_chunk_* checks what that stops).
        assert call["read_at"] == [0] * need
        stream.close()
        writer.release.set()
        assert_upstream_idle(real_engine)
        return
    mixed = need - MIX_TEXT
    assert call["read_at"] == [0] * mixed + [MIX_SPEECH] * MIX_TEXT  # 5 more after its first 15 tokens
    writer.release.set()
    rest = list(stream)
    log.append(("chunk", "last"))
    assert rest and call["text_ended"] and call["ended"]
    assert call["text_tokens"] == text_tokens(model, " ".join(sentence))
    # The pieces written after the first chunk were read by upstream after it, before the last chunk.
    after = log.index(("chunk", 0))
    assert log.index(("piece", hold_at)) > after
    assert log.index(("text token", need + 1)) > after
    # ... as it spoke: the next 15 speech tokens (fill tokens apart) came before it read on.
    assert call["read_at"][need:] == [2 * MIX_SPEECH] * (len(sentence) - need)
    total = (len(first) + sum(len(chunk) for chunk in rest)) // 2
    assert total == call["speech_tokens"] * SAMPLES_PER_TOKEN
    assert_upstream_idle(real_engine)


# --- 3. each chunk normalised by upstream's own frontend ----------------------------------------------
def test_chinese_pieces_are_normalised_by_upstreams_frontend(real_engine, make_voice, bistream, log, monkeypatch):
    model = real_engine._model
    frontend = model.frontend
    voice = make_voice(speaker_id=73)
    list(real_engine.stream("Hello there.", voice))  # registered first: only the sentence is recorded below
    llm = bistream()
    normalised, encoded = [], []
    text_normalize, encode = frontend.text_normalize, frontend.tokenizer.encode

    def recording_normalize(text, *args, **kwargs):
        result = text_normalize(text, *args, **kwargs)
        if isinstance(text, str) and text:  # not the generator, nor the empty prompt text (a zero-shot id)
            normalised.append((text, result))
        return result

    def recording_encode(text, *args, **kwargs):
        encoded.append(text)
        return encode(text, *args, **kwargs)

    monkeypatch.setattr(frontend, "text_normalize", recording_normalize)
    monkeypatch.setattr(frontend.tokenizer, "encode", recording_encode)
    pieces = ["我今年", "25岁了，", "你呢？"]
    chunks = list(real_engine.stream_text(Writer(pieces, log), voice, "zh"))

    assert chunks
    [call] = llm.calls
    assert call["text_ended"]
    # Whole chunks, each by upstream's Chinese text normaliser: the number with its Chinese characters.
    assert [text for text, _ in normalised] == ["我今", "年25岁", "了，你", "呢？"]
    assert ("年25岁", "年二十五岁") in normalised
    # What reached upstream's tokenizer: no digit, and as upstream normalises the whole sentence. Last,
    # the engine counts the text it handed over (the cap of the decode after it: stopping.cap_final_decode).
    *read, counted = encoded
    assert read == [result for _, result in normalised]
    assert counted == "".join(read)
    assert not any(char.isdigit() for text in encoded for char in text)
    whole = text_normalize("".join(pieces), split=False, text_frontend=True)
    assert "".join(read) == whole == "我今年二十五岁了，你呢？"
    assert_upstream_idle(real_engine)


# --- 4. closing early ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fill", [False, True], ids=["llm-speaking", "llm-waiting-for-text"])
def test_closing_after_the_first_chunk_stops_upstreams_llm(real_engine, make_voice, bistream, log, fill):
    """A barge-in: without fill tokens the tiny LLM is speaking on (it is stopped at its next token);
    with them it has spoken what it read and waits for text inside the generator (it is woken and stops)."""
    model = real_engine._model
    inner = model.model
    voice = make_voice(speaker_id=74)
    list(real_engine.stream("Hello there.", voice))
    need = first_chunk_needs(prompt_text_tokens(model, voice), fill)
    llm = bistream(fill=fill)
    writer = Writer([f"{word} " for word in LONG_WORDS[: need + 3]], log, hold_at=need)
    before = set(inner.tts_speech_token_dict)
    stream = real_engine.stream_text(writer, voice, "en")
    assert next(stream)
    [request] = set(inner.tts_speech_token_dict) - before
    [job] = [t for t in llm_job_threads() if request in t._args]
    stream.close()

    # Stopped while the caller still holds its last pieces: its thread never had to give them.
    assert real_engine.settle(timeout=WAIT)
    job.join(timeout=WAIT)
    assert not job.is_alive()
    [call] = llm.calls
    assert not call["ended"] and not call["text_ended"]
    assert request not in inner.tts_speech_token_dict and request not in inner.llm_end_dict
    assert request not in inner.hift_cache_dict
    assert_upstream_idle(real_engine)
    assert writer.given == need
    writer.release.set()
    for thread in text_threads():
        thread.join(timeout=WAIT)
    assert text_threads() == []
    assert writer.given == need + 1  # the piece being written was the last one taken

    # The next sentence straight after, whole.
    chunks = list(real_engine.stream_text(Writer(words(SENTENCE), log), voice, "en"))
    assert len(llm.calls) == 2 and llm.calls[1]["ended"]
    assert sum(len(chunk) for chunk in chunks) // 2 == llm.calls[1]["speech_tokens"] * SAMPLES_PER_TOKEN
    assert_upstream_idle(real_engine)


# --- 4b. a decode that never ends after the text --------------------------------------------------------
def test_a_decode_that_never_ends_is_capped_as_upstreams_whole_text_inference(
    real_engine, make_voice, bistream, log, monkeypatch
):
    """Upstream's decode after the text has no length limit: the tiny LLM left to itself (no end-of-speech
    token) is stopped by the engine at 20 speech tokens per text token, and the sentence ends as usual."""
    from voice.tts.cosyvoice2 import engine as engine_module

    limits = []
    cap = engine_module.cap_final_decode

    def recorded(model, before, text_tokens):
        limits.append((text_tokens, cap(model, before, text_tokens)))
        return limits[-1][1]

    monkeypatch.setattr(engine_module, "cap_final_decode", recorded)
    voice = make_voice(speaker_id=79)
    llm = bistream(fill=True, end=False)
    chunks = list(real_engine.stream_text(Writer(words(SENTENCE), log), voice, "en"))
    [call] = llm.calls
    [(counted, limit)] = limits
    assert call["text_ended"] and not call["ended"]  # the LLM never ended by itself
    assert counted == len(call["text_tokens"])  # upstream's own count of the text it read
    assert limit == max(TOKENS_PER_TEXT_TOKEN * counted, call["at_text_end"] + 25)
    assert call["speech_tokens"] == limit + 1  # the one past the cap ended llm_job, unspoken
    assert sum(len(chunk) for chunk in chunks) // 2 == limit * SAMPLES_PER_TOKEN
    assert_upstream_idle(real_engine)


# --- 5. the caller's pieces fail ----------------------------------------------------------------------
def test_an_error_of_the_pieces_reaches_the_caller_and_upstream_is_stopped(real_engine, make_voice, bistream, log):
    voice = make_voice(speaker_id=75)
    llm = bistream()
    writer = Writer(["Hello ", "there, ", "how "], log, error=ValueError("the LLM failed mid-sentence"))
    stream = real_engine.stream_text(writer, voice, "en")
    got = []
    with pytest.raises(ValueError, match="the LLM failed mid-sentence"):
        for chunk in stream:
            got.append(chunk)
    assert got == []  # nothing of the failed sentence is spoken
    assert not isinstance(writer.error, TTSError)
    [call] = llm.calls
    assert call["text_tokens"] == text_tokens(real_engine._model, "Hello there, how")  # the text it had
    assert_upstream_idle(real_engine)

    chunks = list(real_engine.stream_text(Writer(words(SENTENCE), log), voice, "en"))
    assert chunks and llm.calls[1]["ended"]
    assert_upstream_idle(real_engine)


# --- 6. nothing to say --------------------------------------------------------------------------------
def test_blank_pieces_say_nothing_and_never_call_upstream(
    real_engine, make_voice, spy_model, bistream, upstream_calls, log
):
    spy = spy_model(real_engine._model)
    bistream()  # were upstream called, its LLM would end (at once: no text) and this test fail, not hang
    assert list(real_engine.stream_text(Writer(["", "  ", "\n", " \t "], log), make_voice(speaker_id=76))) == []
    assert upstream_calls == [] and spy.calls == []
    for thread in text_threads():
        thread.join(timeout=WAIT)
    assert text_threads() == []


# --- the speaker cache after a text stream -----------------------------------------------------------
def test_a_speaker_registered_after_a_text_stream_is_saved_and_loads_again(
    tiny_model_dir, make_voice, monkeypatch, log
):
    """Upstream's frontend_zero_shot stores each call's `text` in the speaker's own spk2info entry: after
    stream_text that is the token generator, which torch.save cannot pickle. spk2info.pt must still be
    saved whole when the next speaker is registered, and load again after a restart."""
    import torch

    from voice.tts.cosyvoice2 import CosyVoice2Engine

    engine = CosyVoice2Engine(tiny_model_dir, warmup=False)
    BiStream(engine._ensure_loaded().model.llm, monkeypatch, log)
    first, second = make_voice(speaker_id=77), make_voice(speaker_id=78)
    assert list(engine.stream_text(Writer(words(SENTENCE), log), first, "en"))
    assert list(engine.stream("Hello there.", second))  # registers the second speaker: saves spk2info.pt

    restarted = CosyVoice2Engine(tiny_model_dir, warmup=False)  # a worker restart
    restarted._ensure_loaded()  # today: TTSError, upstream's frontend cannot read spk2info.pt
    saved = torch.load(tiny_model_dir / "spk2info.pt", map_location="cpu")
    assert {cv.speaker_cache_id(first), cv.speaker_cache_id(second)} <= set(saved)
