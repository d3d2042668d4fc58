"""`./dev up` on a machine whose model hosts cannot be reached (as CI and these machines are): it says in
one line which models are missing and how to get them, then starts the site anyway."""

import os
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "MYSQL_HOST", "MYSQL_DATABASE", "DJANGO_SETTINGS_MODULE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(bool(os.environ.get("REDIS_URL")), reason="./dev up is the embedded default: tested once, there")
def test_dev_up_offline_prints_one_line_and_starts(tmp_path):
    port, closed = free_port(), free_port()  # nothing listens on `closed`: the model hosts are away
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS and not k.startswith("MM_TEST")}
    env.update(
        PORT=str(port),
        MAGICMIRROR_DOTENV="",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",  # not the developer's var/ database
        MODELS_DIR=str(tmp_path / "models"),
        VOSK_MODEL_PATH=str(tmp_path / "models" / "vosk-model-small-cn-0.22"),
        VOSK_MODELS_URL=f"http://127.0.0.1:{closed}/vosk",
        PIPER_VOICES_URL=f"http://127.0.0.1:{closed}/piper",
        OLLAMA_URL="",
    )
    log = tmp_path / "dev-up.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["./dev", "up"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 240  # a bound for a loaded machine (migrate, then daphne)
        while True:
            assert process.poll() is None, f"./dev up exited with {process.returncode}:\n{log.read_text()}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the site did not answer within 240 s:\n{log.read_text()}"
            time.sleep(0.2)  # polling the port of another process
        page = httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=10)
        assert page.status_code == 200
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)
    output = log.read_text()
    notices = [line for line in output.splitlines() if line.startswith("Models not downloaded")]
    assert len(notices) == 1, output
    assert f"127.0.0.1:{closed} cannot be reached" in notices[0] and "vosk-model-small-cn-0.22" in notices[0]
    assert "manage.py download_models --defaults" in notices[0]
    assert f"MagicMirror on http://127.0.0.1:{port}/" in output
