import json

import pytest

from chat.models import Conversation, Message
from devtools.fake_llm import ErrorReply, Hang, Reply

pytestmark = pytest.mark.django_db(transaction=True)


async def sse_events(response):
    body = b"".join([part async for part in response.streaming_content]).decode()
    events = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        event = json.loads(lines["data"])
        assert event["type"] == lines["event"]
        events.append(event)
    return events


async def chat(api, message, conversation_id=None):
    payload = {"message": message}
    if conversation_id is not None:
        payload["conversation_id"] = conversation_id
    response = await api.post("/api/chat", payload, content_type="application/json")
    assert response.status_code == 200, response.content
    return response


@pytest.fixture
async def api(async_client, user):
    """Through Django's ASGI handler, as under daphne."""
    await async_client.aforce_login(user)
    return async_client


async def test_streamed_reply_is_saved_and_titled(api, user, fake_llm):
    fake_llm.queue(Reply("你好！我是 MagicMirror。很高兴认识你。"), Reply("初次见面"))
    response = await chat(api, "你好 😀")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/event-stream")
    events = await sse_events(response)
    types = [e["type"] for e in events]
    assert types[0] == "conversation" and types[1] == "user_message"
    assert types.count("delta") > 3
    deltas = "".join(e["text"] for e in events if e["type"] == "delta")
    assert deltas == "你好！我是 MagicMirror。很高兴认识你。"
    done = next(e for e in events if e["type"] == "done")
    title = next(e for e in events if e["type"] == "title")
    assert title["title"] == "初次见面"

    conversation = await Conversation.objects.aget(owner=user)
    assert conversation.title == "初次见面" and conversation.title_is_final
    messages = [m async for m in conversation.messages.values_list("role", "content")]
    assert messages == [("user", "你好 😀"), ("assistant", deltas)]
    assert done["message"]["id"] == (await conversation.messages.aget(role="assistant")).pk
    # The system prompt and the user's message reached the LLM, streamed.
    sent = fake_llm.requests[0]
    assert sent["stream"] is True and sent["model"] == "fake-model"
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][-1] == {"role": "user", "content": "你好 😀"}


async def test_history_is_sent_on_later_turns(api, user, fake_llm):
    fake_llm.queue(Reply("Nice to meet you, Bob."), Reply("Meeting Bob"), Reply("Your name is Bob."))
    first = await sse_events(await chat(api, "My name is Bob."))
    conversation_id = first[0]["conversation"]["id"]
    second = await sse_events(await chat(api, "What is my name?", conversation_id))
    assert "title" not in [e["type"] for e in second]  # titled once only
    sent = fake_llm.requests[2]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "My name is Bob."
    assert sent[2]["content"] == "Nice to meet you, Bob."
    assert sent[3]["content"] == "What is my name?"


@pytest.mark.parametrize(
    ("behaviour", "code"),
    [
        (ErrorReply(500, "boom"), "llm_server_error"),
        (ErrorReply(429, "slow down", "rate_limit_exceeded"), "llm_rate_limited"),
        (ErrorReply(503, "overloaded"), "llm_server_error"),
        (ErrorReply(404, "no such model", "invalid_request_error"), "llm_bad_config"),
        (Reply("Half a sentence and then garbage", malformed_after=3), "llm_bad_response"),
        (Reply("Cut off in the middle of it", drop_after=3), "llm_unreachable"),
    ],
)
async def test_llm_failures_are_clear_errors(api, user, fake_llm, behaviour, code):
    fake_llm.queue(behaviour)
    events = await sse_events(await chat(api, "hello"))
    error = events[-1]
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["message"]
    messages = Message.objects.filter(conversation__owner=user)
    assert (await messages.aget(role="user")).content == "hello"
    reply = await messages.aget(role="assistant")
    assert reply.error_code == code


async def test_partial_reply_kept_when_stream_breaks(api, user, fake_llm):
    fake_llm.queue(Reply("One two three four five", drop_after=3))
    events = await sse_events(await chat(api, "count"))
    assert events[-1]["type"] == "error"
    reply = await Message.objects.aget(role="assistant", conversation__owner=user)
    assert reply.content == "One two three "
    assert reply.interrupted is True


async def test_bad_api_key(api, fake_llm, settings):
    settings.LLM_API_KEY = "sk-wrong"
    events = await sse_events(await chat(api, "hello"))
    assert events[-1]["code"] == "llm_auth"
    assert "API key" in events[-1]["message"]


async def test_timeout(api, fake_llm, settings):
    settings.LLM_TIMEOUT = 0.3
    fake_llm.queue(Hang(2.0))
    events = await sse_events(await chat(api, "hello"))
    assert events[-1]["code"] == "llm_timeout"


async def test_retry_only_before_streaming(api, fake_llm, settings):
    settings.LLM_MAX_RETRIES = 1
    fake_llm.queue(ErrorReply(503, "overloaded", headers={"retry-after-ms": "1"}), Reply("Recovered."))
    events = await sse_events(await chat(api, "hello"))
    assert "".join(e["text"] for e in events if e["type"] == "delta") == "Recovered."
    assert fake_llm.request_count >= 2


async def test_no_retry_after_stream_started(api, user, fake_llm, settings):
    settings.LLM_MAX_RETRIES = 2
    fake_llm.queue(Reply("Partial answer here", drop_after=2), Reply("SHOULD NOT BE USED"))
    events = await sse_events(await chat(api, "hello"))
    assert events[-1]["type"] == "error"
    assert fake_llm.request_count == 1


async def test_llm_not_configured(api, user, settings):
    settings.LLM_API_KEY = ""
    events = await sse_events(await chat(api, "hello"))
    assert events[-1] == {
        "type": "error",
        "code": "llm_not_configured",
        "message": events[-1]["message"],
        "message_id": events[-1]["message_id"],
    }
    assert "not configured" in events[-1]["message"]
    assert (await Message.objects.aget(role="user")).content == "hello"


async def test_title_falls_back_when_llm_title_fails(api, user, fake_llm):
    fake_llm.queue(Reply("Sure, here is a plan."), ErrorReply(500, "title failed"))
    events = await sse_events(await chat(api, "Help me plan a trip to Hangzhou next spring please"))
    title = next(e for e in events if e["type"] == "title")["title"]
    assert title.startswith("Help me plan")
    assert (await Conversation.objects.aget(owner=user)).title == title


async def test_llm_is_asked_while_the_user_message_is_saved(api, user, fake_llm, monkeypatch):
    """docs/protocol.md (Persistence): the request to the LLM does not wait for the user's message
    to be written; that row is still saved before any of the reply is sent."""
    from chat.services import replies

    save = replies.turn_save_user_message
    asked_during_save = []

    def slow_save(**kwargs):
        # Holds the save until the LLM has the request: a save that came first would wait in vain.
        asked_during_save.append(fake_llm.wait_for_requests(1, timeout=5))
        return save(**kwargs)

    monkeypatch.setattr(replies, "turn_save_user_message", slow_save)
    events = await sse_events(await chat(api, "你好"))
    assert asked_during_save == [True]
    assert [e["type"] for e in events][:3] == ["conversation", "user_message", "delta"]
    assert events[1]["message"]["id"] == (await Message.objects.aget(role="user")).pk
