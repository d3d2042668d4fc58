"""Memory writes: the user's own edits, their settings and persona, and the background job that
reads each finished turn (extraction of memories, rolling summaries of long conversations)."""

import asyncio
import logging

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import llm
from chat.models import Conversation, Message
from chat.selectors import llm_history
from magicmirror.errors import ApplicationError

from . import structured
from .models import ConversationMemory, Memory, MemoryProfile, SpeakerPersona
from .recall import Candidate, recall
from .selectors import memory_get, memory_list, speaker_persona_get

logger = logging.getLogger(__name__)

EXTRACT_MAX_MESSAGES = 8  # of one turn's run: a backlog (the LLM was down) is read newest first
EXTRACT_MESSAGE_MAX_CHARS = 1000
EXTRACT_KNOWN_MAX_CHARS = 3000  # the memories shown to the extractor: the relevant ones
SUMMARY_INPUT_MAX_CHARS = 8000
SUMMARY_MESSAGE_MAX_CHARS = 600
PERSONA_LIMITS = {"name": 40, "personality": 300, "address": 100}


# --- The user's own edits -------------------------------------------------------------------


def memory_text_clean(text) -> str:
    # The length is checked on the text as given, as the API schema's maxLength says; then tidied.
    too_long = isinstance(text, str) and len(text) > settings.MEMORY_TEXT_MAX_CHARS
    text = " ".join(text.split()) if isinstance(text, str) else ""
    if not text:
        raise ApplicationError("A memory needs some text.", code="invalid_memory")
    if too_long:
        raise ApplicationError(
            f"A memory is at most {settings.MEMORY_TEXT_MAX_CHARS} characters.", code="memory_too_long"
        )
    return text


def _duplicate() -> ApplicationError:
    return ApplicationError("You already have this memory.", code="duplicate_memory", status_code=409)


def memory_create(*, user, text) -> Memory:
    text = memory_text_clean(text)
    if memory_list(user=user).count() >= settings.MEMORY_MAX_PER_USER:
        raise ApplicationError(
            f"You have {settings.MEMORY_MAX_PER_USER} memories; delete some to add another.",
            code="memory_limit",
            status_code=409,
        )
    try:
        with transaction.atomic():
            return Memory.objects.create(owner=user, text=text, source=Memory.Source.USER, confirmed_at=timezone.now())
    except IntegrityError:
        raise _duplicate() from None


def memory_update(*, user, memory_id, text) -> Memory:
    text = memory_text_clean(text)
    try:
        with transaction.atomic():
            memory = memory_get(user=user, memory_id=memory_id, for_update=True)
            if memory.text != text:
                memory.text = text
                memory.confirmed_at = timezone.now()
                memory.save(update_fields=["text", "confirmed_at", "updated_at"])
            return memory
    except IntegrityError:
        raise _duplicate() from None


def memory_delete(*, user, memory_id) -> None:
    memory_get(user=user, memory_id=memory_id).delete()


def memory_forget_all(*, user) -> int:
    """Every memory of the user goes (conversations and their summaries stay, until deleted)."""
    deleted, _ = Memory.objects.filter(owner=user).delete()
    return deleted


def _persona_clean(field: str, value) -> str:
    value = " ".join(value.split()) if isinstance(value, str) else ""
    if len(value) > PERSONA_LIMITS[field]:
        raise ApplicationError(
            f"The persona's {field} is at most {PERSONA_LIMITS[field]} characters.", code="invalid_persona"
        )
    return value


def memory_settings_update(*, user, enabled: bool | None = None, persona: dict | None = None) -> MemoryProfile:
    """Memory on or off, and the persona's fields (blank: the default)."""
    with transaction.atomic():
        profile, _ = MemoryProfile.objects.select_for_update().get_or_create(user=user)
        if enabled is not None:
            profile.enabled = enabled
        for field, value in (persona or {}).items():
            setattr(profile, f"persona_{field}", _persona_clean(field, value))
        profile.save()
    return profile


def speaker_persona_update(*, user, speaker_id, persona: dict) -> SpeakerPersona:
    """A voice's own persona; blank fields take the user's."""
    own = speaker_persona_get(user=user, speaker_id=speaker_id)
    for field, value in persona.items():
        setattr(own, field, _persona_clean(field, value))
    own.save()
    return own


# --- The background job after each turn -----------------------------------------------------

EXTRACT_PROMPT = (
    "You keep the long-term memory of a voice companion about its user. Read the latest messages of "
    "a conversation and the memories already kept, and answer with one JSON object, memory_update: "
    '{"add": [text, ...], "update": [{"id": id, "text": text}, ...], "remove": [id, ...], "confirm": [id, ...]}.\n'
    "- Keep only lasting facts and preferences about the user that the USER said (never what the "
    "assistant said): their name and how they like to be called, family, home, work, health, likes "
    "and dislikes, plans. Not the small talk of the moment.\n"
    "- Each memory is one short phrase in the user's language, at most 60 characters, about the user "
    '(e.g. "叫小明", "喜欢爬山", "女儿在上海读大学").\n'
    "- A fact that changed replaces the old memory: update it with its id (e.g. moved from 北京 to 上海), "
    "never add a second one that contradicts it.\n"
    "- The user asks you to forget something, or says it is wrong: remove it.\n"
    "- A memory the user said again: confirm it.\n"
    "- Nothing to change: four empty lists."
)

