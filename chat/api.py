"""Chat JSON API: conversations, streamed chat (SSE), clearing a conversation's memory."""

import json

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import renderers, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from magicmirror.api import ServiceTextField, TextField
from magicmirror.openapi import ConstField, api_errors, sse_event

from .models import Message
from .selectors import conversation_get, conversation_list, message_list
from .services.conversations import (
    conversation_clear,
    conversation_create,
    conversation_delete,
    conversation_rename,
    message_text_clean,
)
from .services.limits import turn_budget_take
from .services.replies import reply_stream, tool_calls_public


class ToolCallOutput(serializers.Serializer):
    id = serializers.CharField(help_text="The LLM's id of the call.")
    name = serializers.CharField(help_text="The tool called.")
    arguments = serializers.CharField(help_text="Its arguments, JSON text as the LLM wrote them.")
    outcome = serializers.ChoiceField(
        choices=["ok", "error", "invalid", "timeout", "unknown_tool", "cancelled"],
        help_text="ok; error (the tool refused or failed); invalid (arguments not valid for its schema); timeout "
        "(over TOOLS_TIMEOUT_S); unknown_tool; cancelled (the turn was interrupted while it ran).",
    )
    result = serializers.CharField(help_text='What the LLM was told: the result\'s JSON text, or {"error": ...}.')


class MessageOutput(serializers.ModelSerializer):
    tool_calls = serializers.SerializerMethodField()
    reminder_id = serializers.SerializerMethodField(
        help_text="The reminder this assistant message delivered when it fired; null for any other message."
    )

    class Meta:
        model = Message
        fields = [
            "id",
            "role",
            "content",
            "source",
            "interrupted",
            "error_code",
            "speaker_id",
            "tool_calls",
            "reminder_id",
            "created_at",
        ]

    @extend_schema_field(ToolCallOutput(many=True))
    def get_tool_calls(self, message) -> list[dict]:
        return tool_calls_public(message.tool_calls if isinstance(message, Message) else message.get("tool_calls"))

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_reminder_id(self, message) -> int | None:
        if not isinstance(message, Message):
            return message.get("reminder_id")
        reminder = getattr(message, "reminder", None)  # reminders.Reminder.message (reverse one-to-one)
        return reminder.pk if reminder is not None else None


class ConversationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


NOT_FOUND = {404: "`conversation_not_found`: not one of your conversations."}


class ConversationDetailOutput(ConversationOutput):
    messages = MessageOutput(many=True, source="ordered_messages")


class TitleInput(serializers.Serializer):
    title = TextField(max_length=settings.CONVERSATION_TITLE_MAX_CHARS, allow_blank=True, trim_whitespace=True)


class ConversationCreateInput(serializers.Serializer):
    title = TextField(max_length=settings.CONVERSATION_TITLE_MAX_CHARS, allow_blank=True, required=False, default="")


def _detail(conversation):
    conversation.ordered_messages = list(message_list(conversation=conversation).select_related("reminder"))
    return ConversationDetailOutput(conversation).data


class ConversationListApi(APIView):
    @extend_schema(responses=ConversationOutput(many=True), summary="My conversations, newest first")
    def get(self, request):
        return Response(ConversationOutput(conversation_list(user=request.user), many=True).data)

    @extend_schema(
        request=ConversationCreateInput, responses={201: ConversationOutput}, summary="Create a conversation"
    )
    def post(self, request):
        serializer = ConversationCreateInput(data=request.data)  # an empty body is an empty object
        serializer.is_valid(raise_exception=True)
        conversation = conversation_create(user=request.user, **serializer.validated_data)
        return Response(ConversationOutput(conversation).data, status=status.HTTP_201_CREATED)


