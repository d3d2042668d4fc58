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


def wait_until(condition, timeout: float, what: str, interval: float = 0.1):
    """Poll `condition()` until it returns something truthy (returned); RuntimeError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:g} s")
        time.sleep(interval)  # poll interval of a readiness check


def redis_ping(port: int) -> bool:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def start_redis(port: int | None = None, timeout: float = 20) -> tuple[int, subprocess.Popen]:
    """A private, throw-away redis-server (no persistence) on 127.0.0.1:port (a free one by default)."""
    import shutil

    port = port or free_port()
    process = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: process.poll() is not None or redis_ping(port), timeout, f"redis-server on {port}")
        if process.poll() is not None:
            raise RuntimeError(f"redis-server on {port} exited with {process.returncode}")
    except RuntimeError:
        stop_process(process)
        raise
    return port, process


def start_mariadb(datadir: Path, port: int | None = None, timeout: float = 60) -> tuple[int, subprocess.Popen]:
    """A private MariaDB server (as `./dev services` starts one) with its data in `datadir`.

    root may log in over TCP without a password; an empty database `magicmirror` exists. The URL:
    mysql://root@127.0.0.1:<port>/magicmirror
    """
    import shutil

    port = port or free_port()
    import getpass

    user = ["--user=" + getpass.getuser()]
    datadir = Path(datadir)
    if not (datadir / "mysql").is_dir():
        datadir.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 - fixed binary, fixed arguments
            [
                shutil.which("mariadb-install-db") or "mariadb-install-db",
                "--no-defaults",
                f"--datadir={datadir}",
                *user,
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
    socket_path = datadir / "mysqld.sock"
    process = subprocess.Popen(  # noqa: S603 - fixed binary, fixed arguments
        [
            shutil.which("mariadbd") or "mariadbd",
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={socket_path}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={datadir / 'mysqld.pid'}",
            *user,
            "--character-set-server=utf8mb4",
            "--innodb-buffer-pool-size=32M",
            "--skip-log-bin",
            f"--log-error={datadir / 'error.log'}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def ready():
        if process.poll() is not None:
            return True
        try:
            import MySQLdb

            MySQLdb.connect(host="127.0.0.1", port=port, user="root", connect_timeout=1).close()
            return True
        except MySQLdb.Error:
            return False

    try:
        wait_until(ready, timeout, f"mariadbd on {port}", interval=0.2)
        if process.poll() is not None:
            raise RuntimeError(
                f"mariadbd exited with {process.returncode}: {(datadir / 'error.log').read_text()[-2000:]}"
            )
        import MySQLdb

        connection = MySQLdb.connect(host="127.0.0.1", port=port, user="root")
        try:
            connection.cursor().execute("CREATE DATABASE IF NOT EXISTS magicmirror CHARACTER SET utf8mb4")
        finally:
            connection.close()
    except Exception:
        stop_process(process)
        raise
    return port, process


def start_worker(env: dict, name: str, queues: list[str], *, pool: str = "threads", concurrency: int = 4, stdout=None):
    """A Celery worker process (its own session, so a test can signal it alone)."""
    command = [sys.executable, "-m", "celery", "-A", "magicmirror", "worker", "-n", name, "-l", "info"]
    command += ["-Q", ",".join(queues), f"--pool={pool}", "-c", str(concurrency)]
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        command,
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout else None,
        start_new_session=True,
    )


def wait_for_worker(app, name: str, process: subprocess.Popen, timeout: float = 90) -> None:
    """Until the worker `name` answers a ping through `app`'s broker (it does once its engines are loaded)."""

    def answered():
        if process.poll() is not None:
            raise RuntimeError(f"the worker {name} exited with {process.returncode}")
        try:
            replies = app.control.ping(destination=[name], timeout=0.5) or []
        except Exception:  # the broker is (re)starting: ask again
            return False
        return any(name in reply for reply in replies)

    wait_until(answered, timeout, f"the worker {name} answering a ping", interval=0)


def child_env(**extra) -> dict:
    """For a server or worker a test starts: this process's environment (the test run's id, Redis,
    MEDIA_ROOT), the test settings, and the database pointed at the test database (call it once
    pytest-django has created that). `extra` entries override; a None value removes the variable."""
    import os
    from urllib.parse import urlsplit, urlunsplit

    from django.conf import settings

    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "magicmirror.settings_test"
    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("mysql"):
        env["MM_TEST_DB_NAME"] = database["NAME"]  # the test database, once django_db_setup ran
        if os.environ.get("DATABASE_URL"):
            env["DATABASE_URL"] = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path=f"/{database['NAME']}"))
        else:
            env["MYSQL_DATABASE"] = database["NAME"]
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env
