"""Hostile frame sizes against a real daphne (embedded default, SQLite file of its own): frames and
messages over the protocol limit are refused as their header arrives, before daphne buffers them
(close 1009, daphne's memory flat); frames under it reach the application as before."""

import asyncio
import json
import select
import socket
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.typing import Origin
from websockets.uri import parse_uri

from devtools.localprocs import child_env, migrate, serving_daphne
from magicmirror.websocket_limits import MESSAGE_TOO_BIG, protocol_payload_limit

pytestmark = pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="reads daphne's memory in /proc")

MAX_FRAME_BYTES = 32768  # VOICE_WS_MAX_FRAME_BYTES of the server: not the default, the limit follows it
LIMIT = protocol_payload_limit(MAX_FRAME_BYTES)
HUGE = 100 * 2**20
CHUNK = 2**16
GROWTH_ALLOWED = 4 * 2**20
TIMEOUT = 30


def embedded_env(sqlite_path: Path) -> dict:
    env = child_env(SQLITE_PATH=sqlite_path, VOICE_WS_MAX_FRAME_BYTES=MAX_FRAME_BYTES, PYTHONUNBUFFERED=1)
    for name in list(env):
        if name in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "MM_TEST_DB_NAME"} or name.startswith("MYSQL_"):
            del env[name]
    return env


def register(base_url: str) -> str:
    """A new account through the registration page; its session cookie."""
    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as client:
        client.get("/accounts/register/")
        password = "Lantern-orbit-2046"
        response = client.post(
            "/accounts/register/",
            data={"username": "frames", "password1": password, "password2": password},
            headers={"X-CSRFToken": client.cookies["csrftoken"]},
        )
        assert response.status_code == 302, response.text[:500]
        return f"sessionid={client.cookies['sessionid']}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("frame-limit")
    env = embedded_env(directory / "db.sqlite3")
    migrate(env)
    log_path = directory / "daphne.log"
    with serving_daphne(env, log_path) as (port, process):
        cookie = register(f"http://127.0.0.1:{port}")
        yield SimpleNamespace(port=port, pid=process.pid, cookie=cookie, log=log_path)


