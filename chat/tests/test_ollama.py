"""With no LLM_API_KEY, a local Ollama is found and used (chat/llm_endpoint.py), against a fake Ollama of
the test's own: a real HTTP server speaking Ollama's model lists (/api/tags, /v1/models) and its
OpenAI-compatible streamed chat completions."""

import http.server
import io
import json
import logging
import socket
import threading

import pytest
from django.core.management import call_command

from chat import llm, llm_endpoint

MODELS = ["qwen2.5:0.5b", "llama3.2:1b"]


class FakeOllama(http.server.BaseHTTPRequestHandler):
    tags = True  # False: an older server without /api/tags, only the OpenAI-style list
    requests: list = []

    def log_message(self, *args):
        pass

    def _json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.requests.append(("GET", self.path, None))
        if self.path == "/api/tags" and self.tags:
            self._json(200, {"models": [tag(name) for name in MODELS]})
        elif self.path == "/v1/models":
            data = [{"id": n, "object": "model", "created": 1735689600, "owned_by": "library"} for n in MODELS]
            self._json(200, {"object": "list", "data": data})
        else:
            self._json(404, {"error": "404 page not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("POST", self.path, body))
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": "404 page not found"})
            return
        if not body.get("stream"):
            message = {"role": "assistant", "content": "你好，我是本地模型。"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            usage = {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
            self._json(
                200,
                {
                    "id": "chatcmpl-43",
                    "object": "chat.completion",
                    "created": 1735689600,
                    "model": body["model"],
                    "system_fingerprint": "fp_ollama",
                    "choices": [choice],
                    "usage": usage,
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece, finish in (("你好，", None), ("我是本地模型。", None), ("", "stop")):
            chunk = {
                "id": "chatcmpl-42",
                "object": "chat.completion.chunk",
                "created": 1735689600,
                "model": body["model"],
                "system_fingerprint": "fp_ollama",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": piece}, "finish_reason": finish}],
            }
            self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def tag(name):
    """An /api/tags entry as Ollama 0.5+ writes it."""
    return {
        "name": name,
        "model": name,
        "modified_at": "2025-01-01T00:00:00.000000000Z",
        "size": 397821319,
        "digest": "a8b0c51577010a279d933d14c2f8f5c5e1e0c4a2" + "0" * 24,
        "details": {
            "parent_model": "",
            "format": "gguf",
            "family": "qwen2",
            "families": ["qwen2"],
            "parameter_size": "494.03M",
            "quantization_level": "Q4_K_M",
        },
    }


@pytest.fixture(autouse=True)
def fresh_endpoint():
    llm_endpoint.reset()
    yield
    llm_endpoint.reset()


@pytest.fixture
def ollama(settings):
    handler = type("Handler", (FakeOllama,), {"requests": [], "tags": True})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.LLM_API_KEY = ""
    settings.OLLAMA_URL = f"http://127.0.0.1:{server.server_address[1]}"
    settings.OLLAMA_MODEL = ""
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def status() -> str:
    out = io.StringIO()
    call_command("voice_status", stdout=out)
    return out.getvalue()


async def reply_text() -> str:
    return "".join([piece async for piece in llm.stream_reply([{"role": "user", "content": "你好"}])])


async def test_without_a_key_a_local_ollama_answers_with_its_first_model(ollama, settings, caplog):
    with caplog.at_level(logging.INFO, logger="chat.llm_endpoint"):
        assert await reply_text() == "你好，我是本地模型。"
    post = [r for r in ollama.requests if r[0] == "POST"]
    assert [(path, body["model"]) for _, path, body in post] == [("/v1/chat/completions", "qwen2.5:0.5b")]
    assert post[0][2]["stream"] is True and post[0][2]["messages"] == [{"role": "user", "content": "你好"}]
    # Said once, as it is found (the start-up line of a web process).
    assert [r.getMessage() for r in caplog.records if r.name == "chat.llm_endpoint"] == [
        f"LLM: Ollama at {settings.OLLAMA_URL}, model qwen2.5:0.5b (no LLM_API_KEY set)"
    ]
    # Titles and memory, which name their own model, go to the Ollama model too.
    assert await llm.complete([{"role": "user", "content": "title"}], model="deepseek-chat") == "你好，我是本地模型。"
    assert ollama.requests[-1][2]["model"] == "qwen2.5:0.5b"


def test_voice_status_and_the_start_up_line_say_which_llm(ollama, settings, caplog):
    with caplog.at_level(logging.INFO, logger="chat.llm_endpoint"):
        assert llm_endpoint.log_at_start().source == "ollama"
    assert f"LLM: Ollama at {settings.OLLAMA_URL}, model qwen2.5:0.5b" in caplog.text
    assert f"LLM: Ollama at {settings.OLLAMA_URL}, model qwen2.5:0.5b (no LLM_API_KEY set)\n" in status()


def test_the_configured_ollama_model_and_the_openai_style_list(ollama, settings):
    settings.OLLAMA_MODEL = "llama3.2:1b"
    assert llm_endpoint.llm_endpoint().model == "llama3.2:1b"
    settings.OLLAMA_MODEL = "absent:7b"  # not on the server: its first model rather than a 404 per turn
    assert llm_endpoint.llm_endpoint().model == "qwen2.5:0.5b"
    ollama.tags = False  # a server with only the OpenAI-compatible list
    settings.OLLAMA_MODEL = "llama3.2:1b"
    endpoint = llm_endpoint.llm_endpoint()
    assert (endpoint.source, endpoint.model) == ("ollama", "llama3.2:1b")
    assert endpoint.base_url == f"{settings.OLLAMA_URL}/v1"
    assert ("GET", "/v1/models", None) in ollama.requests


def test_a_key_wins_and_ollama_is_not_asked(ollama, settings):
    settings.LLM_API_KEY = "sk-real"
    endpoint = llm_endpoint.llm_endpoint()
    assert (endpoint.source, endpoint.model, endpoint.base_url) == (
        "configured",
        settings.LLM_MODEL,
        settings.LLM_BASE_URL,
    )
    assert ollama.requests == []


async def test_no_key_and_no_ollama_is_todays_not_configured_message(settings, caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.LLM_API_KEY = ""
    settings.OLLAMA_URL = f"http://127.0.0.1:{port}"
    with pytest.raises(llm.LLMError) as info:
        await reply_text()
    assert info.value.code == "llm_not_configured"
    assert "must set LLM_API_KEY" in str(info.value)
    with caplog.at_level(logging.WARNING, logger="chat.llm_endpoint"):
        llm_endpoint.log_at_start()
    assert f"no Ollama answers at http://127.0.0.1:{port}" in caplog.text
    assert "LLM: NOT CONFIGURED (LLM_API_KEY is not set and no Ollama answers at" in status()
