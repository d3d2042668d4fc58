"""The LLM, reached through the `openai` client at any OpenAI-compatible base URL.

Only this module knows about the client; it turns every failure into an LLMError with a stable
code and a sentence a user can read. Retries: the client retries the *request* (connection
errors, 408/409/429/5xx) before any token has arrived, which is safe; once a reply is streaming
nothing is retried, since a retry would repeat or contradict what the user already has.
"""

import asyncio
import dataclasses
import logging
import time
import weakref
from collections.abc import AsyncGenerator
from typing import cast

import httpx
import openai
from django.conf import settings
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from magicmirror import metrics
from magicmirror.errors import ApplicationError

from .llm_endpoint import Endpoint, known_endpoint, llm_endpoint

logger = logging.getLogger(__name__)


class LLMError(ApplicationError):
    status_code = 502


def _not_configured():
    return LLMError(
        "The language model is not configured: the site administrator must set LLM_API_KEY.",
        code="llm_not_configured",
        status_code=503,
    )


def translate_error(exc: Exception) -> LLMError:
    """Map a client exception to an LLMError with a stable code."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, openai.APITimeoutError | asyncio.TimeoutError | httpx.TimeoutException):
        return LLMError(
            "The language model took too long to answer. Please try again.", code="llm_timeout", status_code=504
        )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return LLMError(
            "The language model refused the API key. The site administrator must check LLM_API_KEY.",
            code="llm_auth",
        )
    if isinstance(exc, openai.RateLimitError):
        return LLMError(
            "The language model is busy (rate limited). Please wait a moment and try again.",
            code="llm_rate_limited",
            status_code=503,
        )
    if isinstance(exc, openai.NotFoundError):
        return LLMError("The language model was not found: check LLM_MODEL and LLM_BASE_URL.", code="llm_bad_config")
    if isinstance(exc, openai.InternalServerError):
        return LLMError("The language model's server had an error. Please try again.", code="llm_server_error")
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        return LLMError(
            "The language model could not be reached. Please try again later.", code="llm_unreachable", status_code=503
        )
    if isinstance(exc, openai.APIStatusError):
        return LLMError(f"The language model answered with an error ({exc.status_code}).", code="llm_error")
    return LLMError("The language model sent a reply that could not be read.", code="llm_bad_response")


# One client per event loop: httpx connection pools belong to the loop that opened them, and
# reusing one saves a TLS handshake on every turn.
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[tuple, openai.AsyncOpenAI]]" = (
    weakref.WeakKeyDictionary()
)


async def _endpoint() -> Endpoint:
    """The configured endpoint, else a local Ollama (chat/llm_endpoint.py); looked for off the event loop."""
    endpoint = known_endpoint()
    if endpoint is None or not endpoint.usable:
        endpoint = await asyncio.to_thread(llm_endpoint)
    return endpoint


async def _client() -> tuple[openai.AsyncOpenAI, Endpoint]:
    endpoint = await _endpoint()
    if not endpoint.usable:
        raise _not_configured()
    config = (endpoint.api_key, endpoint.base_url, settings.LLM_TIMEOUT, settings.LLM_MAX_RETRIES)
    loop = asyncio.get_running_loop()
    cached = _clients.get(loop)
    if cached and cached[0] == config:
        return cached[1], endpoint
    client = openai.AsyncOpenAI(
        api_key=endpoint.api_key,
        base_url=endpoint.base_url,
        timeout=httpx.Timeout(settings.LLM_TIMEOUT, connect=settings.LLM_CONNECT_TIMEOUT),
        max_retries=settings.LLM_MAX_RETRIES,
    )
    _clients[loop] = (config, client)
    return client, endpoint


async def _chat_completion(*, stream: bool, **body):
    """POST /chat/completions through the client (its retries, errors and SSE parsing), with the body as
    given. `chat.completions.create` first walks every parameter, each history message included,
    through the SDK's type-driven transformation: about a third of the web process's CPU per turn
    (py-spy, docs/benchmarks.md). Our bodies are plain JSON already, which that step leaves as is."""
    client, endpoint = await _client()
    if endpoint.source == "ollama":  # the configured model names (deepseek-chat...) mean nothing there
        body["model"] = endpoint.model
    return await client.post(
        "/chat/completions",
        body={**body, "stream": stream},
        cast_to=ChatCompletion,
        stream=stream,
        stream_cls=openai.AsyncStream[ChatCompletionChunk],
    )


@dataclasses.dataclass(frozen=True)
class ToolCall:
    """One function call the LLM made, assembled from its streamed pieces."""

    id: str
    name: str
    arguments: str  # JSON text as the LLM wrote it (the runner parses and validates it)

    def as_message_part(self) -> dict:
        """As an assistant message's `tool_calls` item (the request that sends the results back)."""
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


