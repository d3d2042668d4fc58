from django.conf import settings
from django.db.models import QuerySet

from magicmirror.errors import NotFound

from .models import Conversation, Message


def conversation_list(*, user) -> QuerySet[Conversation]:
    """The user's conversations, newest activity first."""
    return Conversation.objects.filter(owner=user).order_by("-updated_at", "-id")


def conversation_get(*, user, conversation_id) -> Conversation:
    """The user's conversation, or NotFound (another user's conversation looks like none)."""
    try:
        return Conversation.objects.get(owner=user, pk=int(conversation_id))
    except (Conversation.DoesNotExist, ValueError, TypeError):
        raise NotFound("Conversation not found.", code="conversation_not_found") from None


def message_list(*, conversation) -> QuerySet[Message]:
    return conversation.messages.order_by("created_at", "id")


def llm_history(*, conversation, max_messages=None, max_chars=None, pending_user_text=None) -> list[dict]:
    """The conversation's most recent messages as LLM chat messages, oldest first.

    Newest messages are taken until either budget is spent; the newest one is always kept (cut to
    the character budget if it alone exceeds it). Empty replies (failed turns) are skipped.
    `pending_user_text` is a user message not saved yet: the newest of all. `conversation=None`: a
    conversation with nothing saved yet (no query).
    """
    max_messages = settings.LLM_HISTORY_MAX_MESSAGES if max_messages is None else max_messages
    max_chars = settings.LLM_HISTORY_MAX_CHARS if max_chars is None else max_chars
    limit = max(max_messages, 1)
    pending = [(Message.Role.USER, pending_user_text)] if pending_user_text else []
    saved = (
        conversation.messages.exclude(content="")
        .exclude(role=Message.Role.SYSTEM)
        .order_by("-created_at", "-id")
        .values_list("role", "content")[: limit - len(pending)]
        if limit > len(pending) and conversation is not None
        else []
    )
    recent = [*pending, *saved]
    picked: list[dict] = []
    used = 0
    for role, content in recent:
        if picked and used + len(content) > max_chars:
            break
        if not picked and len(content) > max_chars:
            content = content[-max_chars:]
        picked.append({"role": role, "content": content})
        used += len(content)
    picked.reverse()
    # A history must not start with an assistant turn for some OpenAI-compatible servers.
    while picked and picked[0]["role"] == Message.Role.ASSISTANT:
        picked.pop(0)
    return picked


def llm_messages(*, conversation, pending_user_text=None) -> list[dict]:
    history = llm_history(conversation=conversation, pending_user_text=pending_user_text)
    return [{"role": "system", "content": settings.LLM_SYSTEM_PROMPT}, *history]
