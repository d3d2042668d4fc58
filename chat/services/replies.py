"""One chat turn: save the user's message, stream the LLM's reply, save the reply.

`reply_stream` is an async generator of events (plain dicts) shared by the SSE API and the
WebSocket consumer. The reply is saved whatever happens: when it completes, when the LLM fails
part-way (what arrived is kept, with the error code), and when the consumer stops listening
(client gone, barge-in): closing the generator saves what arrived, marked interrupted.
A voice turn whose audio is cut short after that reply was saved whole keeps only what was heard
(`reply_mark_interrupted`).
"""

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncGenerator

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from magicmirror import metrics
from magicmirror.dbasync import db_call
from magicmirror.logging import current_trace_id, new_trace_id
from memory import jobs as memory_jobs
from memory.persona import language_of
from speakers.selectors import user_settings_get, user_time_zone
from tools import registry as tool_registry
from tools import runner as tool_runner

from .. import llm
from ..models import Conversation, Message
from ..selectors import conversation_get, llm_messages
from .conversations import conversation_create, message_create, message_text_clean
from .titles import title_fallback, title_generate

logger = logging.getLogger(__name__)


def message_payload(message: Message) -> dict:
    return {
        "id": message.pk,
        "role": message.role,
        "content": message.content,
        "source": message.source,
        "interrupted": message.interrupted,
        "error_code": message.error_code,
        "speaker_id": message.speaker_id,
        "tool_calls": tool_calls_public(message.tool_calls),
        "reminder_id": None,  # a turn's messages; a fired reminder's message is made by reminders.services
        "created_at": timezone.localtime(message.created_at).isoformat(),
    }


def tool_calls_public(calls: list[dict] | None) -> list[dict]:
    """A reply's tool calls as clients see them (the offsets into its text are the history's)."""
    return [{k: call.get(k) for k in ("id", "name", "arguments", "outcome", "result")} for call in calls or []]


def turn_prepare(*, user, conversation_id, text, speaker_id=None):
    """Validate the input and read what the LLM needs: (text, conversation, LLM messages, first turn?).

    Nothing of the turn is written yet except a new conversation (the message needs its row): the
    LLM is asked while the user's message is saved (`turn_save_user_message`).
    """
    text = message_text_clean(text)
    if conversation_id in (None, ""):
        # A readable title right away; the LLM's title replaces it after the first reply.
        conversation = conversation_create(user=user, title=title_fallback(text), final=False)
        messages = llm_messages(conversation=None, pending_user_text=text, user=user, speaker_id=speaker_id)
        return text, conversation, messages, True
    conversation = conversation_get(user=user, conversation_id=conversation_id)
    first_turn = not conversation.title_is_final and not conversation.messages.exists()
    if first_turn:
        conversation.title = title_fallback(text)
    messages = llm_messages(conversation=conversation, pending_user_text=text, user=user, speaker_id=speaker_id)
    return text, conversation, messages, first_turn


def turn_save_user_message(*, conversation, text, source, first_turn) -> Message:
    with transaction.atomic():
        if first_turn:
            Conversation.objects.filter(pk=conversation.pk, title_is_final=False).update(title=conversation.title)
        return message_create(conversation=conversation, role=Message.Role.USER, content=text, source=source)


async def _first_delta(stream):
    """The stream's next item (None at its end): its first is awaited in a task, so the request
    is on its way while the user's message is being saved."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        return None


def tool_context_read(*, user, text) -> tuple[str, str]:
    """(language, time zone) of a turn's tools: the language the user writes in, their time zone."""
    user_settings = user_settings_get(user=user)
    return language_of(text), user_time_zone(user_settings)


def _call_record(call: llm.ToolCall, *, round_number: int, offset: int) -> dict:
    # Until its result is in, a call reads as cut short: so it is saved if the turn is interrupted.
    return {
        "id": call.id,
        "name": call.name,
        "arguments": call.arguments,
        "outcome": "cancelled",
        "result": json.dumps({"error": "The call was interrupted."}),
        "round": round_number,
        "offset": offset,
    }


