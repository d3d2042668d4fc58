"""Size limits on incoming WebSocket frames and messages, enforced by daphne's WebSocket library.

daphne (4.x) sets no maximum payload size: its WebSocket factory, a subclass of autobahn's
`WebSocketServerFactory`, accepts frames and messages of any size and hands them to the application
only once they are complete. A client could make daphne hold a frame of any size in memory before
the voice session looked at it and answered `frame_too_large`. autobahn can refuse a frame as soon
as its header announces too much (`maxFramePayloadSize`), and a fragmented message as soon as its
frames add up to too much (`maxMessagePayloadSize`); daphne has no option for either.

`limit_websocket_payload()` (called from magicmirror/asgi.py, which daphne imports before it builds
its factory, whichever way it is started: the `daphne` command, `python -m daphne`, the systemd
units, the Procfiles, `./dev up`) points daphne at a factory that sets both. Over the limit, autobahn
stops reading the frame (the rest of its payload is read and dropped, never kept) and closes the
connection with 1009 (message too big), by a close frame rather than by dropping the TCP connection
(`failByDrop=False`), so that the client learns why; if the client does not answer the close within
autobahn's close handshake timeout (1 s), the connection is dropped.

The protocol limit is VOICE_WS_MAX_FRAME_BYTES plus a headroom: a frame a little over the
application's limit still reaches it and gets the readable `frame_too_large` error event on a
socket that stays usable. The limit applies to what daphne sends too (autobahn checks both ways);
the server's own messages (audio chunks of at most 200 ms, about 10 KB; JSON events of one sentence
or less) stay far below it.
"""

import logging

logger = logging.getLogger(__name__)

PROTOCOL_HEADROOM_BYTES = 64 * 1024
MESSAGE_TOO_BIG = 1009  # WebSocket close code (RFC 6455)


def protocol_payload_limit(max_frame_bytes: int) -> int:
    """The largest frame or message daphne accepts, for an application limit of `max_frame_bytes`."""
    return max_frame_bytes + PROTOCOL_HEADROOM_BYTES


def limit_websocket_payload(max_frame_bytes: int) -> None:
    """Make the daphne of this process refuse frames and messages over the protocol limit."""
    try:
        from daphne import server
        from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
    except ImportError:  # pragma: no cover - daphne is a dependency
        return
    if getattr(server, "WebSocketFactory", None) is None:
        # daphne builds its factory from daphne.server.WebSocketFactory (Server.run) since 2.x; if
        # that changes, say so loudly: the limit would silently be gone.
        logger.error("daphne.server.WebSocketFactory is gone: WebSocket payload sizes are NOT limited")
        return
    limit = protocol_payload_limit(max_frame_bytes)

    class PayloadLimitedWebSocketProtocol(WebSocketProtocol):
        def sendCloseFrame(self, code=None, reasonUtf8=None, isReply=False):
            # autobahn's own "failing WebSocket connection" line goes to txaio, not to our logs: an
            # operator should see who sent an oversized frame.
            if code == MESSAGE_TOO_BIG and not isReply:
                client = getattr(self, "client_addr", None)
                logger.warning(
                    "WebSocket closed with 1009: a frame or message over %d bytes from %s on %s",
                    limit,
                    ":".join(map(str, client)) if client else "?",
                    getattr(self, "path", b"?").decode("ascii", "replace"),
                )
            super().sendCloseFrame(code=code, reasonUtf8=reasonUtf8, isReply=isReply)

    class PayloadLimitedWebSocketFactory(WebSocketFactory):
        protocol = PayloadLimitedWebSocketProtocol

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.setProtocolOptions(maxFramePayloadSize=limit, maxMessagePayloadSize=limit, failByDrop=False)

    # Always a subclass of daphne's own factory, so a second call replaces the first.
    server.WebSocketFactory = PayloadLimitedWebSocketFactory
