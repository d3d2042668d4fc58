"""A fake OpenAI-compatible chat-completions server for tests and benchmarks.

It speaks the real wire format on 127.0.0.1 (JSON replies, SSE streams ending in `data: [DONE]`,
OpenAI-shaped error bodies) so the real `openai` client is exercised end to end. Behaviour is
scripted per request: queue replies, delays, HTTP errors, malformed or dropped streams.

    with FakeLLMServer(api_key="sk-test") as llm:
        llm.queue(Reply("你好！很高兴见到你。", ttft=0.3, tokens_per_s=30))
        ...  # point LLM_BASE_URL at llm.base_url
        llm.requests[-1]["messages"]  # what the client sent

A turn that calls tools: queue a ToolCalls (streamed `tool_calls` deltas), then the continuation
the next request (the one with the results) gets:

        llm.queue(ToolCalls([("current_time", {})], text="我看一下。"), Reply("现在是下午三点。"))

Requests for structured output (a `response_format`: the memory and summary jobs) are answered
apart, by the name of their JSON schema, so they never take a reply queued for a chat turn:

        llm.queue_structured("memory_update", {"add": ["叫小明"], "update": [], "remove": [], "confirm": []})
        llm.queue_structured("memory_update", "not JSON at all")  # a malformed answer
        llm.structured_requests["memory_update"][-1]["messages"]
"""

import contextlib
import functools
import json
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_TOKEN_RE = re.compile(
    r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]|[^\s\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+\s*|\s+"
)


def tokenize(text: str) -> list[str]:
    """Roughly how an LLM's tokens look: one per CJK character, one per word otherwise."""
    return _TOKEN_RE.findall(text)


@dataclass
class Reply:
    text: str
    ttft: float = 0.0  # seconds before the first token (streams) or the whole body
    tokens_per_s: float = 0.0  # 0 = as fast as possible
    pause_after: int | None = None  # stream this many tokens (not streamed: none), then wait for release()
    drop_after: int | None = None  # stream this many tokens, then close the connection
    malformed_after: int | None = None  # stream this many tokens, then send a broken SSE event


@dataclass
class ToolCalls:
    """A reply that calls tools, streamed as OpenAI does: `text` first (may be empty), then each call's
    first delta (index, id, type, function.name, empty arguments) and its arguments' JSON text in
    pieces of `chunk_chars`, the calls one after another; finish_reason "tool_calls". `calls`:
    (name, arguments) pairs, arguments a dict (sent as JSON) or a str (sent as is: broken JSON).
    The continuation is whatever is queued next: the request that brings the results back."""

    calls: list
    text: str = ""
    chunk_chars: int = 5
    ttft: float = 0.0
    finish_reason: str = "tool_calls"  # some servers say "stop"


@dataclass
class ErrorReply:
    status: int
    message: str = "error"
    type: str = "server_error"
    headers: dict = field(default_factory=dict)


@dataclass
class Hang:
    """Accept the request and send nothing for `seconds` (client time-outs)."""

    seconds: float


def structured_name(body: dict, known) -> str | None:
    """The schema name of a structured-output request: json_schema names it; a json_object request
    (the client's fallback) names it in its system message, as the memory jobs' prompts do."""
    response_format = body.get("response_format")
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("name") or "json_schema"
    system = " ".join(
        m.get("content") or "" for m in body.get("messages", []) if isinstance(m, dict) and m.get("role") == "system"
    )
    return next((name for name in known if name in system), "json_object")