async def _send(messages: list[dict], *, stream: bool, temperature: float, max_tokens: int, model=None, **extra):
    """The request every call makes: the model (LLM_MODEL unless given), the messages, the sampling,
    and any extra body fields (tools, response_format). Errors are the client's; callers translate."""
    return await _chat_completion(
        model=model or settings.LLM_MODEL,
        messages=messages,
        stream=stream,
        temperature=temperature,
        max_tokens=max_tokens,
        **extra,
    )


class _ToolCallParts:
    """The pieces of the streamed calls (`delta.tool_calls`), by their `index`: the id and the name
    come with a call's first piece, its arguments' JSON text in any number of pieces after it."""

    def __init__(self):
        self._calls: dict[int, dict] = {}

    def feed(self, deltas) -> None:
        for position, delta in enumerate(deltas):
            index = delta.index if getattr(delta, "index", None) is not None else position
            call = self._calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                call["id"] = delta.id
            function = delta.function
            if function is not None:
                call["name"] += function.name or ""
                call["arguments"] += function.arguments or ""

    def calls(self) -> list[ToolCall]:
        return [
            # A server that sends no id (some local ones): one the results can still refer to.
            ToolCall(id=c["id"] or f"call_{index}", name=c["name"], arguments=c["arguments"])
            for index, c in sorted(self._calls.items())
            if c["name"]
        ]


async def stream_turn(messages: list[dict], *, tools: list[dict] | None = None) -> AsyncGenerator[str | list, None]:
    """Yield the reply's text as it arrives and, if the LLM called tools (`tools`: their OpenAI
    schemas, offered with `tool_choice` auto), then the list of its ToolCalls, once, last.
    Raises LLMError (after any text already yielded)."""
    sent_at, first = time.monotonic(), True
    extra = {"tools": tools, "tool_choice": "auto"} if tools else {}
    try:
        stream = await _send(
            messages, stream=True, temperature=settings.LLM_TEMPERATURE, max_tokens=settings.LLM_MAX_TOKENS, **extra
        )
    except Exception as exc:
        raise translate_error(exc) from exc
    finished = False
    calls = _ToolCallParts()
    try:
        async with stream:
            async for chunk in stream:
                if not chunk.choices:
                    continue
                choice = chunk.choices[0]
                finished = finished or bool(choice.finish_reason)
                delta = choice.delta
                if delta is None:
                    continue
                if tools and getattr(delta, "tool_calls", None):
                    calls.feed(delta.tool_calls)
                text = getattr(delta, "content", None)
                if text:
                    if first:
                        first = False
                        metrics.observe_llm_first_token(time.monotonic() - sent_at)
                    yield text
    except (GeneratorExit, asyncio.CancelledError):
        raise
    except Exception as exc:
        raise translate_error(exc) from exc
    if not finished:
        # The stream ended without a finish_reason: the server cut the reply short.
        raise LLMError("The language model's reply was cut off. Please try again.", code="llm_bad_response")
    # Whatever the finish_reason says ("tool_calls"; some servers say "stop"): the calls made are run.
    made = calls.calls()
    if made:
        yield made


def stream_reply(messages: list[dict]) -> AsyncGenerator[str, None]:
    """Yield the reply's text as it arrives (no tools offered). Raises LLMError (after any text
    already yielded)."""
    return cast(AsyncGenerator[str, None], stream_turn(messages))


async def complete(messages: list[dict], *, max_tokens: int = 64, model: str | None = None) -> str:
    """A short non-streamed completion (titles)."""
    try:
        response = await _send(messages, stream=False, temperature=0.3, max_tokens=max_tokens, model=model)
        return (response.choices[0].message.content or "").strip()
    except Exception as exc:
        raise translate_error(exc) from exc


# Structured output: json_schema where the server has it (OpenAI, vLLM, Ollama), else json_object
# (DeepSeek), else plain text; a server that refused a format once is not asked with it again.
_FORMATS_REFUSED: dict[str, int] = {}


async def complete_structured(
    messages: list[dict], *, name: str, schema: dict, max_tokens: int = 512, model: str | None = None
) -> str:
    """A non-streamed completion that should be a JSON object of `schema`; returns its text as the
    server sent it (the caller parses and checks it: some servers wrap it in prose or code fences)."""
    formats: list[dict | None] = [
        {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}},
        {"type": "json_object"},
        None,
    ]
    start = _FORMATS_REFUSED.get(settings.LLM_BASE_URL, 0)
    for level in range(start, len(formats)):
        body = {"response_format": formats[level]} if formats[level] else {}
        try:
            response = await _send(messages, stream=False, temperature=0.0, max_tokens=max_tokens, model=model, **body)
            return (response.choices[0].message.content or "").strip()
        except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
            if level == len(formats) - 1:
                raise translate_error(exc) from exc
            logger.info("The LLM refused response_format %s; trying the next", (formats[level] or {}).get("type"))
            if "response_format" in str(exc):  # a refusal of the format itself, not of this request
                _FORMATS_REFUSED[settings.LLM_BASE_URL] = level + 1
        except Exception as exc:
            raise translate_error(exc) from exc
    raise LLMError("The language model sent a reply that could not be read.", code="llm_bad_response")