SUMMARY_PROMPT = (
    "Summarise the earlier part of a conversation between a user and a voice companion, for the "
    "companion to continue it. Answer with one JSON object, conversation_summary: "
    '{"summary": text}. Write the summary in the language of the conversation, at most {max_chars} '
    "characters: what was talked about, what the user asked and told, what was agreed or left open. "
    "Fold the previous summary, if any, into the new one."
)


def _memory_state(conversation_id) -> ConversationMemory:
    state, _ = ConversationMemory.objects.get_or_create(conversation_id=conversation_id)
    return state


def _ask(messages, *, name: str, schema: dict, max_tokens: int, job: str) -> tuple[str, str]:
    """A job's structured request to MEMORY_LLM_MODEL: (the answer's text, "") or ("", the LLM error's
    code), the failure logged as `job`'s."""
    try:
        return asyncio.run(
            llm.complete_structured(
                messages, name=name, schema=schema, max_tokens=max_tokens, model=settings.MEMORY_LLM_MODEL
            )
        ), ""
    except llm.LLMError as exc:
        logger.warning("%s: the LLM failed (%s)", job, exc.code)
        return "", exc.code


def _transcript(rows) -> str:
    return "\n".join(f"{role}: {content[:EXTRACT_MESSAGE_MAX_CHARS]}" for _, role, content in rows)


def memory_extract(*, conversation: Conversation, through_message_id: int) -> str:
    """Read the conversation's messages the job has not read yet (up to `through_message_id`) and
    apply what the LLM says to remember, change or forget. Returns what happened, for the log.

    Memory off: the messages are passed over (never read later). An answer that is not the
    expected JSON changes nothing, is logged and passed over too; an LLM failure leaves the
    messages for the next turn's run. Two runs of one conversation never both apply: the cursor
    moves only from where the run started."""
    state = _memory_state(conversation.pk)
    start = state.extracted_through
    if through_message_id <= start:
        return "already read"
    if MemoryProfile.objects.filter(user_id=conversation.owner_id, enabled=False).exists():
        ConversationMemory.objects.filter(pk=state.pk, extracted_through=start).update(
            extracted_through=through_message_id
        )
        return "memory off"
    rows = list(
        conversation.messages.filter(pk__gt=start, pk__lte=through_message_id)
        .exclude(content="")
        .exclude(role=Message.Role.SYSTEM)
        .order_by("-id")
        .values_list("id", "role", "content")[:EXTRACT_MAX_MESSAGES]
    )
    rows.reverse()
    user_rows = [row for row in rows if row[1] == Message.Role.USER]
    if not user_rows:
        ConversationMemory.objects.filter(pk=state.pk, extracted_through=start).update(
            extracted_through=through_message_id
        )
        return "nothing said"
    candidates = [
        Candidate(id=pk, text=text, confirmed_at=confirmed)
        for pk, text, confirmed in Memory.objects.filter(owner_id=conversation.owner_id)
        .order_by("created_at", "id")
        .values_list("id", "text", "confirmed_at")
    ]
    known = recall(candidates, [content for _, _, content in rows], budget=EXTRACT_KNOWN_MAX_CHARS, now=timezone.now())
    known_text = "\n".join(f"{m.id}: {m.text}" for m in known) or "(none)"
    messages = [
        {"role": "system", "content": EXTRACT_PROMPT},
        {
            "role": "user",
            "content": f"Memories kept (id: text):\n{known_text}\n\nLatest messages:\n{_transcript(rows)}",
        },
    ]
    answer, failed = _ask(
        messages,
        name=structured.MEMORY_UPDATE,
        schema=structured.MEMORY_UPDATE_SCHEMA,
        max_tokens=600,
        job=f"Memory job of conversation {conversation.pk}",
    )
    if failed:
        ConversationMemory.objects.filter(pk=state.pk).update(last_error=failed)
        return f"llm error {failed}"
    changes = structured.memory_changes(answer)
    if changes is None:
        logger.warning("Memory job of conversation %s: malformed answer ignored: %.200r", conversation.pk, answer)
        ConversationMemory.objects.filter(pk=state.pk, extracted_through=start).update(
            extracted_through=through_message_id, last_error="memory_malformed"
        )
        return "malformed"
    return _apply(
        conversation=conversation,
        state=state,
        start=start,
        through_message_id=through_message_id,
        changes=changes,
        known_ids={m.id for m in known},
        source_message_id=user_rows[-1][0],
    )


def _clean_learnt(text: str) -> str | None:
    text = " ".join(text.split())
    return text[: settings.MEMORY_TEXT_MAX_CHARS] if text else None