class ConversationDetailApi(APIView):
    @extend_schema(
        responses={200: ConversationDetailOutput, **api_errors(NOT_FOUND)}, summary="A conversation with its messages"
    )
    def get(self, request, conversation_id):
        return Response(_detail(conversation_get(user=request.user, conversation_id=conversation_id)))

    @extend_schema(
        request=TitleInput,
        responses={200: ConversationOutput, **api_errors(NOT_FOUND)},
        summary="Rename a conversation",
    )
    def patch(self, request, conversation_id):
        conversation_get(user=request.user, conversation_id=conversation_id)  # 404 before 400
        serializer = TitleInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        conversation = conversation_rename(
            user=request.user, conversation_id=conversation_id, title=serializer.validated_data["title"]
        )
        return Response(ConversationOutput(conversation).data)

    @extend_schema(responses={204: None, **api_errors(NOT_FOUND)}, summary="Delete a conversation and its messages")
    def delete(self, request, conversation_id):
        conversation_delete(user=request.user, conversation_id=conversation_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ClearHistoryInput(serializers.Serializer):
    conversation_id = serializers.IntegerField()


class ClearHistoryApi(APIView):
    @extend_schema(
        request=ClearHistoryInput,
        responses={
            200: inline_serializer(
                "ClearHistoryOutput",
                {"conversation_id": serializers.IntegerField(), "deleted": serializers.IntegerField()},
            ),
            **api_errors(NOT_FOUND),
        },
        summary="Delete a conversation's messages (its memory)",
    )
    def post(self, request):
        serializer = ClearHistoryInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        conversation_id = serializer.validated_data["conversation_id"]
        deleted = conversation_clear(user=request.user, conversation_id=conversation_id)
        return Response({"conversation_id": conversation_id, "deleted": deleted})


class ChatInput(serializers.Serializer):
    message = ServiceTextField(max_chars_setting="CHAT_MESSAGE_MAX_CHARS")
    conversation_id = serializers.IntegerField(required=False, allow_null=True, help_text="Omitted or null: a new one.")


# The events of POST /api/chat (chat.services.replies.reply_stream): each `data:` repeats its `type`.
class ConversationEventData(serializers.Serializer):
    type = ConstField("conversation")
    conversation = inline_serializer(
        "EventConversation", {"id": serializers.IntegerField(), "title": serializers.CharField(allow_blank=True)}
    )


class UserMessageEventData(serializers.Serializer):
    type = ConstField("user_message")
    message = MessageOutput(help_text="The user's message, saved.")


class DeltaEventData(serializers.Serializer):
    type = ConstField("delta")
    text = serializers.CharField(help_text="The next piece of the reply.")


class DoneEventData(serializers.Serializer):
    type = ConstField("done")
    message = MessageOutput(allow_null=True, help_text="The reply, saved; null when the LLM's reply was empty.")


class ErrorEventData(serializers.Serializer):
    type = ConstField("error")
    code = serializers.CharField(help_text="One of the LLM error codes (docs/api.md).")
    message = serializers.CharField()
    message_id = serializers.IntegerField(allow_null=True, help_text="The saved reply with what had arrived, or null.")


class ToolCallEventData(serializers.Serializer):
    type = ConstField("tool_call")
    calls = inline_serializer(
        "EventToolCall",
        {"id": serializers.CharField(), "name": serializers.CharField(), "arguments": serializers.CharField()},
        many=True,
        help_text="The tools the LLM called in this round (they run at once).",
    )


class ToolResultEventData(serializers.Serializer):
    type = ConstField("tool_result")
    id = serializers.CharField()
    name = serializers.CharField()
    outcome = serializers.CharField(help_text="As a message's tool_calls[].outcome.")
    result = serializers.CharField(help_text="What the LLM is told (JSON text); the reply's text continues after it.")


class EffectEventData(serializers.Serializer):
    type = ConstField("effect")
    effect = serializers.ChoiceField(
        choices=["speaker", "new_conversation"],
        help_text="speaker: replies are now read in this voice (the user's current speaker); new_conversation: "
        "the next message starts a new conversation.",
    )
    speaker = inline_serializer(
        "EventSpeaker", {"id": serializers.IntegerField(), "name": serializers.CharField()}, required=False
    )


class TitleEventData(serializers.Serializer):
    type = ConstField("title")
    conversation_id = serializers.IntegerField()
    title = serializers.CharField()


CHAT_EVENTS = PolymorphicProxySerializer(
    component_name="ChatEvent",
    serializers=[
        sse_event("conversation", ConversationEventData),
        sse_event("user_message", UserMessageEventData),
        sse_event("delta", DeltaEventData),
        sse_event("tool_call", ToolCallEventData),
        sse_event("tool_result", ToolResultEventData),
        sse_event("effect", EffectEventData),
        sse_event("done", DoneEventData),
        sse_event("error", ErrorEventData),
        sse_event("title", TitleEventData),
    ],
    resource_type_field_name=None,
)


def sse(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


async def _sse_stream(events):
    try:
        async for event in events:
            yield sse(event)
    finally:
        # Closing the event stream saves whatever reply text has arrived (client gone).
        await events.aclose()


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets clients send `Accept: text/event-stream`. It renders nothing: the stream is not a DRF
    response, and errors before it are JSON (ChatApi.finalize_response)."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data, ensure_ascii=False).encode()


class ChatApi(APIView):
    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]

    @extend_schema(
        request=ChatInput,
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                CHAT_EVENTS,
                description="Server-sent events, each one of these: conversation, user_message, delta* (with "
                "tool_call, tool_result and effect between them when the LLM calls tools), then done or error, then "
                "(first exchange only) title. See docs/api.md.",
            ),
            **api_errors(
                {
                    400: "`invalid_message`: empty or only whitespace; `message_too_long`: over "
                    "CHAT_MESSAGE_MAX_CHARS.",
                    404: NOT_FOUND[404],
                    429: "`rate_limited`: over RATELIMIT_CHAT (turns from this API and the voice WebSocket together).",
                }
            ),
        },
        summary="Send a message; the reply streams back as server-sent events",
    )
    def post(self, request):
        serializer = ChatInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        message_text_clean(data["message"])
        conversation_id = data.get("conversation_id")
        if conversation_id is not None:
            conversation_get(user=request.user, conversation_id=conversation_id)
        turn_budget_take(user=request.user)  # one budget with the voice WebSocket's turns
        events = reply_stream(user=request.user, conversation_id=conversation_id, text=data["message"])
        response = StreamingHttpResponse(_sse_stream(events), content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, Response):  # an error before the stream: JSON, whatever Accept chose
            request.accepted_renderer, request.accepted_media_type = renderers.JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)
