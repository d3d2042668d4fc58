"""`python -m devtools.services start`: the local MariaDB and Redis of `./dev services`."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from devtools import services
from devtools.localprocs import ROOT, free_port, wait_until


def run_start(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "devtools.services", "start", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_servers_already_listening_are_reused(tmp_path):
    with socket.socket() as mysql, socket.socket() as redis:
        for server in (mysql, redis):
            server.bind(("127.0.0.1", 0))
            server.listen()
        mysql_port, redis_port = mysql.getsockname()[1], redis.getsockname()[1]
        result = run_start("--mysql-port", str(mysql_port), "--redis-port", str(redis_port), "--rundir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"DATABASE_URL=mysql://magicmirror:magicmirror@127.0.0.1:{mysql_port}/magicmirror",
        f"REDIS_URL=redis://127.0.0.1:{redis_port}/0",
    ]
    assert "Starting" not in result.stderr and list(tmp_path.iterdir()) == []  # nothing was started


def test_the_ports_come_from_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("MM_TEST_MYSQL_PORT", "4407")
    monkeypatch.setenv("MM_TEST_REDIS_PORT", "7380")
    started = []
    monkeypatch.setattr(services, "start", lambda *args: started.append(args) or services.urls(*args[:2]))
    assert services.main(["start"]) == 0
    assert started == [(4407, 7380, services.RUN)]
    assert capsys.readouterr().out.splitlines() == [
        "DATABASE_URL=mysql://magicmirror:magicmirror@127.0.0.1:4407/magicmirror",
        "REDIS_URL=redis://127.0.0.1:7380/0",
    ]


def _stop(pid_file, port):
    if pid_file.exists():
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
    wait_until(lambda: not services.listening(port), 60, f"the server on {port} stopping")


@pytest.mark.services_only  # once in ./dev test, where the servers are installed
@pytest.mark.skipif(not (shutil.which("mariadbd") and shutil.which("redis-server")), reason="needs MariaDB and Redis")
def test_start_runs_both_servers_in_the_background_and_a_second_start_reuses_them(tmp_path):
    import MySQLdb
    import redis

    mysql_port, redis_port = free_port(), free_port()
    args = ("--mysql-port", str(mysql_port), "--redis-port", str(redis_port), "--rundir", str(tmp_path))
    try:
        first = run_start(*args)
        assert first.returncode == 0, first.stderr
        assert f"Starting MariaDB on 127.0.0.1:{mysql_port}" in first.stderr
        assert f"Starting Redis on 127.0.0.1:{redis_port}" in first.stderr
        assert first.stdout.splitlines() == [
            f"DATABASE_URL=mysql://magicmirror:magicmirror@127.0.0.1:{mysql_port}/magicmirror",
            f"REDIS_URL=redis://127.0.0.1:{redis_port}/0",
        ]
        # They outlived the command: the site's user, database and collation are there; Redis answers.
        connection = MySQLdb.connect(
            host="127.0.0.1", port=mysql_port, user="magicmirror", password="magicmirror", database="magicmirror"
        )
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT @@character_set_database, @@collation_database, @@innodb_buffer_pool_size")
            assert cursor.fetchone() == ("utf8mb4", "utf8mb4_unicode_520_ci", 128 * 2**20)
        finally:
            connection.close()
        client = redis.Redis(host="127.0.0.1", port=redis_port)
        assert client.ping() and client.config_get("save") == {"save": ""}
        client.close()
        assert (tmp_path / "mariadb" / "mysql").is_dir() and (tmp_path / "mariadb.pid").exists()

        started = time.monotonic()
        second = run_start(*args)
        assert second.returncode == 0 and second.stdout == first.stdout
        assert "Starting" not in second.stderr and time.monotonic() - started < 10
    finally:
        _stop(tmp_path / "mariadb.pid", mysql_port)
        _stop(tmp_path / "redis.pid", redis_port)
