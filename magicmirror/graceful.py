"""Graceful shutdown of the web process: a reply in flight is saved when daphne stops.

On SIGTERM daphne cancels every running application instance and exits once they have all
finished. A plain cancellation skips the application's own disconnect handling: Channels never
calls the consumer's `disconnect()` (the voice session and its reply task are left behind and die
with the process), and Django's HTTP handler leaves a streaming view's task running unawaited. A
reply that was being written is then lost.

`GracefulShutdown` turns daphne's cancellation into what the application already handles: the
client going away. The connection's `receive()` answers `http.disconnect` / `websocket.disconnect`
(code 1012, "service restart"), the application cleans up as on any disconnect (the reply is
saved, marked interrupted, with what was said so far; voice jobs are cancelled), and the wrapper
waits for that, up to `SHUTDOWN_GRACE_SECONDS` (default 10), before it lets the cancellation
through. A WebSocket still open afterwards is closed with 4503, which tells the browser client to
reconnect (static/js/voice/socket.js does, to another daphne or to this one once restarted).
"""

import asyncio
import contextlib
import logging

logger = logging.getLogger(__name__)

# WebSocket close code: the server is restarting, reconnect. (The protocol's own 1012 is reserved
# for the server itself: daphne's WebSocket library accepts only 1000 and 3000-4999 from applications.)
SERVICE_RESTART = 4503
CLOSE_HANDSHAKE_SECONDS = 1.0


class GracefulShutdown:
    def __init__(self, app, timeout: float = 10.0):
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        stopping = asyncio.Event()
        disconnect = {"type": "http.disconnect"} if kind == "http" else {"type": "websocket.disconnect", "code": 1012}

        async def receive_until_stopped():
            if stopping.is_set():
                return disconnect
            message = asyncio.ensure_future(receive())
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait((message, stop), return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                if not message.done():
                    message.cancel()  # asyncio.Queue.get gives up without losing an item
                    await asyncio.wait((message,))
            return disconnect if message.cancelled() else message.result()

        inner = asyncio.ensure_future(self.app(scope, receive_until_stopped, send))
        try:
            return await asyncio.shield(inner)
        except asyncio.CancelledError:
            if inner.done():  # it finished meanwhile
                return None
            stopping.set()
            try:
                done, _ = await asyncio.wait((inner,), timeout=self.timeout)
            except asyncio.CancelledError:  # cancelled again: no more grace
                done = set()
            if not done:
                logger.warning("A %s connection did not finish within %g s of the shutdown", kind, self.timeout)
                inner.cancel()
                with contextlib.suppress(BaseException):
                    await inner
            elif not inner.cancelled() and inner.exception() is not None:
                logger.error("A %s connection failed while shutting down", kind, exc_info=inner.exception())
            if kind == "websocket":
                # Close with 4503 and give the client a moment to answer, so that the close frame
                # leaves before the process does.
                with contextlib.suppress(Exception):
                    await send({"type": "websocket.close", "code": SERVICE_RESTART})
                    async with asyncio.timeout(CLOSE_HANDSHAKE_SECONDS):
                        while (await receive())["type"] != "websocket.disconnect":
                            pass
            # Return rather than re-raise: daphne gathers the cancelled connections without
            # return_exceptions, so the first one to raise would end its wait for all the others.
            return None


def patch_daphne_shutdown() -> None:
    """Make daphne's SIGTERM handling wait for the running connections again.

    daphne 4.x (`Server.kill_all_applications`, its "before shutdown" trigger) reads
    `details["application_instance"]` for every connection it tracks. Some have none: an HTTP
    request between its arrival and its processing, and the HTTP request that was upgraded to a
    WebSocket (tracked for up to a second afterwards). The KeyError then aborts the trigger, and
    daphne exits at once: nothing is cancelled, nothing is waited for, replies in flight are lost.
    The same method, skipping such connections.
    """
    try:
        from daphne.server import Server
        from twisted.internet import defer
    except ImportError:  # pragma: no cover - daphne is a dependency
        return
    if getattr(Server.kill_all_applications, "magicmirror_patched", False):
        return
    server_logger = logging.getLogger("daphne.server")

    def kill_all_applications(self):
        wait_for = []
        for details in list(self.connections.values()):
            instance = details.get("application_instance")
            if instance is not None and not instance.done():
                instance.cancel()
                wait_for.append(instance)
        server_logger.info("Killed %i pending application instances", len(wait_for))
        waiting = defer.Deferred.fromFuture(asyncio.gather(*wait_for))
        waiting.addErrback(lambda failure: None)
        return waiting

    kill_all_applications.magicmirror_patched = True  # type: ignore[attr-defined]
    Server.kill_all_applications = kill_all_applications
