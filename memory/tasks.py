"""Celery task: the background job after each turn (the default queue; never a GPU worker). Like a
view, it fetches nothing itself and calls the service."""

from celery import shared_task

from . import services


# The result (what the run did, a small dict) is kept in the result backend: tests wait on it.
@shared_task(name="memory.tasks.conversation_after_turn", acks_late=True)
def conversation_after_turn(conversation_id, through_message_id, extract=True, summarize=True, window=(20, 6000)):
    return services.conversation_after_turn(
        conversation_id=conversation_id,
        through_message_id=through_message_id,
        extract=extract,
        summarize=summarize,
        window=tuple(window),
    )
