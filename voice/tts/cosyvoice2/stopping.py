"""Stopping what upstream started for a stream that did not run to its end (a barge-in, or an error).

Upstream's `CosyVoice2Model.tts` (cosyvoice/cli/model.py, both API generations) keeps per-request state
in dicts keyed by a request id (`tts_speech_token_dict`, `llm_end_dict`, `hift_cache_dict`, the last
holding GPU tensors) and starts a thread running `llm_job`, which appends the LLM's speech tokens to
`tts_speech_token_dict[id]` one by one and sets `llm_end_dict[id] = True` when the LLM is done. Only a
generator that runs to its end pops the entries: there is no try/finally and no stop flag. Closed early,
the thread goes on generating the rest of the sentence (on the GPU, beside the next request) and the
entries stay, one set per cut sentence.

What the adapter does, without changing upstream's code (`stop_requests`, after closing the generator):
1. the requests are the keys of `tts_speech_token_dict` that appeared during the call;
2. each one's token list is replaced by one whose `append` raises SystemExit, so `llm_job` stops at its
   next token (`threading`'s default excepthook ignores SystemExit: the thread ends quietly);
3. a thread of its own joins the llm thread (the thread whose arguments hold the request id), then
   pops the request's entries from every dict of the model and of `model.llm` (vLLM's output queues
   too), aborting the request in vLLM first where there is one;
4. the engine's next call waits for that (`UpstreamStop.wait`) before it enters the model, so the
   stopped request never overlaps the next one, and a closing consumer never waits for it.
"""

import logging
import threading
from collections.abc import Iterable
from contextlib import nullcontext

logger = logging.getLogger(__package__)

STOP_TIMEOUT = 30.0  # seconds the next call waits for a stopped request's llm thread (one LLM step)


class StoppedTokens(list):
    """The token list of a request whose stream was closed: upstream's llm_job stops at its next token."""

    def append(self, token):
        # Exactly SystemExit (not a subclass): the one exception threading.excepthook drops silently.
        raise SystemExit("CosyVoice2 stream closed: its LLM job stops here")


# Upstream's own bound for a whole text (Qwen2LM.inference's default max_token_text_ratio): speech tokens
# per text token. Its bi-streaming decode has none after the text (see text_stream.py).
MAX_TOKEN_TEXT_RATIO = 20
FINAL_DECODE_MIN_TOKENS = 25  # at least this many more after the text (1 s of speech at 25 tokens/s)


class CappedTokens(list):
    """A request's token list that ends upstream's LLM at `limit` tokens as its own end would.

    Past the limit, `append` marks the LLM done (`llm_end_dict[id] = True`, what llm_job does after its
    last token) and raises SystemExit, which ends llm_job quietly (as StoppedTokens); upstream's stream
    then speaks the tokens it has and pops the request, as at a normal end."""

    def __init__(self, tokens, limit: int, on_limit):
        super().__init__(tokens)
        self.limit = limit
        self._on_limit = on_limit

    def append(self, token):
        if len(self) >= self.limit:
            self._on_limit()
            raise SystemExit("CosyVoice2 stream reached its token cap: its LLM job ends here")
        super().append(token)


def cap_final_decode(model, before: set[str], text_tokens: int) -> int | None:
    """Bound upstream's bi-streaming decode after the text: at most MAX_TOKEN_TEXT_RATIO speech tokens
    per text token in all, and FINAL_DECODE_MIN_TOKENS more than it has now. Call in upstream's LLM thread
    (at the end of the text generator), so no token is appended meanwhile. Returns the limit, or None
    where the model holds no per-request state (a stand-in) or no new request is found."""
    inner = _inner(model)
    ends = getattr(inner, "llm_end_dict", None)
    if inner is None or not isinstance(ends, dict):
        return None
    ids = set(inner.tts_speech_token_dict) - before
    if len(ids) != 1:  # one call at a time under the engine's lock: anything else is not ours to cap
        return None
    (request_id,) = ids
    tokens = inner.tts_speech_token_dict[request_id]
    if isinstance(tokens, StoppedTokens):
        return None
    limit = max(MAX_TOKEN_TEXT_RATIO * text_tokens, len(tokens) + FINAL_DECODE_MIN_TOKENS)

    def reached() -> None:
        logger.warning(
            "CosyVoice2: a streamed sentence of %d text tokens reached its cap of %d speech tokens; it ends there",
            text_tokens,
            limit,
        )
        ends[request_id] = True

    inner.tts_speech_token_dict[request_id] = CappedTokens(tokens, limit, reached)
    return limit