class Memory:
    """daphne's resident memory: its current size, and the peak since the last reset."""

    def __init__(self, pid: int):
        self.pid = pid

    def _status(self, field: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")

    def reset_peak(self) -> int:
        """Start a new peak measurement (the kernel's VmHWM) from now; the current RSS."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        return self._status("VmRSS")

    def peak(self) -> int:
        return self._status("VmHWM")


class RawSocket:
    """A logged-in voice socket on a plain TCP socket: websockets' sans-I/O client does the handshake
    and reads the server's frames; the test writes its own frames, so that it can stream one frame's
    payload without holding it."""

    def __init__(self, server):
        url = f"ws://127.0.0.1:{server.port}/ws/voice/"
        self.protocol = ClientProtocol(parse_uri(url), origin=Origin(f"http://127.0.0.1:{server.port}"))
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT)
        request = self.protocol.connect()
        request.headers["Cookie"] = server.cookie
        self.protocol.send_request(request)
        self.sock.sendall(b"".join(self.protocol.data_to_send()))
        self.frames = []
        self.closed = False
        self._read(block=True)  # the handshake's answer
        assert self.protocol.handshake_exc is None, self.protocol.handshake_exc

    def _read(self, *, block: bool) -> None:
        if not block and not select.select([self.sock], [], [], 0)[0]:
            return
        try:
            data = self.sock.recv(CHUNK)
        except ConnectionResetError:
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
            self.closed = True
        self.frames.extend(e for e in self.protocol.events_received() if hasattr(e, "opcode"))

    def next_frame(self):
        while not self.frames:
            if self.closed:
                return None
            self._read(block=True)
        return self.frames.pop(0)

    def next_event(self) -> dict:
        frame = self.next_frame()
        assert frame is not None and frame.opcode is Opcode.TEXT, frame
        return json.loads(frame.data)

    def stream_frame(self, length: int) -> int:
        """One unfragmented binary frame whose header announces `length` bytes, its payload sent in
        chunks (all zeros: the zero mask leaves them as they are) until it is done or the server
        answered; the bytes of payload sent."""
        self.sock.sendall(bytes([0x82, 0x80 | 127]) + length.to_bytes(8, "big") + b"\0\0\0\0")
        chunk, sent = bytes(CHUNK), 0
        while sent < length and not self.frames and not self.closed:
            try:
                self.sock.sendall(chunk[: length - sent])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += min(CHUNK, length - sent)
            self._read(block=False)
        return sent

    def close(self):
        self.sock.close()


def expect_close(ws: RawSocket, code: int) -> None:
    frame = ws.next_frame()
    assert frame is not None, "the connection ended without a close frame"
    assert frame.opcode is Opcode.CLOSE, f"expected close {code}, got {frame.opcode.name}: {frame.data[:200]!r}"
    assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == code, ws.protocol.close_rcvd


def expect_usable(ws: RawSocket) -> None:
    ws.sock.sendall(masked_text(json.dumps({"type": "ping", "id": "still-there"})))
    assert ws.next_event() == {"type": "pong", "id": "still-there"}


def masked_text(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 2**16
    length = bytes([0x80 | 126]) + len(data).to_bytes(2, "big") if len(data) > 125 else bytes([0x80 | len(data)])
    return bytes([0x81]) + length + b"\0\0\0\0" + data


def test_one_huge_frame_is_refused_at_its_header(server):
    memory = Memory(server.pid)
    ws = RawSocket(server)
    try:
        assert ws.next_event()["type"] == "hello"
        before = memory.reset_peak()
        sent = ws.stream_frame(HUGE)
        expect_close(ws, MESSAGE_TOO_BIG)
        growth = memory.peak() - before
    finally:
        ws.close()
    assert growth < GROWTH_ALLOWED, f"daphne grew by {growth / 2**20:.1f} MiB ({sent / 2**20:.1f} MiB sent)"
    assert sent < HUGE  # refused while the payload was still coming
    logged = f"WebSocket closed with 1009: a frame or message over {LIMIT} bytes from 127.0.0.1:"
    assert logged in server.log.read_text()


async def test_one_huge_fragmented_message_is_refused(server):
    """A message of many frames, each small, is limited as a whole."""
    memory = Memory(server.pid)
    sent = 0

    async def fragments():
        nonlocal sent
        chunk = bytes(MAX_FRAME_BYTES // 2)
        while sent < HUGE:
            sent += len(chunk)
            yield chunk
            # Let the connection's reader run: websockets sees the server's close frame there, and the
            # next send fails; on a quick loopback writes alone may never let it in.
            await asyncio.sleep(0)

    async with websockets.connect(
        f"ws://127.0.0.1:{server.port}/ws/voice/",
        origin=f"http://127.0.0.1:{server.port}",
        additional_headers={"Cookie": server.cookie},
    ) as ws:
        assert json.loads(await ws.recv())["type"] == "hello"
        before = memory.reset_peak()
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(TIMEOUT):
                await ws.send(fragments())
                await ws.recv()  # whatever the server answered a message it took whole
        growth = memory.peak() - before
        assert ws.close_code == MESSAGE_TOO_BIG
    assert growth < GROWTH_ALLOWED, f"daphne grew by {growth / 2**20:.1f} MiB ({sent / 2**20:.1f} MiB sent)"
    assert sent < HUGE


def test_frames_up_to_the_limit_reach_the_application(server):
    ws = RawSocket(server)
    try:
        assert ws.next_event()["type"] == "hello"
        # A text frame of exactly VOICE_WS_MAX_FRAME_BYTES is read and answered.
        padding = MAX_FRAME_BYTES - len(json.dumps({"type": "ping", "id": ""}))
        ping = json.dumps({"type": "ping", "id": "x" * padding})
        assert len(ping.encode()) == MAX_FRAME_BYTES
        ws.sock.sendall(masked_text(ping))
        assert ws.next_event() == {"type": "pong", "id": "x" * padding}
        # One byte over: the application's own refusal; the socket stays usable.
        ws.sock.sendall(masked_text(ping.replace('"id": "', '"id": "x')))
        assert ws.next_event()["code"] == "frame_too_large"
        expect_usable(ws)
        # Up to the protocol limit a frame still reaches the application (a readable error)...
        assert ws.stream_frame(LIMIT) == LIMIT
        assert ws.next_event()["code"] == "frame_too_large"
        expect_usable(ws)
        # ...one byte more, and the connection is closed with 1009.
        ws.stream_frame(LIMIT + 1)
        expect_close(ws, MESSAGE_TOO_BIG)
    finally:
        ws.close()


def test_daphne_serves_on_after_hostile_frames(server):
    ws = RawSocket(server)
    try:
        assert ws.next_event()["type"] == "hello"
        expect_usable(ws)
    finally:
        ws.close()
