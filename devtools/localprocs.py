"""Starting local server processes (daphne, Celery workers, Redis, MariaDB), on free ports by default:
shared by the benchmarks, the tests that run them as real processes, and `./dev services`
(devtools/services.py)."""

import contextlib
import os
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


def migrate(env: dict, timeout: float = 300) -> None:
    """`manage.py migrate` for the database that `env` names (a server's own SQLite file, say)."""
    command = [sys.executable, "manage.py", "migrate", "--noinput"]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=timeout)  # noqa: S603


@contextlib.contextmanager
def serving_daphne(env: dict, log_path: Path):
    """`with serving_daphne(env, log) as (port, process):` a daphne for the block, its output in `log_path`.

    RuntimeError, with the end of the log, when it does not start."""
    with Path(log_path).open("wb") as log:
        try:
            port, process = start_daphne(env, stdout=log)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {Path(log_path).read_text(errors='replace')[-3000:]}") from None
        try:
            yield port, process
        finally:
            stop_process(process)


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


def _spawn_server(command: list, daemon: bool) -> subprocess.Popen:
    """A server process: a child of this one (stop it with stop_process), or, `daemon`, in a session of
    its own that outlives this process (as `nohup ... &` would)."""
    return subprocess.Popen(  # noqa: S603 - fixed binaries, fixed arguments
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=daemon,
    )


def start_redis(
    port: int | None = None, timeout: float = 20, *, rundir: Path | None = None, daemon: bool = False
) -> tuple[int, subprocess.Popen]:
    """A private redis-server without persistence on 127.0.0.1:port (a free one by default).

    With `rundir`, its pid file and log go there (redis.pid, redis.log); `daemon`: see _spawn_server.
    The one way MagicMirror starts a local Redis: the tests', the benchmarks' and `./dev services`'.
    """
    import shutil

    port = port or free_port()
    command = [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1"]
    command += ["--save", "", "--appendonly", "no"]
    if rundir is not None:
        rundir = Path(rundir)
        rundir.mkdir(parents=True, exist_ok=True)
        command += [
            "--dir",
            str(rundir),
            "--pidfile",
            str(rundir / "redis.pid"),
            "--logfile",
            str(rundir / "redis.log"),
        ]
    process = _spawn_server(command, daemon)
    try:
        wait_until(lambda: process.poll() is not None or redis_ping(port), timeout, f"redis-server on {port}")
        if process.poll() is not None:
            raise RuntimeError(f"redis-server on {port} exited with {process.returncode}")
    except RuntimeError:
        stop_process(process)
        raise
    return port, process


# The database and user the site's local DATABASE_URL names (devtools/services.py).
MARIADB_SETUP = (
    "CREATE USER IF NOT EXISTS 'magicmirror'@'127.0.0.1' IDENTIFIED BY 'magicmirror'",
    "CREATE USER IF NOT EXISTS 'magicmirror'@'localhost' IDENTIFIED BY 'magicmirror'",
    "GRANT ALL PRIVILEGES ON *.* TO 'magicmirror'@'127.0.0.1'",
    "GRANT ALL PRIVILEGES ON *.* TO 'magicmirror'@'localhost'",
    "CREATE DATABASE IF NOT EXISTS magicmirror CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_520_ci",
    "FLUSH PRIVILEGES",
)


def start_mariadb(
    datadir: Path,
    port: int | None = None,
    timeout: float = 60,
    *,
    rundir: Path | None = None,
    daemon: bool = False,
) -> tuple[int, subprocess.Popen]:
    """A private MariaDB server on 127.0.0.1:port (a free one by default) with its data in `datadir`
    (initialised on first use), its socket, pid file and logs in `rundir` (default: datadir's parent:
    mariadb.sock, mariadb.pid, mariadb.err, mariadb-install.log); `daemon`: see _spawn_server.

    root may log in without a password (the socket, or TCP from 127.0.0.1); the database `magicmirror`
    and the user magicmirror (password magicmirror, all privileges) exist:
    mysql://root@127.0.0.1:<port>/magicmirror or mysql://magicmirror:magicmirror@127.0.0.1:<port>/magicmirror.
    The one way MagicMirror starts a local MariaDB: the tests' and `./dev services`'.
    """
    import pwd
    import shutil

    port = port or free_port()
    datadir = Path(datadir).resolve()
    rundir = Path(rundir).resolve() if rundir is not None else datadir.parent
    rundir.mkdir(parents=True, exist_ok=True)
    user = "--user=" + pwd.getpwuid(os.getuid()).pw_name  # mariadbd refuses to run as root without it
    if not (datadir / "mysql").is_dir():
        datadir.mkdir(parents=True, exist_ok=True)
        install_log = rundir / "mariadb-install.log"
        with install_log.open("wb") as log:
            installed = subprocess.run(  # noqa: S603 - fixed binary, fixed arguments
                [
                    shutil.which("mariadb-install-db") or "mariadb-install-db",
                    "--no-defaults",
                    f"--datadir={datadir}",
                    user,
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
            )
        if installed.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {install_log.read_text(errors='replace')[-2000:]}")
    socket_path = rundir / "mariadb.sock"
    error_log = rundir / "mariadb.err"
    # --no-defaults: a private server, independent of any system-wide MariaDB configuration.
    process = _spawn_server(
        [
            shutil.which("mariadbd") or "mariadbd",
            "--no-defaults",
            f"--datadir={datadir}",
            f"--socket={socket_path}",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--pid-file={rundir / 'mariadb.pid'}",
            user,
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_520_ci",
            "--innodb-buffer-pool-size=128M",
            "--innodb-flush-log-at-trx-commit=2",
            "--skip-log-bin",
            f"--log-error={error_log}",
        ],
        daemon,
    )

    def connect():
        import MySQLdb

        return MySQLdb.connect(unix_socket=str(socket_path), user="root", connect_timeout=1)

    def ready():
        if process.poll() is not None:
            return True
        try:
            import MySQLdb

            connect().close()
            return True
        except MySQLdb.Error:
            return False

    try:
        wait_until(ready, timeout, f"mariadbd on {port}", interval=0.2)
        if process.poll() is not None:
            log = error_log.read_text(errors="replace")[-2000:] if error_log.exists() else ""
            raise RuntimeError(f"mariadbd exited with {process.returncode}: {log}")
        connection = connect()
        try:
            cursor = connection.cursor()
            for statement in MARIADB_SETUP:
                cursor.execute(statement)
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
