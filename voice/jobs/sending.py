"""The one way a job sends to its requester: a channel-layer send to the requester's private
channel, made patient (a full channel slows the job down instead of failing it).

Where the job runs decides only how the send coroutine is driven (`deliver`): in a Celery worker
thread, on that thread's own event loop; in the embedded default, on the requester's event loop
(the in-memory channel layer belongs to it).
"""

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings

Send = Callable[[dict], None]
Deliver = Callable[[Coroutine[Any, Any, None]], None]


class RequesterGone(Exception):
    """The requester stopped listening (its channel stayed full, its event loop ended)."""


def requester_sender(reply_to: str, deliver: Deliver) -> Send:
    """A blocking `send(message)` to the requester's channel `reply_to`."""
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"

    def send_once(message: dict) -> None:
        deliver(layer.send(reply_to, message))

    return patient(send_once, timeout=settings.VOICE_JOB_IDLE_TIMEOUT)


def patient(send_once: Send, *, timeout: float) -> Send:
    """Wrap a channel-layer send so a full channel slows the job down instead of failing it.

    A requester that reads slowly makes the job wait (backpressure); one that has not read for
    `timeout` seconds is taken as gone: RequesterGone.
    """

    def send(message: dict) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                send_once(message)
                return
            except ChannelFull:
                if time.monotonic() >= deadline:
                    raise RequesterGone(f"The channel stayed full for {timeout:g} s.") from None
                time.sleep(delay)  # production back-off while the requester drains its channel
                delay = min(delay * 2, 0.1)

    return send


# -- how a send is driven -------------------------------------------------------------------------
def on_requester_loop(loop: asyncio.AbstractEventLoop) -> Deliver:
    """Run the send on the requester's own event loop (jobs in threads of the web process)."""

    def deliver(sending: Coroutine[Any, Any, None]) -> None:
        try:
            future = asyncio.run_coroutine_threadsafe(sending, loop)
        except RuntimeError as exc:  # the loop is closed: the requester is gone
            sending.close()
            raise RequesterGone(str(exc)) from None
        try:
            future.result(timeout=settings.VOICE_JOB_IDLE_TIMEOUT)
        except TimeoutError:
            future.cancel()
            raise RequesterGone("The requester's event loop did not take the message.") from None

    return deliver


_thread_state = threading.local()


def _thread_loop() -> asyncio.AbstractEventLoop:
    """This worker thread's event loop for channel-layer sends, kept for the thread's life.

    channels-redis keeps its Redis connections per event loop: one loop per thread means each
    job reuses warm connections instead of connecting (and closing) for every job, which was a
    measurable part of every sentence's latency. A pooled connection that died with a Redis
    restart is retried on a new one (REDIS_RETRIES in the channel layer's settings).
    """
    loop = getattr(_thread_state, "loop", None)
    if loop is None or loop.is_closed():
        loop = _thread_state.loop = asyncio.new_event_loop()
    return loop


def on_thread_loop() -> Deliver:
    """Run the send on this (worker) thread's own event loop."""
    loop = _thread_loop()

    def deliver(sending: Coroutine[Any, Any, None]) -> None:
        loop.run_until_complete(sending)

    return deliver
