"""Readiness with each part down, for real: a private MariaDB and a private Redis that the test
stops, a daphne and a Celery worker on them; /health/ready, /health, /health/live and
`manage.py voice_status --ready` must name the part that is down."""

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from django.conf import settings

from devtools.localprocs import (
    ROOT,
    child_env,
    start_daphne,
    start_mariadb,
    start_redis,
    start_worker,
    stop_process,
    wait_for_worker,
)

pytestmark = pytest.mark.services_only

QUEUES = [settings.CELERY_TASK_DEFAULT_QUEUE, settings.VOICE_ASR_QUEUE, settings.VOICE_TTS_QUEUE]


class VoiceStatus:
    """`manage.py voice_status --ready` started at once (it runs while the test probes over HTTP)."""

    def __init__(self, env, timeout="1"):
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "voice_status", "--ready", "--timeout", timeout],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def result(self) -> tuple[int, str]:
        out, _ = self.process.communicate(timeout=60)
        return self.process.returncode, out


def probe(port):
    """(status, body) of /health/ready, and the statuses of /health and /health/live."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
        started = time.monotonic()
        ready = client.get("/health/ready")
        took = time.monotonic() - started
        return ready.status_code, ready.json(), took, client.get("/health").status_code, client.get("/health/live")


@pytest.fixture
def private_stack(tmp_path):
    """A private MariaDB and Redis, and a daphne on them (no worker yet)."""
    mysql_port, mariadb = start_mariadb(tmp_path / "mariadb")
    redis_port, redis_server = start_redis()
    env = child_env(
        DATABASE_URL=f"mysql://root@127.0.0.1:{mysql_port}/magicmirror",
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        MYSQL_HOST=None,
        MYSQL_DATABASE=None,
        MM_TEST_DB_NAME=None,
        VOICE_PRELOAD="none",  # a worker that loads no engine starts in a few seconds
    )
    log = (tmp_path / "daphne.log").open("wb")
    port, daphne = start_daphne(env, stdout=log)
    stack = {"env": env, "port": port, "mariadb": mariadb, "redis": redis_server, "redis_port": redis_port}
    try:
        yield stack
    finally:
        worker = stack.get("worker")
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        stop_process(daphne)
        log.close()
        stop_process(redis_server)
        stop_process(mariadb)


def test_readiness_names_each_part_that_is_down(private_stack):
    env, port = private_stack["env"], private_stack["port"]

    # 1. No worker: MariaDB and Redis answer, no queue is served.
    command = VoiceStatus(env, timeout="0.5")
    status, body, _, combined, live = probe(port)
    checks = body["checks"]
    assert status == 503 and combined == 503 and live.status_code == 200
    assert checks["database"] == {"ok": True, "vendor": "mysql", "ms": checks["database"]["ms"]}
    assert checks["channel_layer"]["ok"] is True
    assert checks["workers"]["ok"] is False and sorted(checks["workers"]["unserved_queues"]) == sorted(QUEUES)
    code, out = command.result()
    assert code == 1, out
    assert "Database: ok (mysql" in out and "Channel layer: ok (RedisChannelLayer" in out
    for queue in QUEUES:
        assert f"Queue {queue}: NO WORKER" in out
    assert "Ready: NO" in out

    # 2. A worker on every queue: ready.
    from celery import Celery

    name = f"health-{os.getpid()}@localhost"
    worker = private_stack["worker"] = start_worker(env, name, QUEUES, stdout=subprocess.DEVNULL)
    wait_for_worker(Celery(broker=env["REDIS_URL"], set_as_current=False), name, worker)
    command = VoiceStatus(env)
    status, body, _, combined, _ = probe(port)
    assert status == 200 and combined == 200, body
    assert all(body["checks"]["workers"]["queues"][q]["workers"] == [name] for q in QUEUES)
    code, out = command.result()
    assert code == 0 and "Ready: yes" in out and f"Queue {settings.VOICE_TTS_QUEUE}: served by {name}" in out, out

    # 3. MariaDB stopped: only the database is down (daphne's pooled connection is found dead).
    stop_process(private_stack["mariadb"])
    command = VoiceStatus(env, timeout="0.5")
    status, body, _, combined, live = probe(port)
    checks = body["checks"]
    assert status == 503 and combined == 503 and live.status_code == 200
    assert checks["database"]["ok"] is False and checks["database"]["error"] == "OperationalError"
    assert checks["channel_layer"]["ok"] is True and checks["workers"]["ok"] is True
    code, out = command.result()
    assert code == 1 and "Database: DOWN (OperationalError)" in out and "Channel layer: ok" in out, out

    # 4. Redis stopped as well: the channel layer and the workers (reached through Redis) are down;
    # the probe still answers in bounded time.
    stop_process(private_stack["redis"])
    command = VoiceStatus(env, timeout="0.5")
    status, body, took, combined, live = probe(port)
    checks = body["checks"]
    assert status == 503 and combined == 503 and live.status_code == 200
    assert checks["channel_layer"]["ok"] is False
    assert checks["workers"]["ok"] is False and checks["workers"]["error"]
    assert sorted(checks["workers"]["unserved_queues"]) == sorted(QUEUES)
    assert took < 10, f"/health/ready took {took:.1f} s with Redis down"
    code, out = command.result()
    assert code == 1 and "Channel layer: DOWN" in out and "Workers: The broker cannot be reached" in out, out
