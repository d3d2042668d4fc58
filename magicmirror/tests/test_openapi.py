"""The OpenAPI schema (magicmirror/openapi.py) says what the API answers: every error in the one error
shape, the audio and event-stream media types, the chat events. tests/test_schemathesis.py checks the
schema against a live server; these check its shape, fast."""

import re
import sys

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema

from magicmirror.openapi import NOT_BLANK

ERROR = {"$ref": "#/components/schemas/ErrorOutput"}


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def error_statuses(operation):
    return {
        status
        for status, response in operation["responses"].items()
        if response.get("content", {}).get("application/json", {}).get("schema") == ERROR
    }


def test_schema_is_valid_openapi_3_1(schema):
    assert schema["openapi"] == "3.1.0"
    validate_schema(schema)


def test_every_operation_declares_its_errors_in_the_error_shape(schema):
    for name, operation in operations(schema):
        errors = error_statuses(operation)
        assert {"403", "406"} <= errors, name  # auth and CSRF; content negotiation
        if "requestBody" in operation:
            assert {"400", "415"} <= errors, name
        if "{" in name:
            assert "404" in errors, name
        for status, response in operation["responses"].items():
            if status >= "400":
                assert status in errors and response["description"], (name, status)


@pytest.mark.parametrize(
    ("operation", "statuses"),
    [
        ("POST /api/auth/token", {"400", "429"}),
        ("POST /api/chat", {"400", "404", "429"}),
        ("POST /api/clear_history", {"404"}),
        ("POST /api/recognize", {"400", "413", "429", "502", "503"}),
        ("POST /api/speakers", {"400", "409", "413"}),
        ("PATCH /api/speakers/{speaker_id}", {"400", "404", "409", "413"}),
        ("PATCH /api/settings", {"404"}),
        ("POST /api/tts", {"400", "404", "422", "429", "502", "503"}),
        ("POST /api/tts/stream", {"400", "404", "422", "429", "502", "503"}),
    ],
)
def test_the_views_own_errors(schema, operation, statuses):
    assert statuses <= error_statuses(dict(operations(schema))[operation])


def test_the_token_route_needs_no_authentication(schema):
    token = dict(operations(schema))["POST /api/auth/token"]
    assert "security" not in token
    assert token["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/AuthTokenOutput"
    }
    assert all("security" in operation for name, operation in operations(schema) if name != "POST /api/auth/token")


def test_audio_media_types(schema):
    ops = dict(operations(schema))
    binary = {"type": "string", "format": "binary"}
    stream = ops["POST /api/tts/stream"]["responses"]["200"]
    assert {media: body["schema"] for media, body in stream["content"].items()} == {
        "audio/wav": binary,
        "application/octet-stream": binary,
    }
    assert {"X-Sample-Rate", "X-Audio-Format", "X-TTS-Engine"} <= set(stream["headers"])
    whole = ops["POST /api/tts"]["responses"]["200"]
    assert whole["content"] == {"audio/wav": {"schema": binary}} and "X-Duration" in whole["headers"]
    assert ops["GET /api/speakers/{speaker_id}/audio"]["responses"]["200"]["content"] == {
        "audio/wav": {"schema": binary}
    }


def test_chat_events_have_a_schema_each(schema):
    response = dict(operations(schema))["POST /api/chat"]["responses"]["200"]
    assert list(response["content"]) == ["text/event-stream"]
    components = schema["components"]["schemas"]
    assert response["content"]["text/event-stream"]["schema"] == {"$ref": "#/components/schemas/ChatEvent"}
    events = {}
    for choice in components["ChatEvent"]["oneOf"]:
        event = components[choice["$ref"].rsplit("/", 1)[-1]]
        name = event["properties"]["event"]["const"]
        data = event["properties"]["data"]
        assert data["type"] == "string" and data["contentMediaType"] == "application/json"
        events[name] = components[data["contentSchema"]["$ref"].rsplit("/", 1)[-1]]
    assert set(events) == {
        "conversation",
        "user_message",
        "delta",
        "tool_call",
        "tool_result",
        "effect",
        "done",
        "error",
        "title",
    }
    for name, payload in events.items():
        assert payload["properties"]["type"] == {"type": "string", "const": name}
    assert events["delta"]["required"] == ["text", "type"]
    assert {"$ref": "#/components/schemas/MessageOutput"} in events["done"]["properties"]["message"]["oneOf"]


def test_errors_before_the_chat_stream_are_json_only(schema):
    responses = dict(operations(schema))["POST /api/chat"]["responses"]
    assert all(list(r["content"]) == ["application/json"] for status, r in responses.items() if status >= "400")


def test_settings_take_the_current_speaker(schema):
    """docs/api.md: PATCH /api/settings sets `current_speaker_id` (null: the default voice)."""
    body = dict(operations(schema))["PATCH /api/settings"]["requestBody"]["content"]
    ref = body["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert schema["components"]["schemas"][ref]["properties"]["current_speaker_id"]["type"] == ["integer", "null"]


def test_form_bodies_read_an_empty_value_as_null_or_left_out(schema):
    components = schema["components"]["schemas"]
    body = dict(operations(schema))["POST /api/tts"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/TTSInputRequest"}
    form = body["application/x-www-form-urlencoded"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert body["multipart/form-data"]["schema"]["$ref"].endswith(form)
    speaker_id = components[form]["properties"]["speaker_id"]
    assert speaker_id["anyOf"][1] == {"type": "string", "const": ""}
    assert speaker_id["anyOf"][0]["type"] == "integer"  # no null in a form
    assert "anyOf" not in components[form]["properties"]["text"]  # required: empty is refused


def test_text_fields_say_what_drf_refuses(schema):
    components = schema["components"]["schemas"]
    message = components["ChatInputRequest"]["properties"]["message"]
    assert (message["minLength"], message["maxLength"], message["pattern"]) == (1, 4000, NOT_BLANK)
    assert components["SpeakerCreateInputRequest"]["properties"]["name"]["pattern"] == NOT_BLANK
    assert components["TitleInputRequest"]["properties"]["title"]["pattern"] == r"^[^\u0000]*$"


def test_not_blank_is_pythons_whitespace():
    """The pattern (ECMA regex; its \\s is not Python's) matches exactly what str.strip() keeps."""
    pattern = re.compile(NOT_BLANK)
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        assert bool(pattern.fullmatch(char)) == (bool(char.strip()) and char != "\0"), hex(code)
    assert pattern.fullmatch(" \t 你好 \u3000") and not pattern.fullmatch(" \x1c\u3000\x85 ")
