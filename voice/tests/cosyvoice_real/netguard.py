"""Refuse every network connection that does not stay on this machine, and remember who tried.

The real CosyVoice2 code can reach for model hubs (modelscope's snapshot_download, Hugging Face); the
tests must prove it never does. `install()` replaces `socket.socket.connect`/`connect_ex` and
`socket.getaddrinfo` with versions that allow only loopback addresses and Unix sockets (Redis and
MariaDB on 127.0.0.1 stay reachable) and raise `OSError` for anything else. Each refusal is kept in
`refused` and, where the environment names a file in MM_NETGUARD_LOG, appended to it, so a test can see
a refusal even when the code that tried swallowed the error (or ran in a Celery worker).

This file imports nothing of the project: a worker loads it from `sitecustomize` (see conftest.py).
"""

import ipaddress
import os
import socket

LOG_ENV = "MM_NETGUARD_LOG"
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}

refused: list[str] = []
_installed = False


def is_local(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]").lower()
    if host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _refuse(what: str) -> OSError:
    message = f"network access refused by the test guard: {what}"
    refused.append(message)
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {message}\n")
    return ConnectionRefusedError(message)


def _check_address(sock, address) -> None:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return
    host = address[0] if isinstance(address, tuple) and address else address
    if not is_local(host):
        raise _refuse(f"connect to {address!r}")


def install() -> None:
    """Guard this process (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    connect, connect_ex, getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

    def guarded_connect(self, address):
        _check_address(self, address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        _check_address(self, address)
        return connect_ex(self, address)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not is_local(host):
            raise _refuse(f"name lookup of {host!r}")
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex
    socket.getaddrinfo = guarded_getaddrinfo
