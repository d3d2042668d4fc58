"""The OpenAPI schema shows the tool calls of messages and the chat stream's tool events."""

from drf_spectacular.generators import SchemaGenerator


def test_messages_and_events_of_tools_are_in_the_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    message = components["MessageOutput"]["properties"]
    assert message["tool_calls"]["type"] == "array"
    assert message["tool_calls"]["items"] == {"$ref": "#/components/schemas/ToolCallOutput"}
    assert set(components["ToolCallOutput"]["required"]) == {"id", "name", "arguments", "outcome", "result"}
    events = {c["$ref"].rsplit("/", 1)[-1] for c in components["ChatEvent"]["oneOf"]}
    assert {"ToolCallEvent", "ToolResultEvent", "EffectEvent"} <= events
    assert set(
        components["UserSettingsOutput" if "UserSettingsOutput" in components else "SettingsOutput"]["properties"]
    ) >= {"time_zone"}
