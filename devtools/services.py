"""The local MariaDB and Redis of `./dev test`, `./dev services` and `./dev stack`.

    python -m devtools.services start    # from the repository root

starts whichever of the two is not running yet (a server already listening on its port is reused) and
prints the URLs to use, one `NAME=value` a line:

    DATABASE_URL=mysql://magicmirror:magicmirror@127.0.0.1:3307/magicmirror
    REDIS_URL=redis://127.0.0.1:6380/0

Ports: MM_TEST_MYSQL_PORT (3307) and MM_TEST_REDIS_PORT (6380). MariaDB's data is in var/run/mariadb;
its socket, the pid files and the logs in var/run. Both servers outlive the command (stop them by their
pid files). How they are started (flags, the database and user) is devtools/localprocs.py's, which the
tests' throw-away servers use too.
"""

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

from devtools import localprocs

RUN = localprocs.ROOT / "var" / "run"
DEFAULT_MYSQL_PORT = 3307
DEFAULT_REDIS_PORT = 6380


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def urls(mysql_port: int, redis_port: int) -> dict[str, str]:
    return {
        "DATABASE_URL": f"mysql://magicmirror:magicmirror@127.0.0.1:{mysql_port}/magicmirror",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
    }


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(localprocs.ROOT))
    except ValueError:
        return str(path)


def _log(message: str) -> None:
    print(f"\033[1m==> {message}\033[0m", file=sys.stderr)  # as the dev script's own messages


def start(mysql_port: int, redis_port: int, rundir: Path = RUN, log=_log) -> dict[str, str]:
    """Start MariaDB and Redis unless something listens on their ports already; their URLs."""
    rundir = Path(rundir)
    if not listening(mysql_port):
        datadir = rundir / "mariadb"
        log(f"Starting MariaDB on 127.0.0.1:{mysql_port} (data in {_shown(datadir)})")
        localprocs.start_mariadb(datadir, mysql_port, rundir=rundir, daemon=True)
    if not listening(redis_port):
        log(f"Starting Redis on 127.0.0.1:{redis_port}")
        localprocs.start_redis(redis_port, rundir=rundir, daemon=True)
    return urls(mysql_port, redis_port)


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.services", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start_parser = commands.add_parser("start", help="start MariaDB and Redis where needed; print their URLs")
    start_parser.add_argument("--mysql-port", type=int, default=_port("MM_TEST_MYSQL_PORT", DEFAULT_MYSQL_PORT))
    start_parser.add_argument("--redis-port", type=int, default=_port("MM_TEST_REDIS_PORT", DEFAULT_REDIS_PORT))
    start_parser.add_argument(
        "--rundir", type=Path, default=RUN, help="sockets, pid files and logs; MariaDB's data in RUNDIR/mariadb"
    )
    args = parser.parse_args(argv)
    try:
        found = start(args.mysql_port, args.redis_port, args.rundir)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"Could not start the local services: {exc}", file=sys.stderr)
        return 1
    for name, value in found.items():
        print(f"{name}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
