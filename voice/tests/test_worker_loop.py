"""The threads-pool worker's event loop is woken often enough to fetch the next job (voice.jobs.worker)."""

from types import SimpleNamespace

from celery.concurrency.solo import TaskPool as SoloPool
from celery.concurrency.thread import TaskPool as ThreadPool
from kombu.asynchronous.hub import Hub
from kombu.asynchronous.timer import Timer

from voice.jobs import worker


def _consumer(pool, *, hub=True):
    timer = Timer()
    return SimpleNamespace(pool=pool, timer=timer, hub=Hub(timer) if hub else None)


def test_a_threads_worker_loop_wakes_every_tick():
    consumer = _consumer(ThreadPool(limit=1))
    worker._tick_threads_loop(sender=consumer)
    # The loop polls no longer than its next timer: fire_timers says how long it may sleep.
    assert consumer.hub.fire_timers(min_delay=1) <= worker.LOOP_TICK_S
    assert len(consumer.timer.queue) == 1


def test_the_tick_reschedules_itself():
    consumer = _consumer(ThreadPool(limit=1))
    worker._tick_threads_loop(sender=consumer)
    entry = consumer.timer.queue[0].entry
    entry()  # the loop fires it: the next one is scheduled
    assert len(consumer.timer.queue) == 2


def test_other_pools_and_loopless_workers_are_left_alone():
    for consumer in (_consumer(SoloPool(limit=1)), _consumer(ThreadPool(limit=1), hub=False)):
        worker._tick_threads_loop(sender=consumer)
        assert consumer.timer.queue == []
