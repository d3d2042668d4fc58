"""stopping.py on its own: the token list that stops upstream's llm_job, finding the llm thread of a request,
releasing a request's state (vLLM's too). The engine's use of it: test_engine.py (closing a stream early)."""

import queue
import threading
from types import SimpleNamespace

import pytest

from voice.tts.cosyvoice2 import stopping


def test_stopped_tokens_end_the_llm_job_with_plain_system_exit():
    with pytest.raises(SystemExit) as excinfo:
        stopping.StoppedTokens().append(7)
    assert type(excinfo.value) is SystemExit  # exactly: threading's default excepthook drops only that


def test_llm_threads_are_found_by_the_request_id_among_their_arguments():
    go = threading.Event()
    thread = threading.Thread(target=lambda text, request_id: go.wait(30), args=("Hello.", "request-1"))
    thread.start()
    try:
        assert stopping.llm_threads({"request-1"}) == [thread]
        assert stopping.llm_threads({"request-2"}) == []
    finally:
        go.set()
        thread.join(timeout=30)
    assert stopping.llm_threads({"request-1"}) == []  # finished: nothing to wait for


def test_release_pops_the_requests_everywhere_and_aborts_them_in_vllm():
    aborted = []
    llm = SimpleNamespace(lock=threading.Lock(), vllm_output_queue={"r1": queue.Queue(), "r2": queue.Queue()})

    def abort_request(request_id):
        assert llm.lock.locked()  # as upstream steps vLLM: under the LLM's lock
        assert request_id in llm.vllm_output_queue  # aborted before its queue goes
        aborted.append(request_id)

    llm.vllm = SimpleNamespace(abort_request=abort_request)
    inner = SimpleNamespace(
        llm=llm,
        lock=threading.Lock(),
        tts_speech_token_dict={"r1": [1, 2], "r2": [3]},
        llm_end_dict={"r1": True, "r2": False},
        hift_cache_dict={"r1": {"speech": None}, "r2": None},
        token_hop_len=25,
    )
    stopping.release(inner, {"r1"})
    assert aborted == ["r1"]
    assert list(llm.vllm_output_queue) == ["r2"]
    assert inner.tts_speech_token_dict == {"r2": [3]}
    assert inner.llm_end_dict == {"r2": False} and inner.hift_cache_dict == {"r2": None}


def test_a_model_without_per_request_state_needs_no_stopping():
    model = SimpleNamespace(model=SimpleNamespace(token_hop_len=25))
    assert stopping.request_ids(model) == set()
    assert stopping.stop_requests(model, set()) is None


def capped_model(tokens, ended=False):
    inner = SimpleNamespace(tts_speech_token_dict={"old": [9], "r1": list(tokens)}, llm_end_dict={"r1": ended})
    return SimpleNamespace(model=inner), inner


def test_the_final_decode_cap_ends_the_llm_job_as_its_own_end_would():
    model, inner = capped_model(range(10))
    limit = stopping.cap_final_decode(model, {"old"}, text_tokens=3)
    assert limit == 60  # 20 speech tokens per text token
    tokens = inner.tts_speech_token_dict["r1"]
    assert tokens == list(range(10))  # what the LLM made so far is kept
    for token in range(50):
        tokens.append(token)
    assert len(tokens) == 60 and inner.llm_end_dict["r1"] is False
    with pytest.raises(SystemExit) as excinfo:
        tokens.append(99)
    assert type(excinfo.value) is SystemExit
    assert len(tokens) == 60 and inner.llm_end_dict["r1"] is True  # as llm_job sets it after its last token


def test_the_final_decode_always_gets_some_tokens_after_the_text():
    model, _ = capped_model(range(70))
    assert stopping.cap_final_decode(model, {"old"}, text_tokens=3) == 70 + stopping.FINAL_DECODE_MIN_TOKENS


def test_no_cap_without_a_single_new_request_or_for_a_stopped_one():
    model, inner = capped_model([])
    assert stopping.cap_final_decode(model, set(), text_tokens=3) is None  # two new requests: not ours
    assert stopping.cap_final_decode(SimpleNamespace(model=SimpleNamespace()), set(), text_tokens=3) is None
    inner.tts_speech_token_dict["r1"] = stopping.StoppedTokens()
    assert stopping.cap_final_decode(model, {"old"}, text_tokens=3) is None
    assert type(inner.tts_speech_token_dict["r1"]) is stopping.StoppedTokens
