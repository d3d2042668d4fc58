"""Starting the background job of a finished turn, where jobs run in this deployment: a Celery task
on the default queue (workers), or, in the embedded default, the same task run eagerly in a thread
of the web process. Either way the turn never waits for it."""

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)

_executor: ThreadPoolExecutor | None = None


def _thread_pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="memory-job")
    return _executor


def _run_here(kwargs: dict):
    from .tasks import conversation_after_turn

    close_old_connections()  # as Celery does around a task
    try:
        return conversation_after_turn.apply(kwargs=kwargs, throw=True).get()
    except Exception:
        logger.exception("The memory job of conversation %s failed", kwargs.get("conversation_id"))
        raise
    finally:
        close_old_connections()


def start(kwargs: dict):
    """Queue the job; returns its handle (a Future in-process, an AsyncResult with workers)."""
    if settings.MEMORY_JOBS_IN_PROCESS:
        return _thread_pool().submit(_run_here, kwargs)
    from .tasks import conversation_after_turn

    return conversation_after_turn.apply_async(kwargs=kwargs)


def turn_finished(*, conversation, message_id: int) -> Future | object | None:
    """After a turn's reply is committed: read the turn for memories, and summarise the conversation
    if it outgrew the history window. A broker that cannot be reached loses only this run (the next
    turn's run reads the messages this one did not)."""
    extract, summarize = settings.MEMORY_ENABLED, settings.MEMORY_SUMMARIES
    if not (extract or summarize):
        return None
    kwargs = {
        "conversation_id": conversation.pk,
        "through_message_id": message_id,
        "extract": extract,
        "summarize": summarize,
        # The window this process sends: what does not fit it is what needs a summary.
        "window": [settings.LLM_HISTORY_MAX_MESSAGES, settings.LLM_HISTORY_MAX_CHARS],
    }
    try:
        return start(kwargs)
    except Exception as exc:  # kombu's OperationalError and friends
        logger.warning("Could not queue the memory job of conversation %s: %s", conversation.pk, exc)
        return None
