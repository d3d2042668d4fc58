"""The token_hop_len guard (docs/cosyvoice2.md) with the real CosyVoice2Model, consecutive and concurrent.

The installed upstream copy (63856565) keeps `token_hop_len` at 25; the bug the guard answers (upstream
f26cde5, open PR #1849) doubles the shared attribute after every streamed chunk and never sets it back.
`ModelSpy(grow_hop_len=True)` puts exactly that growth on the real model object, so these tests hold for
both upstream generations. The hops are read from the model's own token2wav steps.
"""

import threading

import pytest

from .conftest import import_upstream

import_upstream()
pytestmark = pytest.mark.cosyvoice_real

SENTENCE = "Hello there."  # 3 text tokens -> 60 speech tokens: a hop of 25, another, then the rest
HOP = 25


def test_without_the_guard_the_first_hop_grows(real_engine, make_voice, spy_model):
    """The growth, straight on the upstream object: proof that the checks below can fail."""
    model = real_engine._model
    with real_engine._lock:
        spk_id = real_engine._speaker_id(model, make_voice(speaker_id=51))
        spy = spy_model(model, grow_hop_len=True)
        try:
            for _ in range(3):
                list(model.inference_zero_shot(SENTENCE, "", "", zero_shot_spk_id=spk_id, stream=True))
        finally:
            real_engine._reset_hop_len(model)
    # 25 first (then 50 within the call: 78 tokens needed, 60 made, so the rest comes last); the next call
    # starts at 50; the third at 100, more than the 60 tokens: not streamed at all.
    assert spy.first_hops() == [25, 50, None]
    assert [len(call["speech"]) for call in spy.calls] == [2, 2, 1]


@pytest.mark.parametrize("grow", [False, True], ids=["upstream-as-installed", "with-the-upstream-growth"])
def test_first_hop_stays_25_over_consecutive_streams(real_engine, make_voice, spy_model, grow):
    spy = spy_model(real_engine._model, grow_hop_len=grow)
    voice = make_voice(speaker_id=52)
    first_chunks = []
    for _ in range(4):
        chunks = list(real_engine.stream(SENTENCE, voice))
        assert len(chunks) == (2 if grow else 3)  # growth within a call (25, then 50) is upstream's intent
        first_chunks.append(len(chunks[0]) // 2)
    assert [call["hop_len_at_start"] for call in spy.calls] == [HOP] * 4
    assert spy.first_hops() == [HOP] * 4
    assert len(set(first_chunks)) == 1
    assert real_engine._model.model.token_hop_len == HOP  # set back after the last call too


def test_first_hop_stays_25_under_concurrent_streams(real_engine, make_voice, spy_model):
    spy = spy_model(real_engine._model, grow_hop_len=True)
    voices = [make_voice(speaker_id=60 + i) for i in range(4)]
    results, errors = {}, []
    start = threading.Barrier(len(voices))

    def speak(voice):
        try:
            start.wait(timeout=30)
            results[voice.speaker_id] = list(real_engine.stream(f"{SENTENCE} How are you today?", voice))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=speak, args=(voice,)) for voice in voices]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not errors and len(results) == 4
    assert len(spy.calls) == 8  # two sentences each
    assert spy.max_active == 1  # the engine's lock: never two calls inside the model at once
    assert [call["hop_len_at_start"] for call in spy.calls] == [HOP] * 8
    assert spy.first_hops() == [HOP] * 8
    assert len({call["thread"] for call in spy.calls}) == 4
    assert len({len(chunks[0]) for chunks in results.values()}) == 1