def default_structured(name: str, body: dict):
    """What the fake answers a structured request nothing was queued for: no memory changes; a
    summary that names the first message it was given (tests look for it in later requests)."""
    if name == "memory_update":
        return {"add": [], "update": [], "remove": [], "confirm": []}
    if name == "conversation_summary":
        text = body["messages"][-1]["content"] if body.get("messages") else ""
        first = next((line for line in text.splitlines() if line.startswith(("user:", "assistant:"))), "")
        return {"summary": f"SUMMARY OF: {first[:80]}"}
    return {}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    # Real LLM servers (uvicorn, nginx) send small SSE events at once; without TCP_NODELAY each
    # event after the first waits for the client's delayed ACK (~40 ms on Linux).
    disable_nagle_algorithm = True

    def log_message(self, format, *args):  # quiet
        pass

    def _send_json(self, status, body, headers=None):
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
        else:
            self._send_json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self):
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": f"Unknown path {self.path}", "type": "invalid_request_error"}})
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send_json(400, {"error": {"message": "Invalid JSON body", "type": "invalid_request_error"}})
            return
        if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
            self._send_json(
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
            return
        name = structured_name(body, fake.structured_names)
        if name is not None:
            if body["response_format"].get("type") == "json_schema" and not fake.json_schema_supported:
                # As DeepSeek answers: the client falls back to json_object.
                self._send_json(
                    400,
                    {
                        "error": {
                            "message": "This response_format type is unavailable now",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": "invalid_request_error",
                        }
                    },
                )
                fake._record_structured("refused", body)
                return
            behaviour = fake._next_structured(name, body)
            fake._record_structured(name, body)
        else:
            behaviour = fake._next(body)
            fake._record(body, dict(self.headers))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client went away
            self._respond(fake, body, behaviour)

    def _respond(self, fake, body, behaviour):
        if isinstance(behaviour, Hang):
            fake._closed.wait(behaviour.seconds)
            self.close_connection = True
            return
        if isinstance(behaviour, ErrorReply):
            self._send_json(
                behaviour.status,
                {"error": {"message": behaviour.message, "type": behaviour.type, "code": None}},
                behaviour.headers,
            )
            return
        created = int(time.time())
        ident = f"chatcmpl-fake{fake.request_count}"
        model = body.get("model", "fake-model")
        if isinstance(behaviour, ToolCalls):
            self._respond_tool_calls(behaviour, body, ident, created, model)
            return
        reply: Reply = behaviour
        if reply.ttft:
            time.sleep(reply.ttft)
        if not body.get("stream"):
            if reply.pause_after is not None:  # the whole body waits for release()
                fake._release.wait(30)
            self._send_json(
                200,
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": 10, "completion_tokens": len(tokenize(reply.text)), "total_tokens": 10},
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def event(payload: str):
            data = f"data: {payload}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def chunk(delta, finish=None):
            return json.dumps(
                {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                },
                ensure_ascii=False,
            )

        event(chunk({"role": "assistant", "content": ""}))
        interval = 1.0 / reply.tokens_per_s if reply.tokens_per_s else 0.0
        next_at = time.perf_counter()
        for index, token in enumerate(tokenize(reply.text)):
            if index == reply.pause_after:
                fake._release.wait(30)
            if index == reply.drop_after:
                self.close_connection = True
                self.wfile.flush()
                self.connection.shutdown(2)
                return
            if index == reply.malformed_after:
                event('{"id": "broken", "choices": [{"delta": {"content": "x"')
                self.wfile.write(b"0\r\n\r\n")
                return
            if interval and index:
                next_at += interval
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            event(chunk({"content": token}))
        event(chunk({}, "stop"))
        event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _respond_tool_calls(self, reply: ToolCalls, body, ident, created, model):
        if reply.ttft:
            time.sleep(reply.ttft)
        calls = [
            (
                f"call_{ident.removeprefix('chatcmpl-fake')}_{index}",
                name,
                args if isinstance(args, str) else json.dumps(args, ensure_ascii=False),
            )
            for index, (name, args) in enumerate(reply.calls)
        ]
        if not body.get("stream"):
            message = {
                "role": "assistant",
                "content": reply.text or None,
                "tool_calls": [
                    {"id": cid, "type": "function", "function": {"name": name, "arguments": args}}
                    for cid, name, args in calls
                ],
            }
            self._send_json(
                200,
                {
                    "id": ident,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
                },
            )
            return
        self._start_stream()
        chunk = functools.partial(_chunk, ident=ident, created=created, model=model)
        self._event(chunk({"role": "assistant", "content": ""}))
        for token in tokenize(reply.text):
            self._event(chunk({"content": token}))
        for index, (cid, name, args) in enumerate(calls):
            first = {"index": index, "id": cid, "type": "function", "function": {"name": name, "arguments": ""}}
            self._event(chunk({"tool_calls": [first]}))
            for at in range(0, len(args), max(1, reply.chunk_chars)):
                piece = args[at : at + reply.chunk_chars]
                self._event(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        self._event(chunk({}, reply.finish_reason))
        self._event("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _start_stream(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _event(self, payload: str):
        data = f"data: {payload}\n\n".encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


def _chunk(delta, finish=None, *, ident, created, model) -> str:
    return json.dumps(
        {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        },
        ensure_ascii=False,
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client went away (a closed stream, a dropped keep-alive connection): not news
        super().handle_error(request, client_address)


class FakeLLMServer:
    def __init__(
        self, *, api_key: str = "sk-test", default: Reply | None = None, host: str = "127.0.0.1", port: int = 0
    ):
        self.api_key = api_key
        self.default = default or Reply("好的。")
        self.title_default = Reply("测试标题")
        self.requests: list[dict] = []  # chat requests (streamed or not), structured ones apart
        self.headers: list[dict] = []
        self.structured_requests: dict[str, list[dict]] = {}
        self.structured_names = ["memory_update", "conversation_summary"]
        self.json_schema_supported = True
        self._structured: dict[str, list] = {}
        self.request_count = 0
        self._script: list = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._closed = threading.Event()
        self._got_request = threading.Condition(self._lock)
        self._httpd = _Server((host, port), _Handler)
        self._httpd.fake = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-llm", daemon=True)

    # -- scripting ------------------------------------------------------------------------------
    def queue(self, *behaviours):
        """Behaviours for the next requests, in order (any request: streamed or not)."""
        with self._lock:
            self._script.extend(behaviours)

    def queue_structured(self, name: str, *answers):
        """Answers for the next structured requests of schema `name`, in order: a dict or list (sent
        as its JSON text), a str (sent as is: prose, code fences, garbage), or a Reply/ErrorReply/Hang."""
        with self._lock:
            self._structured.setdefault(name, []).extend(answers)

    def wait_for_structured(self, name: str, count: int, timeout: float = 10.0) -> bool:
        with self._got_request:
            return self._got_request.wait_for(lambda: len(self.structured_requests.get(name, [])) >= count, timeout)

    def release(self):
        """Let a Reply(pause_after=...) continue."""
        self._release.set()

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        with self._got_request:
            return self._got_request.wait_for(lambda: self.request_count >= count, timeout)

    def reset(self):
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.headers.clear()
            self.request_count = 0
            self._release.clear()
            self._structured.clear()
            self.structured_requests.clear()
            self.json_schema_supported = True

    def _next(self, body):
        with self._lock:
            if self._script:
                return self._script.pop(0)
            return self.default if body.get("stream") else self.title_default

    def _next_structured(self, name, body):
        with self._lock:
            queued = self._structured.get(name)
            answer = queued.pop(0) if queued else default_structured(name, body)
        if isinstance(answer, Reply | ErrorReply | Hang | ToolCalls):
            return answer
        return Reply(answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False))

    def _record_structured(self, name, body):
        with self._got_request:
            self.structured_requests.setdefault(name, []).append(body)
            self._got_request.notify_all()

    def _record(self, body, headers):
        with self._got_request:
            self.requests.append(body)
            self.headers.append(headers)
            self.request_count += 1
            self._got_request.notify_all()

    def settings(self) -> dict:
        """The LLM settings that point the site at this server (Django settings, or a child
        process's environment variables)."""
        return {
            "LLM_API_KEY": self.api_key,
            "LLM_BASE_URL": self.base_url,
            "LLM_MODEL": "fake-model",
            "LLM_TITLE_MODEL": "fake-model",
            "LLM_MAX_RETRIES": 0,
        }

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._closed.set()
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    """`python -m devtools.fake_llm`: serve one scripted reply to every request until stopped (benchmarks run
    it in its own process so that its work never competes with the clients being measured)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-test")
    parser.add_argument("--reply", default="好的。", help="the reply's text")
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds before the first token")
    parser.add_argument("--tokens-per-s", type=float, default=0.0, help="0: as fast as possible")
    args = parser.parse_args(argv)
    server = FakeLLMServer(
        api_key=args.api_key, port=args.port, default=Reply(args.reply, ttft=args.ttft, tokens_per_s=args.tokens_per_s)
    )
    server.title_default = server.default
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    with server:
        print(server.base_url, flush=True)
        stopped.wait()


if __name__ == "__main__":
    main()
