"""Conversation and message writes."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from magicmirror.errors import ApplicationError

from ..models import Conversation, Message
from ..selectors import conversation_get


def _clean_title(title) -> str:
    if not isinstance(title, str):
        raise ApplicationError("The title must be text.", code="invalid_title")
    title = " ".join(title.split())
    if len(title) > settings.CONVERSATION_TITLE_MAX_CHARS:
        raise ApplicationError(
            f"The title is longer than {settings.CONVERSATION_TITLE_MAX_CHARS} characters.",
            code="invalid_title",
        )
    return title


def conversation_create(*, user, title: str = "", final: bool | None = None) -> Conversation:
    """A new conversation. A title given is final (kept) unless `final=False` (a placeholder)."""
    title = _clean_title(title)
    return Conversation.objects.create(owner=user, title=title, title_is_final=bool(title) if final is None else final)


def conversation_rename(*, user, conversation_id, title: str) -> Conversation:
    conversation = conversation_get(user=user, conversation_id=conversation_id)
    conversation.title = _clean_title(title)
    conversation.title_is_final = bool(conversation.title)  # clearing it lets a new one be generated
    conversation.save(update_fields=["title", "title_is_final", "updated_at"])
    return conversation


def conversation_delete(*, user, conversation_id) -> None:
    conversation_get(user=user, conversation_id=conversation_id).delete()


def conversation_clear(*, user, conversation_id) -> int:
    """Delete all messages of a conversation (its memory); the conversation itself stays."""
    conversation = conversation_get(user=user, conversation_id=conversation_id)
    with transaction.atomic():
        deleted, _ = conversation.messages.all().delete()
        conversation.save(update_fields=["updated_at"])
    return deleted


def message_text_clean(text) -> str:
    if not isinstance(text, str):
        raise ApplicationError("The message must be text.", code="invalid_message")
    text = text.strip()
    if not text:
        raise ApplicationError("The message is empty.", code="invalid_message")
    if len(text) > settings.CHAT_MESSAGE_MAX_CHARS:
        raise ApplicationError(
            f"The message is longer than {settings.CHAT_MESSAGE_MAX_CHARS} characters.",
            code="message_too_long",
        )
    return text


def message_create(*, conversation, role, content, **fields) -> Message:
    with transaction.atomic(savepoint=False):  # part of the caller's transaction, if any
        message = Message.objects.create(conversation=conversation, role=role, content=content, **fields)
        # Touch the conversation so "newest first" follows activity.
        Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now())
    return message
