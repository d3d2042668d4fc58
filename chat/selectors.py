from django.conf import settings
from django.db.models import QuerySet

from magicmirror.errors import NotFound
from memory.selectors import conversation_summary_get, request_system_message

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


def llm_history(
    *, conversation, max_messages=None, max_chars=None, pending_user_text=None, after_message_id=0
) -> list[dict]:
    """The conversation's most recent messages as LLM chat messages, oldest first.

    Newest messages are taken until either budget is spent; the newest one is always kept (cut to
    the character budget if it alone exceeds it). Empty replies (failed turns) are skipped.
    `pending_user_text` is a user message not saved yet: the newest of all. `conversation=None`: a
    conversation with nothing saved yet (no query). `after_message_id`: only later messages (the
    older ones are sent as their summary).
    """
    max_messages = settings.LLM_HISTORY_MAX_MESSAGES if max_messages is None else max_messages
    max_chars = settings.LLM_HISTORY_MAX_CHARS if max_chars is None else max_chars
    limit = max(max_messages, 1)
    pending = [(Message.Role.USER, pending_user_text)] if pending_user_text else []
    saved = (
        conversation.messages.exclude(content="")
        .exclude(role=Message.Role.SYSTEM)
        .filter(pk__gt=after_message_id or 0)
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


def llm_messages(*, conversation, pending_user_text=None, user=None, speaker_id=None) -> list[dict]:
    """The request of a turn: the system message (the site's prompt, the persona, recalled memories,
    the summary of the conversation's older part; memory.selectors), then the history after that
    summary. `user` defaults to the conversation's owner; `speaker_id` is the voice reading the reply."""
    summary, summary_through = conversation_summary_get(conversation=conversation)
    history = llm_history(
        conversation=conversation, pending_user_text=pending_user_text, after_message_id=summary_through
    )
    user_id = user.pk if user is not None else (conversation.owner_id if conversation is not None else None)
    system = request_system_message(user_id=user_id, speaker_id=speaker_id, history=history, summary=summary)
    return [{"role": "system", "content": system}, *history]
