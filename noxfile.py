"""MagicMirror's named checks: `.venv/bin/nox -s NAME` runs one, `./dev test` runs them all.

    lint            ruff check + ruff format --check
    types           mypy ([tool.mypy] in pyproject.toml) over MYPY_TARGETS
    js              npm ci, npm run lint (eslint), npm test (node --test) in the repository root
    tests_services  pytest on MariaDB + Redis + Celery (the local services of `./dev services`)
    tests_embedded  pytest on the embedded default (SQLite, in-memory layer, in-process jobs)
    cosyvoice_real  the real CosyVoice2 classes on the CPU, in .venv-cosyvoice (docs/cosyvoice2.md)

No session makes a virtualenv of its own: they run the tools of .venv and .venv-cosyvoice, which
`./dev` installs (`./dev test` installs everything). Arguments after `--` go to pytest in every pytest
session: `.venv/bin/nox -s tests_embedded -- -x -k speakers`. When arguments are given, a run in which
they select no test (pytest exit status 5) passes: a `-k` that matches only some runs is normal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
VENV_BIN = ROOT / ".venv" / "bin"
COSYVOICE_BIN = ROOT / ".venv-cosyvoice" / "bin"

# mypy's targets: live/ and voice/jobs/ at least, and the rest of the product code that is clean. Paths that
# do not exist (yet) are skipped, and so is a path inside another target (mypy refuses a file twice).
# Settings and exclusions (tests, migrations) are in pyproject.toml [tool.mypy]. Not yet: devtools/.
MYPY_TARGETS = [
    "live",
    "voice/jobs",
    "voice",
    "magicmirror",
    "speakers",
    "chat",
    "memory",
    "tools",
    "reminders",
    "noxfile.py",
]

# The variables that point the site at MariaDB/MySQL and Redis; without them it runs embedded.
SERVICE_VARS = ("DATABASE_URL", "REDIS_URL", "MYSQL_HOST", "MYSQL_DATABASE")
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "types", "js", "tests_services", "tests_embedded", "cosyvoice_real"]


def _tool(session: nox.Session, bin_dir: Path, name: str) -> str:
    path = bin_dir / name
    if not path.exists():
        session.error(f"{path.relative_to(ROOT)} is missing: `./dev test` installs it.")
    return str(path)


def _pytest_codes(session: nox.Session) -> list[int]:
    # Exit status 5 is "no tests collected": fine for a selection of the caller's, never without one.
    return [0, 5] if session.posargs else [0]


def _services_env(session: nox.Session) -> dict[str, str | None]:
    """DATABASE_URL and REDIS_URL of the local MariaDB + Redis (from the environment when both are set)."""
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        return {"DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"]}
    session.log("Starting the local services: ./dev services")
    dev = [str(ROOT / "dev"), "services"]
    done = subprocess.run(dev, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)  # noqa: S603
    if done.returncode != 0:
        session.error(f"./dev services failed (exit status {done.returncode})")
    env: dict[str, str | None] = {}
    for line in done.stdout.splitlines():
        name, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and name.isidentifier() and name.isupper():
            env[name] = value
    if not env.get("DATABASE_URL") or not env.get("REDIS_URL"):
        session.error(f"./dev services printed no DATABASE_URL and REDIS_URL:\n{done.stdout}")
    return env


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the repository."""
    ruff = _tool(session, VENV_BIN, "ruff")
    session.run(ruff, "check", ".")
    session.run(ruff, "format", "--check", ".")


@nox.session(python=False)
def types(session: nox.Session) -> None:
    """mypy over MYPY_TARGETS (those that exist)."""
    mypy = _tool(session, VENV_BIN, "mypy")
    present = [t for t in MYPY_TARGETS if (ROOT / t).exists()]
    missing = [t for t in MYPY_TARGETS if t not in present]
    if missing:
        session.log(f"Not there (skipped): {', '.join(missing)}")
    # voice/jobs is checked as part of voice: a path inside another target is left to that one.
    targets = [t for t in present if not any(Path(t).is_relative_to(o) for o in present if o != t)]
    session.run(mypy, *targets)


@nox.session(python=False)
def js(session: nox.Session) -> None:
    """npm ci, then eslint (npm run lint) and the node unit tests (npm test)."""
    if not (ROOT / "package.json").exists():
        session.error("package.json is missing: the JavaScript checks (npm run lint, npm test) are defined there.")
    if shutil.which("npm") is None:
        session.error("npm is not installed: `./dev test` installs Debian's nodejs and npm.")
    session.run("npm", "ci", "--no-audit", "--no-fund", external=True)
    session.run("npm", "run", "lint", external=True)
    session.run("npm", "test", external=True)


@nox.session(python=False)
def tests_services(session: nox.Session) -> None:
    """pytest on MariaDB + Redis + Celery."""
    pytest = _tool(session, VENV_BIN, "pytest")
    session.run(pytest, *session.posargs, env=_services_env(session), success_codes=_pytest_codes(session))


@nox.session(python=False)
def tests_embedded(session: nox.Session) -> None:
    """pytest on the embedded default, without the services-only tests."""
    pytest = _tool(session, VENV_BIN, "pytest")
    env = dict.fromkeys(SERVICE_VARS)  # None: removed from the environment
    session.run(pytest, "-m", "not services_only", *session.posargs, env=env, success_codes=_pytest_codes(session))


@nox.session(python=False)
def cosyvoice_real(session: nox.Session) -> None:
    """The real CosyVoice2 classes on the CPU (.venv-cosyvoice), embedded and then in a Celery worker."""
    pytest = _tool(session, COSYVOICE_BIN, "pytest")
    tests = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "voice").glob("**/cosyvoice_real")) if p.is_dir()]
    if not tests:
        session.error("No cosyvoice_real test folder under voice/")
    codes = _pytest_codes(session)
    # No network: a network namespace of their own where the machine allows it (unshare -n), else the
    # tests' socket guard. The worker run needs loopback MariaDB and Redis: the guard only.
    offline: list[str] = []
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True, check=False).returncode == 0:  # noqa: S603
        offline = [unshare, "-n"]
    session.log(f"Real CosyVoice2 classes on the CPU (embedded default{', unshare -n' if offline else ''})")
    session.run(
        *offline,
        pytest,
        "-m",
        "cosyvoice_real and not services_only",
        *tests,
        *session.posargs,
        env={**dict.fromkeys(SERVICE_VARS), **OFFLINE},
        success_codes=codes,
        external=True,
    )
    session.log("Real CosyVoice2 classes in a Celery worker (MariaDB + Redis)")
    session.run(
        pytest,
        "-m",
        "cosyvoice_real and services_only",
        *tests,
        *session.posargs,
        env={**_services_env(session), **OFFLINE},
        success_codes=codes,
    )
