"""Starting local server processes on free ports: shared by the benchmark and the tests that run
daphne, Redis or workers as real processes."""

import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 90) -> None:
    """Until something listens on 127.0.0.1:port; RuntimeError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, process.args[:4]))} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)  # readiness poll of a starting server
    raise RuntimeError(f"nothing listens on port {port} after {timeout:g} s")


def start_daphne(env: dict, *, stdout=None, timeout: float = 90) -> tuple[int, subprocess.Popen]:
    """daphne serving magicmirror.asgi on a free port; returns once it accepts connections."""
    port = free_port()
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "magicmirror.asgi:application"]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command, cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.STDOUT if stdout else None
    )
    try:
        wait_for_port(port, process, timeout)
    except RuntimeError:
        stop_process(process)
        raise
    return port, process


def stop_process(process: subprocess.Popen, timeout: float = 15) -> None:
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