def _reply_save(*, conversation, content, interrupted, error_code, speaker_id, tool_calls=()) -> Message | None:
    if not content and not error_code and not interrupted and not tool_calls:
        return None
    reply = message_create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content=content,
        interrupted=interrupted,
        error_code=error_code,
        speaker_id=speaker_id,
        tool_calls=list(tool_calls),
    )
    # Memory and summaries are updated in the background once the reply is committed: never awaited here.
    transaction.on_commit(functools.partial(memory_jobs.turn_finished, conversation=conversation, message_id=reply.pk))
    return reply


def reply_mark_interrupted(*, message_id: int, content: str) -> int:
    """A reply saved whole that was cut short after all (a voice turn's audio was still playing):
    it keeps only `content`, what was heard, and is marked interrupted. Returns 1, or 0 if it is gone."""
    return Message.objects.filter(pk=message_id, role=Message.Role.ASSISTANT).update(content=content, interrupted=True)


async def _through_cancellation(save):
    """Await a reply's save to its end even when cancelled meanwhile (the listener going away): the
    row is written all the same, so the first cancellation waits for it (the listener learns its id,
    see `on_reply_saved`) and is then re-raised. A second one stops waiting; the save still completes."""
    task = asyncio.ensure_future(save)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait((task,))
        if not task.cancelled() and task.exception() is not None:
            logger.error("Could not save a reply", exc_info=task.exception())
        raise


