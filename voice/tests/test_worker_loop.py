"""A threads-pool worker's event loop is woken when a job has ended (voice.jobs.worker), so it fetches the
next queued job at once rather than at its next timer, and an idle worker's loop stays asleep."""

import select
from types import SimpleNamespace

from celery.concurrency.base import BasePool
from celery.concurrency.thread import TaskPool as ThreadPool
from kombu.asynchronous.hub import Hub
from kombu.asynchronous.timer import Timer

from voice.jobs import worker

WAIT = 30.0  # seconds, a bound only: select returns as soon as the loop's pipe is readable


def _consumer(pool, *, hub=True):
    timer = Timer()
    return SimpleNamespace(pool=pool, timer=timer, hub=Hub(timer) if hub else None)


def _wakeup_fd(hub) -> int:
    [fd] = hub.readers  # the one reader the worker added: its self-pipe
    return fd


def test_a_job_that_ends_wakes_the_loop_after_its_callback():
    pool = ThreadPool(limit=1)
    consumer = _consumer(pool)
    worker._wake_loop_when_jobs_end(sender=consumer)
    fd = _wakeup_fd(consumer.hub)
    assert select.select([fd], [], [], 0)[0] == []  # nothing has run: the loop may sleep
    seen = []

    def job():
        seen.append(("job", bool(select.select([fd], [], [], 0)[0])))
        return 7

    def acknowledged(result):  # the request's callback: where an acks_late job is acknowledged
        seen.append(("callback", result, bool(select.select([fd], [], [], 0)[0])))

    try:
        pool.apply_async(job, callback=acknowledged)
        assert select.select([fd], [], [], WAIT)[0] == [fd]
        assert seen == [("job", False), ("callback", 7, False)]  # woken only after the ack
        consumer.hub.readers[fd][0](*consumer.hub.readers[fd][1])  # the loop reads it: drained
        assert select.select([fd], [], [], 0)[0] == []
    finally:
        pool.on_stop()


def test_wakeups_never_block_the_jobs_thread():
    consumer = _consumer(ThreadPool(limit=1))
    worker._wake_loop_when_jobs_end(sender=consumer)
    wakeup = consumer.hub.readers[_wakeup_fd(consumer.hub)][0].__self__
    for _ in range(100_000):  # far more than a pipe holds: the rest are dropped, the loop is awake anyway
        wakeup.wake()
    wakeup._drain()
    assert select.select([_wakeup_fd(consumer.hub)], [], [], 0)[0] == []


def test_other_pools_and_loopless_workers_are_left_alone():
    # (Not the solo pool itself: making one sends worker_process_init, which loads the engines.)
    for consumer in (_consumer(BasePool(limit=1)), _consumer(ThreadPool(limit=1), hub=False)):
        apply = consumer.pool.on_apply
        worker._wake_loop_when_jobs_end(sender=consumer)
        assert consumer.pool.on_apply == apply
        assert consumer.hub is None or consumer.hub.readers == {}