def _inner(model):
    """Upstream's CosyVoice2Model (`CosyVoice2.model`), or None where it has no per-request state."""
    inner = getattr(model, "model", None)
    return inner if isinstance(getattr(inner, "tts_speech_token_dict", None), dict) else None


def request_ids(model) -> set[str]:
    """The ids of the requests that upstream's model holds state for now."""
    inner = _inner(model)
    return set(inner.tts_speech_token_dict) if inner is not None else set()


def llm_threads(ids: Iterable[str]) -> list[threading.Thread]:
    """The live threads started for these requests (upstream passes the id as llm_job's last argument).

    `Thread._args` is kept by CPython until the target returns: a thread without it has finished
    llm_job and touches no state any more."""
    ids = set(ids)
    found = []
    for thread in threading.enumerate():
        args = getattr(thread, "_args", None) or ()
        if any(isinstance(arg, str) and arg in ids for arg in args):
            found.append(thread)
    return found


def release(inner, ids: Iterable[str]) -> None:
    """Pop the requests' entries from every dict of the model and of its LLM; abort them in vLLM."""
    ids = list(ids)
    llm = getattr(inner, "llm", None)
    if llm is not None:
        abort = getattr(getattr(llm, "vllm", None), "abort_request", None)
        with getattr(llm, "lock", None) or nullcontext():  # upstream steps vLLM under the LLM's lock
            if callable(abort):
                for request_id in ids:
                    abort(request_id)  # before its output queue goes: vLLM gives it no more output
            _pop_from_dicts(llm, ids)
    with getattr(inner, "lock", None) or nullcontext():
        _pop_from_dicts(inner, ids)


def _pop_from_dicts(holder, ids) -> None:
    for value in list(getattr(holder, "__dict__", {}).values()):
        if isinstance(value, dict):
            for request_id in ids:
                value.pop(request_id, None)


class UpstreamStop:
    """One closed call's requests being stopped: their llm threads joined, then their state released."""

    def __init__(self, inner, ids: set[str]):
        self.ids = ids
        self._inner = inner
        self._threads = llm_threads(ids)
        self._done = threading.Event()

    def start(self) -> "UpstreamStop":
        if any(thread.is_alive() for thread in self._threads):
            threading.Thread(target=self._run, name="cosyvoice2-stop", daemon=True).start()
        else:
            self._run()
        return self

    def _run(self) -> None:
        try:
            for thread in self._threads:
                thread.join()  # ends at its next token (or at the LLM's end)
            release(self._inner, self.ids)
        except Exception:  # the request is gone either way; say why its state may stay
            logger.exception("CosyVoice2: releasing the state of closed requests %s failed", sorted(self.ids))
        finally:
            self._done.set()

    def wait(self, timeout: float | None = STOP_TIMEOUT) -> bool:
        """True once the llm threads have ended and the state is released."""
        return self._done.wait(timeout)


def stop_requests(model, before: set[str]) -> UpstreamStop | None:
    """Stop upstream's work for the requests that appeared since `before` and are still held.

    Call after closing the generator (a stream that ran to its end has none left: upstream popped them)."""
    inner = _inner(model)
    if inner is None:
        return None
    ids = set(inner.tts_speech_token_dict) - before
    if not ids:
        return None
    for request_id in ids:
        inner.tts_speech_token_dict[request_id] = StoppedTokens()
    logger.info("CosyVoice2: stream closed before its end; stopping upstream request(s) %s", sorted(ids))
    return UpstreamStop(inner, ids).start()
