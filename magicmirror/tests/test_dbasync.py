"""Database work from async code: a pool of threads with their own connections (magicmirror/dbasync.py)."""

import asyncio
import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection

from magicmirror import dbasync

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pool_of(settings):
    def make(threads):
        settings.DB_ASYNC_THREADS = threads
        dbasync._executor = None

    yield make
    if dbasync._executor is not None:
        dbasync._executor.shutdown(wait=True)
    dbasync._executor = None


def test_calls_run_at_once_on_threads_with_their_own_connections(pool_of):
    pool_of(3)
    User.objects.create_user("ada")
    barrier = threading.Barrier(3, timeout=10)  # broken (an error) unless three calls run together

    def work():
        barrier.wait()
        count = User.objects.count()  # connects this thread's connection
        return threading.current_thread().name, id(connection.connection), count

    async def main():
        return await asyncio.gather(*(dbasync.db_call(work) for _ in range(3)))

    results = asyncio.run(main())
    assert len({name for name, _, _ in results}) == 3
    assert all(name.startswith("db") for name, _, _ in results)
    assert len({conn for _, conn, _ in results}) == 3
    assert [count for _, _, count in results] == [1, 1, 1]


def test_errors_reach_the_caller_and_the_pool_goes_on(pool_of):
    pool_of(2)

    def fail():
        User.objects.get(username="nobody")

    async def main():
        with pytest.raises(User.DoesNotExist):
            await dbasync.db_call(fail)
        return await dbasync.db_call(User.objects.filter(username="x").exists)

    assert asyncio.run(main()) is False


def test_one_thread_is_the_thread_sensitive_path(pool_of):
    pool_of(1)

    async def main():
        return await dbasync.db_call(lambda: threading.current_thread().name)

    assert not asyncio.run(main()).startswith("db")
    assert dbasync._executor is None
