"""A client that goes away mid-reply: the reply is still saved, marked interrupted."""

import asyncio
import json

import pytest
from django.core.asgi import get_asgi_application
from django.utils.crypto import get_random_string

from chat.models import Message
from devtools.fake_llm import Reply

pytestmark = pytest.mark.django_db(transaction=True)


async def test_reply_saved_when_client_disconnects(async_client, user, fake_llm):
    await async_client.aforce_login(user)
    session = async_client.cookies["sessionid"].value
    csrf = get_random_string(32)
    fake_llm.queue(Reply("First words then much more that never arrives", pause_after=2))

    body = json.dumps({"message": "Tell me a long story"}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/chat",
        "raw_path": b"/api/chat",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cookie", f"sessionid={session}; csrftoken={csrf}".encode()),
            (b"x-csrftoken", csrf.encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    received_deltas = asyncio.Event()
    disconnect = asyncio.Event()
    sent = []
    request_sent = False

    async def receive():
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)
        if message["type"] == "http.response.body" and b"event: delta" in message.get("body", b""):
            deltas = b"".join(m.get("body", b"") for m in sent).count(b"event: delta")
            if deltas >= 2:
                received_deltas.set()

    app = get_asgi_application()
    handler = asyncio.create_task(app(scope, receive, send))
    await asyncio.wait_for(received_deltas.wait(), 10)
    disconnect.set()  # the browser tab closes while the LLM is still writing
    await asyncio.wait_for(handler, 10)
    fake_llm.release()

    assert sent[0]["status"] == 200
    reply = await Message.objects.aget(role="assistant", conversation__owner=user)
    assert reply.content == "First words "
    assert reply.interrupted is True
    user_message = await Message.objects.aget(role="user", conversation__owner=user)
    assert user_message.content == "Tell me a long story"
