"""A small MCP server of the tests' own (tools/tests/test_mcp.py), built with the official SDK.

    python -m tools.tests.mcp_server stdio
    python -m tools.tests.mcp_server http [--token TOKEN]

Over HTTP it listens on 127.0.0.1 on a port the system picks and prints `listening on PORT` once it
listens; with --token every request needs `Authorization: Bearer TOKEN` (else 401).

Its tools: `add`, `echo` and `environment` answer at once, `secret` is one no allowlist in the tests names, and
`block` writes a line (`blocking PID`) to the named pipe (FIFO) its `signal` argument names, then
waits forever: the test reads the line, so it knows the call has arrived, and kills the server.
"""

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import anyio
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("magicmirror-test")


@server.tool(description="Add two integers.")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Say the text back, with the Authorization header the request came with.")
def echo(text: str, ctx: Context) -> dict:
    headers = ctx.headers or {}
    return {"text": text, "authorization": headers.get("authorization", "")}


@server.tool(description="The values of these environment variables here (null: unset).")
def environment(names: list[str]) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in names}


@server.tool(description="A tool the tests never allow.")
def secret() -> str:
    return "the secret"


@server.tool(description="Tell the test through the FIFO `signal` that the call arrived, then never answer.")
async def block(signal: str) -> str:
    with open(signal, "w") as fifo:  # blocks until the test opens it for reading
        fifo.write(f"blocking {os.getpid()}\n")
    await anyio.sleep_forever()
    return "never"


def require_token(app, token: str):
    """ASGI middleware: 401 unless the request has the bearer token."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and dict(scope["headers"]).get(b"authorization") != expected:
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"unauthorized"})
            return
        await app(scope, receive, send)

    return guarded


async def serve_http(token: str | None) -> None:
    import uvicorn

    app = server.streamable_http_app()
    if token:
        app = require_token(app, token)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    # Listening already: connections wait in the backlog until uvicorn serves them, so the port can be told now.
    print(f"listening on {sock.getsockname()[1]}", flush=True)
    await uvicorn.Server(uvicorn.Config(app, log_level="warning")).serve(sockets=[sock])


class HttpServer:
    """This server over streamable HTTP, started by a test as a subprocess (`stop()` kills it)."""

    def __init__(self, token: str | None = None):
        command = [sys.executable, "-m", "tools.tests.mcp_server", "http", *(["--token", token] if token else [])]
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline() if self.process.stdout else ""  # or "": it died
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"The MCP test server did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[-1])}/mcp"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--token", default=None)
    options = parser.parse_args(argv)
    if options.transport == "stdio":
        server.run("stdio")
    else:
        anyio.run(serve_http, options.token)


if __name__ == "__main__":
    sys.exit(main())
