import json

import pytest
from django.test import Client

from chat.models import Conversation, Message

pytestmark = pytest.mark.django_db


def make_conversation(owner, title="", messages=()):
    conversation = Conversation.objects.create(owner=owner, title=title, title_is_final=bool(title))
    for role, content in messages:
        Message.objects.create(conversation=conversation, role=role, content=content)
    return conversation


def test_create_list_newest_first(api, user):
    first = api.post("/api/conversations", {"title": "旅行计划 ✈️"}, content_type="application/json")
    assert first.status_code == 201
    assert first.json()["title"] == "旅行计划 ✈️"
    second = api.post("/api/conversations", content_type="application/json")
    assert second.status_code == 201 and second.json()["title"] == ""
    listed = api.get("/api/conversations").json()
    assert [c["id"] for c in listed] == [second.json()["id"], first.json()["id"]]
    # Activity moves a conversation to the top.
    Message.objects.create(conversation_id=first.json()["id"], role="user", content="hi")
    Conversation.objects.filter(pk=first.json()["id"]).update(
        updated_at=Conversation.objects.get(pk=second.json()["id"]).updated_at
    )
    api.patch(f"/api/conversations/{first.json()['id']}", {"title": "renamed"}, content_type="application/json")
    assert api.get("/api/conversations").json()[0]["id"] == first.json()["id"]


def test_detail_includes_messages_in_order(api, user):
    conversation = make_conversation(user, "t", [("user", "你好"), ("assistant", "你好！😀"), ("user", "再见")])
    data = api.get(f"/api/conversations/{conversation.pk}").json()
    assert data["title"] == "t"
    assert [(m["role"], m["content"]) for m in data["messages"]] == [
        ("user", "你好"),
        ("assistant", "你好！😀"),
        ("user", "再见"),
    ]


def test_rename_and_delete(api, user):
    conversation = make_conversation(user, "old", [("user", "x")])
    response = api.patch(
        f"/api/conversations/{conversation.pk}", {"title": "  new   title "}, content_type="application/json"
    )
    assert response.status_code == 200 and response.json()["title"] == "new title"
    conversation.refresh_from_db()
    assert conversation.title == "new title" and conversation.title_is_final
    assert api.delete(f"/api/conversations/{conversation.pk}").status_code == 204
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert not Message.objects.filter(conversation_id=conversation.pk).exists()


def test_clear_history(api, user):
    conversation = make_conversation(user, "keep me", [("user", "a"), ("assistant", "b")])
    response = api.post("/api/clear_history", {"conversation_id": conversation.pk}, content_type="application/json")
    assert response.status_code == 200
    assert response.json() == {"conversation_id": conversation.pk, "deleted": 2}
    assert Conversation.objects.get(pk=conversation.pk).title == "keep me"
    assert conversation.messages.count() == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("get", "/api/conversations/{id}", None),
        ("patch", "/api/conversations/{id}", {"title": "stolen"}),
        ("delete", "/api/conversations/{id}", None),
        ("post", "/api/clear_history", {"conversation_id": "{id}"}),
        ("post", "/api/chat", {"message": "hi", "conversation_id": "{id}"}),
    ],
)
def test_another_users_conversation_is_404(api, other_user, method, path, body):
    theirs = make_conversation(other_user, "private", [("user", "secret")])
    if body:
        body = {k: (theirs.pk if v == "{id}" else v) for k, v in body.items()}
    response = getattr(api, method)(path.format(id=theirs.pk), body, content_type="application/json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "conversation_not_found"
    theirs.refresh_from_db()
    assert theirs.title == "private"
    assert list(theirs.messages.values_list("content", flat=True)) == ["secret"]
    assert response.json()["error"]["message"] == "Conversation not found."


def test_list_shows_only_own(api, user, other_user):
    mine = make_conversation(user, "mine")
    make_conversation(other_user, "theirs")
    assert [c["id"] for c in api.get("/api/conversations").json()] == [mine.pk]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/conversations"),
        ("post", "/api/conversations"),
        ("get", "/api/conversations/1"),
        ("post", "/api/chat"),
        ("post", "/api/clear_history"),
        ("get", "/api/speakers"),
        ("get", "/api/settings"),
    ],
)
def test_login_required(client, method, path):
    response = getattr(client, method)(path)
    assert response.status_code in (401, 403)
    assert response.json()["error"]["code"] == "not_authenticated"