async def reply_stream(
    *,
    user,
    conversation_id,
    text,
    source=Message.Source.TEXT,
    speaker_id=None,
    content_on_interrupt=None,
    on_reply_complete=None,
    on_reply_saved=None,
    start_llm=None,
) -> AsyncGenerator[dict, None]:
    """Events: conversation, user_message, delta*, then done or error, then title (once per conversation).

    Raises ApplicationError before the first event for bad input (empty/long text, unknown
    conversation), so callers can answer with a plain 4xx. `content_on_interrupt()`, if given,
    says what to save when the listener goes away mid-reply (a voice turn saves what was spoken).
    `on_reply_complete()`, if given, is called when the LLM has finished, before the reply is saved:
    a voice turn hands its last sentence to synthesis without waiting for the database.
    `on_reply_saved(message_id)`, if given, is called as soon as the reply is saved, whole or cut
    short, even when the listener is going away: a voice turn cut short while the reply's audio
    still plays updates that row (`reply_mark_interrupted`).
    `start_llm(messages, tools)`, if given, returns the LLM's stream for these messages and tool
    schemas instead of `llm.stream_turn`: a voice turn hands over a reply it prepared at a pause
    (live.preemptive).

    Tools (tools.registry): the user's are offered to the LLM; when it calls some, the events
    `tool_call` (the round's calls), `tool_result` (each one's outcome) and `effect` (a tool that
    changes the session: another voice, a new conversation) follow, and the continuation streams
    as more `delta`s; at most TOOLS_MAX_ROUNDS rounds, then the LLM must answer without tools.
    """
    text, conversation, messages, first_turn = await db_call(
        turn_prepare, user=user, conversation_id=conversation_id, text=text, speaker_id=speaker_id
    )
    needs_title = not conversation.title_is_final
    trace_id = current_trace_id() or new_trace_id()  # the voice session's, else one for this request
    metrics.turn_started(source)
    logger.info("Turn in conversation %s (%s)", conversation.pk, source, extra={"trace_id": trace_id})
    tools = await tool_registry.tools_for(user)
    schemas = [tool.openai_schema() for tool in tools] or None
    language, time_zone = await db_call(tool_context_read, user=user, text=text)
    context = tool_registry.ToolContext(
        user=user,
        conversation_id=conversation.pk,
        speaker_id=speaker_id,
        trace_id=trace_id,
        language=language,
        time_zone=time_zone,
    )

    parts: list[str] = []
    calls_made: list[dict] = []  # saved with the reply (Message.tool_calls)
    error: llm.LLMError | None = None
    finished = False
    saved: Message | None = None

    async def save(interrupted, content=None):
        reply = await db_call(
            _reply_save,
            conversation=conversation,
            content="".join(parts) if content is None else content,
            interrupted=interrupted,
            error_code=error.code if error else "",
            speaker_id=speaker_id,
            tool_calls=[dict(c) for c in calls_made],
        )
        if reply is not None and on_reply_saved is not None:
            on_reply_saved(reply.pk)
        return reply

    stream = start_llm(messages, schemas) if start_llm is not None else llm.stream_turn(messages, tools=schemas)
    first = asyncio.ensure_future(_first_delta(stream))
    try:
        user_message = await db_call(
            turn_save_user_message, conversation=conversation, text=text, source=source, first_turn=first_turn
        )
        yield {"type": "conversation", "conversation": {"id": conversation.pk, "title": conversation.title}}
        yield {"type": "user_message", "message": message_payload(user_message)}
        try:
            try:
                item = await first
                rounds, written, effects_sent = 0, 0, 0
                while True:
                    calls: list[llm.ToolCall] = []
                    while item is not None:
                        if isinstance(item, str):
                            parts.append(item)
                            yield {"type": "delta", "text": item}
                        else:
                            calls = item
                        item = await _first_delta(stream)
                    if not calls or rounds >= settings.TOOLS_MAX_ROUNDS:
                        break  # (calls made after the last round allowed are not run: none were offered)
                    rounds += 1
                    reply_text = "".join(parts)
                    records = [_call_record(c, round_number=rounds, offset=len(reply_text)) for c in calls]
                    calls_made.extend(records)
                    yield {
                        "type": "tool_call",
                        "calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in calls],
                    }
                    results = await tool_runner.run_calls(calls, tools, context)
                    for record, result in zip(records, results, strict=True):
                        record.update(outcome=result.outcome, result=result.content)
                        yield {
                            "type": "tool_result",
                            "id": record["id"],
                            "name": record["name"],
                            "outcome": result.outcome,
                            "result": result.content,
                        }
                    for effect in context.effects[effects_sent:]:
                        yield {"type": "effect", **effect}
                    effects_sent = len(context.effects)
                    messages = [
                        *messages,
                        {
                            "role": "assistant",
                            "content": reply_text[written:] or None,
                            "tool_calls": [c.as_message_part() for c in calls],
                        },
                        *({"role": "tool", "tool_call_id": r.call.id, "content": r.content} for r in results),
                    ]
                    written = len(reply_text)
                    await stream.aclose()
                    # The last round allowed: the LLM answers with what it has (no tools offered).
                    offered = schemas if rounds < settings.TOOLS_MAX_ROUNDS else None
                    stream = llm.stream_turn(messages, tools=offered)
                    item = await _first_delta(stream)
            except llm.LLMError as exc:
                error = exc
                metrics.observe_error(exc.code)
                logger.warning(
                    "LLM failed in conversation %s: %s", conversation.pk, exc.code, extra={"trace_id": trace_id}
                )
            finished = True
            if on_reply_complete is not None and error is None:
                on_reply_complete()
            saved = await _through_cancellation(save(interrupted=error is not None and bool(parts)))
        finally:
            if not finished:
                # The listener went away mid-reply: keep what arrived. Shielded so a second
                # cancellation cannot lose the row.
                try:
                    content = content_on_interrupt() if content_on_interrupt else None
                    await _through_cancellation(save(interrupted=True, content=content))
                except Exception:  # pragma: no cover - logged, nothing else to do on the way out
                    logger.exception("Could not save the interrupted reply of conversation %s", conversation.pk)
    finally:
        if not first.done():
            first.cancel()
            with contextlib.suppress(BaseException):
                await first
        await stream.aclose()

    if error is not None:
        yield {
            "type": "error",
            "code": error.code,
            "message": error.message,
            "message_id": saved.pk if saved else None,
        }
        return
    yield {"type": "done", "message": message_payload(saved) if saved else None}

    # Titled after the first exchange that got a reply (a failed first turn keeps the fallback).
    if needs_title and saved is not None and saved.content and not error:
        title = await title_generate(
            conversation_id=conversation.pk, user_text=user_message.content, reply_text=saved.content
        )
        if title:
            yield {"type": "title", "conversation_id": conversation.pk, "title": title}
