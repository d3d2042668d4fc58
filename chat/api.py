"""Chat JSON API: conversations, streamed chat (SSE), clearing a conversation's memory."""

import json

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils.decorators import method_decorator
from django_ratelimit.decorators import ratelimit
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import renderers, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from magicmirror.api import TextField

from .models import Message
from .selectors import conversation_get, conversation_list, message_list
from .services.conversations import (
    conversation_clear,
    conversation_create,
    conversation_delete,
    conversation_rename,
    message_text_clean,
)
from .services.replies import reply_stream


def chat_rate(group, request):
    return settings.RATELIMIT_CHAT


class MessageOutput(serializers.ModelSerializer):
    class Meta:
        model = Message
        fields = ["id", "role", "content", "source", "interrupted", "error_code", "speaker_id", "created_at"]


class ConversationOutput(serializers.Serializer):
    id = serializers.IntegerField()
    title = serializers.CharField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class ConversationDetailOutput(ConversationOutput):
    messages = MessageOutput(many=True, source="ordered_messages")


class TitleInput(serializers.Serializer):
    title = TextField(max_length=settings.CONVERSATION_TITLE_MAX_CHARS, allow_blank=True, trim_whitespace=True)


class ConversationCreateInput(serializers.Serializer):
    title = TextField(max_length=settings.CONVERSATION_TITLE_MAX_CHARS, allow_blank=True, required=False, default="")


def _detail(conversation):
    conversation.ordered_messages = list(message_list(conversation=conversation))
    return ConversationDetailOutput(conversation).data


class ConversationListApi(APIView):
    @extend_schema(responses=ConversationOutput(many=True), summary="My conversations, newest first")
    def get(self, request):
        return Response(ConversationOutput(conversation_list(user=request.user), many=True).data)

    @extend_schema(
        request=ConversationCreateInput, responses={201: ConversationOutput}, summary="Create a conversation"
    )
    def post(self, request):
        data = request.data if request.data else {}
        serializer = ConversationCreateInput(data=data)
        serializer.is_valid(raise_exception=True)
        conversation = conversation_create(user=request.user, **serializer.validated_data)
        return Response(ConversationOutput(conversation).data, status=status.HTTP_201_CREATED)


class ConversationDetailApi(APIView):
    @extend_schema(responses=ConversationDetailOutput, summary="A conversation with its messages")
    def get(self, request, conversation_id):
        return Response(_detail(conversation_get(user=request.user, conversation_id=conversation_id)))

    @extend_schema(request=TitleInput, responses=ConversationOutput, summary="Rename a conversation")
    def patch(self, request, conversation_id):
        conversation_get(user=request.user, conversation_id=conversation_id)  # 404 before 400
        serializer = TitleInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        conversation = conversation_rename(
            user=request.user, conversation_id=conversation_id, title=serializer.validated_data["title"]
        )
        return Response(ConversationOutput(conversation).data)

    @extend_schema(responses={204: None}, summary="Delete a conversation and its messages")
    def delete(self, request, conversation_id):
        conversation_delete(user=request.user, conversation_id=conversation_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ClearHistoryInput(serializers.Serializer):
    conversation_id = serializers.IntegerField()


class ClearHistoryApi(APIView):
    @extend_schema(
        request=ClearHistoryInput,
        responses=inline_serializer(
            "ClearHistoryOutput", {"conversation_id": serializers.IntegerField(), "deleted": serializers.IntegerField()}
        ),
        summary="Delete a conversation's messages (its memory)",
    )
    def post(self, request):
        serializer = ClearHistoryInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        conversation_id = serializer.validated_data["conversation_id"]
        deleted = conversation_clear(user=request.user, conversation_id=conversation_id)
        return Response({"conversation_id": conversation_id, "deleted": deleted})


class ChatInput(serializers.Serializer):
    message = TextField(trim_whitespace=False, allow_blank=True)
    conversation_id = serializers.IntegerField(required=False, allow_null=True)


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
    """Lets clients send `Accept: text/event-stream`; errors before the stream are still JSON."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data, ensure_ascii=False).encode()


class ChatApi(APIView):
    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]

    @extend_schema(
        request=ChatInput,
        responses={200: OpenApiResponse(OpenApiTypes.STR, description="text/event-stream; see docs/api.md")},
        summary="Send a message; the reply streams back as server-sent events",
    )
    @method_decorator(ratelimit(key="user", rate=chat_rate, method="POST", block=True))
    def post(self, request):
        serializer = ChatInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        message_text_clean(data["message"])
        conversation_id = data.get("conversation_id")
        if conversation_id is not None:
            conversation_get(user=request.user, conversation_id=conversation_id)
        events = reply_stream(user=request.user, conversation_id=conversation_id, text=data["message"])
        response = StreamingHttpResponse(_sse_stream(events), content_type="text/event-stream; charset=utf-8")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: do not buffer the stream
        return response
