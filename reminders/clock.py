"""The embedded default's scheduler: without Redis there is no Celery beat, so the web process runs
the same firing routine (reminders.delivery.reminders_fire_and_deliver) every REMINDERS_POLL_SECONDS on
its own event loop, where the in-memory channel layer lives.

Daphne has no ASGI lifespan events, so the clock starts with the first connection the web process
serves (`ensure_started`, called by the ASGI application); after a restart, a reminder that came due
meanwhile fires with the first request (a health check, a page). One clock per event loop.
"""

import asyncio
import logging

from django.conf import settings

logger = logging.getLogger(__name__)

_clocks: dict[asyncio.AbstractEventLoop, asyncio.Task] = {}


def ensure_started() -> None:
    """Start the clock on the running loop if this deployment wants one and it is not running."""
    if not settings.REMINDERS_CLOCK_IN_PROCESS:
        return
    loop = asyncio.get_running_loop()
    task = _clocks.get(loop)
    if task is None or task.done():
        for stale in [other for other in _clocks if other.is_closed()]:
            del _clocks[stale]
        _clocks[loop] = loop.create_task(_run(settings.REMINDERS_POLL_SECONDS), name="reminders-clock")


async def stop() -> None:
    """Stop the clock of the running loop (tests)."""
    task = _clocks.pop(asyncio.get_running_loop(), None)
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _run(interval: float) -> None:
    from .delivery import reminders_fire_and_deliver

    while True:
        try:
            await reminders_fire_and_deliver()
        except Exception:  # the database is away for a moment: the next tick tries again
            logger.warning("Firing due reminders failed", exc_info=True)
        await asyncio.sleep(interval)


class StartClock:
    """ASGI middleware: start the clock with the first connection (daphne sends no lifespan)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            ensure_started()
        return await self.app(scope, receive, send)