def test_unknown_ids_and_routes(api):
    assert api.get("/api/conversations/999999").status_code == 404
    response = api.get("/api/no-such-route")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    ("path", "raw", "code"),
    [
        ("/api/chat", "{not json", "parse_error"),
        ("/api/chat", "[1, 2]", "invalid"),
        ("/api/chat", '{"message": 42}', "invalid"),
        ("/api/chat", '{"conversation_id": 1}', "invalid"),
        ("/api/chat", '{"message": "   "}', "invalid_message"),
        ("/api/chat", '{"message": "hi", "conversation_id": "abc"}', "invalid"),
        ("/api/conversations", '{"title": ' + '"' + "x" * 101 + '"}', "invalid"),
        ("/api/conversations", "{oops", "parse_error"),
        ("/api/conversations", "[]", "invalid"),  # a body, but not an object
        ("/api/conversations", "null", "invalid"),
        ("/api/clear_history", "{}", "invalid"),
        ("/api/clear_history", '{"conversation_id": "nope"}', "invalid"),
    ],
)
def test_bad_input_is_a_clear_4xx(api, user, path, raw, code):
    response = api.post(path, raw, content_type="application/json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert not Message.objects.exists()


def test_message_too_long(api, user, settings):
    settings.CHAT_MESSAGE_MAX_CHARS = 50
    response = api.post("/api/chat", {"message": "长" * 51}, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "message_too_long"
    assert "50" in response.json()["error"]["message"]


def test_chat_is_rate_limited(api, user, fake_llm, settings):
    settings.RATELIMIT_CHAT = "2/h"  # an hour window: a minute boundary mid-test would reset the count
    statuses = []
    for _ in range(3):
        response = api.post("/api/chat", {"message": "hi"}, content_type="application/json")
        statuses.append(response.status_code)
        if response.status_code == 200:
            b"".join(response)  # consume the stream
    assert statuses == [200, 200, 429]
    assert response.json()["error"]["code"] == "rate_limited"


def test_csrf_enforced_for_session_clients(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/api/conversations", {"title": "x"}, content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]["message"]
    assert not Conversation.objects.exists()


def test_token_auth(client, user):
    response = client.post("/api/auth/token", {"username": "alice", "password": "correct-horse-9"})
    assert response.status_code == 200
    token = response.json()["token"]
    listed = Client().get("/api/conversations", HTTP_AUTHORIZATION=f"Token {token}")
    assert listed.status_code == 200 and listed.json() == []
    wrong = client.post("/api/auth/token", {"username": "alice", "password": "nope"})
    assert wrong.status_code == 400


def test_openapi_schema_needs_login(client):
    assert client.get("/api/schema/").status_code == 403


def test_openapi_schema(api):
    response = api.get("/api/schema/")
    assert response.status_code == 200
    body = response.content.decode()
    for route in ("/api/conversations", "/api/chat", "/api/clear_history", "/api/speakers/{speaker_id}/switch"):
        assert route in body


def test_chat_accepts_event_stream_clients(api, user, fake_llm):
    response = api.post(
        "/api/chat", {"message": "hi"}, content_type="application/json", HTTP_ACCEPT="text/event-stream"
    )
    assert response.status_code == 200
    assert b"event: done" in b"".join(response)
    bad = api.post("/api/chat", {"message": ""}, content_type="application/json", HTTP_ACCEPT="text/event-stream")
    assert bad.status_code == 400
    assert bad["Content-Type"] == "application/json"  # an error is JSON, whatever Accept asked for
    assert json.loads(bad.content)["error"]["code"] == "invalid_message"
