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
    *,
    conversation,
    max_messages=None,
    max_chars=None,
    pending_user_text=None,
    after_message_id=0,
    replay_tools=False,
) -> list[dict]:
    """The conversation's most recent messages as LLM chat messages, oldest first.

    Newest messages are taken until either budget is spent; the newest one is always kept (cut to
    the character budget if it alone exceeds it). Empty replies (failed turns) are skipped.
    `pending_user_text` is a user message not saved yet: the newest of all. `conversation=None`: a
    conversation with nothing saved yet (no query). `after_message_id`: only later messages (the
    older ones are sent as their summary). `replay_tools`: a reply that called tools is sent as the
    LLM made it (its text cut at each round of calls, the calls, their results: `tool_messages`), else
    as its text alone (one item per message).
    """
    max_messages = settings.LLM_HISTORY_MAX_MESSAGES if max_messages is None else max_messages
    max_chars = settings.LLM_HISTORY_MAX_CHARS if max_chars is None else max_chars
    limit = max(max_messages, 1)
    pending: list[tuple[str, str, list]] = [("user", pending_user_text, [])] if pending_user_text else []
    saved = (
        conversation.messages.exclude(content="")
        .exclude(role=Message.Role.SYSTEM)
        .filter(pk__gt=after_message_id or 0)
        .order_by("-created_at", "-id")
        .values_list("role", "content", "tool_calls")[: limit - len(pending)]
        if limit > len(pending) and conversation is not None
        else []
    )
    recent = [*pending, *saved]
    picked: list[tuple[str, str, list]] = []
    used = 0
    for role, content, calls in recent:
        calls = (calls or []) if replay_tools else []
        size = len(content) + sum(len(c.get("arguments") or "") + len(c.get("result") or "") for c in calls)
        if picked and used + size > max_chars:
            break
        if not picked and size > max_chars:
            content, calls = content[-max_chars:], []
            size = len(content)
        picked.append((role, content, calls))
        used += size
    picked.reverse()
    history = [m for role, content, calls in picked for m in tool_messages(role, content, calls)]
    # A history must not start with an assistant turn (or a tool result) for some OpenAI-compatible servers.
    while history and history[0]["role"] in (Message.Role.ASSISTANT, "tool"):
        history.pop(0)
    return history


def tool_messages(role: str, content: str, calls: list[dict]) -> list[dict]:
    """One saved message as the LLM chat messages it was: a reply with tool calls is its text up to
    each round of calls, an assistant message with those calls, a `tool` message per result, and the
    rest of its text."""
    if role != Message.Role.ASSISTANT or not calls:
        return [{"role": role, "content": content}]
    rounds: dict[int, list[dict]] = {}
    for call in calls:
        rounds.setdefault(call.get("round", 1), []).append(call)
    messages: list[dict] = []
    written = 0
    for number in sorted(rounds):
        batch = rounds[number]
        # A reply cut short keeps only what was heard: an offset past its end is its end.
        offset = min(max(int(batch[0].get("offset") or 0), written), len(content))
        messages.append(
            {
                "role": "assistant",
                "content": content[written:offset] or None,
                "tool_calls": [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c.get("arguments") or "{}"},
                    }
                    for c in batch
                ],
            }
        )
        messages.extend({"role": "tool", "tool_call_id": c["id"], "content": c.get("result") or ""} for c in batch)
        written = offset
    if content[written:]:
        messages.append({"role": "assistant", "content": content[written:]})
    return messages


def llm_messages(*, conversation, pending_user_text=None, user=None, speaker_id=None) -> list[dict]:
    """The request of a turn: the system message (the site's prompt, the persona, recalled memories,
    the summary of the conversation's older part; memory.selectors), then the history after that
    summary. `user` defaults to the conversation's owner; `speaker_id` is the voice reading the reply."""
    summary, summary_through = conversation_summary_get(conversation=conversation)
    history = llm_history(
        conversation=conversation,
        pending_user_text=pending_user_text,
        after_message_id=summary_through,
        replay_tools=True,
    )
    user_id = user.pk if user is not None else (conversation.owner_id if conversation is not None else None)
    said = [m for m in history if m["role"] in ("user", "assistant") and m["content"]]  # what recall reads
    system = request_system_message(user_id=user_id, speaker_id=speaker_id, history=said, summary=summary)
    return [{"role": "system", "content": system}, *history]
