"""Database work from async code (consumers, streaming views) on a small pool of threads.

`asgiref.sync_to_async` runs every call of a process on one thread by default, so with many
sessions each turn's few queries wait behind everyone else's, including the time the database
server takes to answer. MySQL serves several connections at once: here each pool thread keeps
its own persistent connection (CONN_MAX_AGE, health-checked on reuse). SQLite has one writer, so
its pool has one thread (DB_ASYNC_THREADS): then, as with a plain `sync_to_async`, calls run
where asgiref puts thread-sensitive code (the calling sync thread, if any: a test's transaction).
"""

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=settings.DB_ASYNC_THREADS, thread_name_prefix="db")
    return _executor


def _call(func, args, kwargs):
    # As Django does around a request: a connection past its age or broken is replaced first.
    close_old_connections()
    return func(*args, **kwargs)


async def db_call(func, /, *args, **kwargs):
    """`func(*args, **kwargs)` (synchronous, may use the ORM) on the pool; its result or exception."""
    if settings.DB_ASYNC_THREADS <= 1:
        return await sync_to_async(func)(*args, **kwargs)
    return await sync_to_async(_call, thread_sensitive=False, executor=_pool())(func, args, kwargs)


async def cache_call(func, /, *args, **kwargs):
    """`await cache_call(f, ...)`: a blocking call that needs no database (a cache round trip to Redis)
    off the event loop, in a thread of its own: not behind the database's threads."""
    return await sync_to_async(func, thread_sensitive=False)(*args, **kwargs)