def _apply(*, conversation, state, start, through_message_id, changes, known_ids, source_message_id) -> str:
    owner_id = conversation.owner_id
    now = timezone.now()
    counts = {"added": 0, "updated": 0, "removed": 0, "confirmed": 0}
    with transaction.atomic():
        moved = ConversationMemory.objects.filter(pk=state.pk, extracted_through=start).update(
            extracted_through=through_message_id, last_error=""
        )
        if not moved:
            return "read by another run"
        mine = Memory.objects.filter(owner_id=owner_id)
        # Only the memories the LLM was shown can be changed or removed by it.
        remove = [pk for pk in changes.remove if pk in known_ids]
        counts["removed"] = mine.filter(pk__in=remove).delete()[0]
        for pk, text in changes.update:
            text = _clean_learnt(text)
            if pk not in known_ids or pk in remove or text is None:
                continue
            if mine.filter(text=text).exclude(pk=pk).exists():  # it now says what another one says
                mine.filter(pk=pk).delete()
                mine.filter(text=text).update(confirmed_at=now)
            else:
                mine.filter(pk=pk).update(text=text, confirmed_at=now, source_message_id=source_message_id)
            counts["updated"] += 1
        confirm = [pk for pk in changes.confirm if pk in known_ids]
        counts["confirmed"] = mine.filter(pk__in=confirm).update(confirmed_at=now)
        room = settings.MEMORY_MAX_PER_USER - mine.count()
        for text in changes.add:
            text = _clean_learnt(text)
            if text is None:
                continue
            if mine.filter(text=text).update(confirmed_at=now):
                counts["confirmed"] += 1
            elif room > 0:
                Memory.objects.create(
                    owner_id=owner_id,
                    text=text,
                    source=Memory.Source.CONVERSATION,
                    source_message_id=source_message_id,
                    confirmed_at=now,
                )
                room -= 1
                counts["added"] += 1
            else:
                logger.info("User %s has %s memories: one more was not kept", owner_id, settings.MEMORY_MAX_PER_USER)
    return ", ".join(f"{n} {what}" for what, n in counts.items())


def conversation_summarize(*, conversation: Conversation, max_messages: int, max_chars: int) -> str:
    """When the messages after the summary no longer fit the history window, fold the older ones
    into the summary, keeping about half a window as they are (so the next turns need no new summary)."""
    state = _memory_state(conversation.pk)
    start = state.summary_through
    rows = list(
        conversation.messages.filter(pk__gt=start)
        .exclude(content="")
        .exclude(role=Message.Role.SYSTEM)
        .order_by("id")
        .values_list("id", "role", "content")
    )
    window = len(
        llm_history(conversation=conversation, max_messages=max_messages, max_chars=max_chars, after_message_id=start)
    )
    if len(rows) <= window:
        return "fits the window"
    keep = max(2, window // 2)
    older = rows[: len(rows) - keep]
    lines, used = [], 0
    for _, role, content in reversed(older):  # the newest of them first, within the input budget
        line = f"{role}: {content[:SUMMARY_MESSAGE_MAX_CHARS]}"
        if used + len(line) > SUMMARY_INPUT_MAX_CHARS:
            break
        lines.append(line)
        used += len(line)
    lines.reverse()
    previous = state.summary or "(none)"
    messages = [
        {"role": "system", "content": SUMMARY_PROMPT.replace("{max_chars}", str(settings.MEMORY_SUMMARY_MAX_CHARS))},
        {"role": "user", "content": f"Previous summary:\n{previous}\n\nMessages to fold in:\n" + "\n".join(lines)},
    ]
    answer, failed = _ask(
        messages,
        name=structured.CONVERSATION_SUMMARY,
        schema=structured.CONVERSATION_SUMMARY_SCHEMA,
        max_tokens=900,
        job=f"Summary of conversation {conversation.pk}",
    )
    if failed:
        return f"llm error {failed}"
    summary = structured.summary_text(answer)
    if summary is None:
        logger.warning("Summary of conversation %s: malformed answer ignored: %.200r", conversation.pk, answer)
        return "malformed"
    ConversationMemory.objects.filter(pk=state.pk, summary_through=start).update(
        summary=summary[: settings.MEMORY_SUMMARY_MAX_CHARS], summary_through=older[-1][0]
    )
    return f"summarised {len(older)} messages"


def conversation_after_turn(
    *, conversation_id: int, through_message_id: int, extract: bool, summarize: bool, window: tuple[int, int]
) -> dict:
    """The background job of one finished turn (memory.tasks): memories, then the summary."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        return {"conversation": "gone"}
    done = {}
    if extract:
        done["memory"] = memory_extract(conversation=conversation, through_message_id=through_message_id)
    if summarize:
        done["summary"] = conversation_summarize(conversation=conversation, max_messages=window[0], max_chars=window[1])
    logger.info("After the turn in conversation %s: %s", conversation_id, done)
    return done
