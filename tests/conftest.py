"""Fixtures for the real-browser tests (tests/test_browser.py): a live daphne server and Debian's
Chromium (/usr/bin/chromium) driven by Playwright's sync API (Playwright's own browser download is
never used: `playwright install` is not needed, and cannot work here).

The server runs in one of two modes, picked by `browser_server`:

- services (the test run has REDIS_URL, so settings.VOICE_JOBS_IN_PROCESS is False): daphne against
  the run's test database and Redis, with the session's real Celery worker doing ASR and TTS. Tests
  register their own users through the UI; they are django_db(transaction=True), so the database is
  flushed after each.
- embedded (no Redis): daphne on the embedded default with a SQLite file of its own, voice jobs
  in-process.
"""

import contextlib
import os
from pathlib import Path

import pytest
from django.conf import settings

from devtools import samples
from devtools.localprocs import child_env, migrate, serving_daphne

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FAKE_MIC_WAV = samples.path("hello_padded.wav")
SPEAKER_WAV = samples.path("hello.wav")
PASSWORD = "correct-horse-9"
# Where screenshots go (var/ is git-ignored): look at them; never commit them.
ARTIFACTS = Path(os.environ.get("MM_BROWSER_ARTIFACTS", ROOT / "var" / "test-artifacts" / "browser"))
WAIT_MS = 90_000  # the first voice turn loads the recogniser and the voice, on a loaded machine

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    f"--use-file-for-fake-audio-capture={FAKE_MIC_WAV}",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--lang=zh-CN",
]


def services_mode():
    """True when the run has Redis and a worker (the first run of ./dev test)."""
    return not settings.VOICE_JOBS_IN_PROCESS


def _llm_env(fake_llm_server):
    return dict(
        {name: str(value) for name, value in fake_llm_server.settings().items()},
        DJANGO_SETTINGS_MODULE="magicmirror.settings_test",
        VOICE_TTS_ENGINES="piper",
        RATELIMIT_LOGIN="1000/m",  # every test registers (and one logs in) from 127.0.0.1
        PYTHONUNBUFFERED="1",
    )


def _services_env(fake_llm_server):
    """The test process's environment (Redis, MEDIA_ROOT, run id), pointed at the test database."""
    return child_env(**_llm_env(fake_llm_server))


def _embedded_env(fake_llm_server, sqlite_path):
    """The embedded default (SQLite file, in-memory channel layer, in-process voice jobs)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"} and not k.startswith("MYSQL_")
    }
    env.update(_llm_env(fake_llm_server), SQLITE_PATH=str(sqlite_path))
    return env


def browser_test_module():
    """(expect, pytestmark) for a module of Chromium tests: Playwright's `expect` waiting up to WAIT_MS
    (the module is skipped without the playwright package), and the marks: browser, and on the services
    backend a transactional database (the live server writes to the test database: flushed after each)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (requirements-dev.txt)")
    sync_api.expect.set_options(timeout=WAIT_MS)
    marks = [pytest.mark.browser]
    if services_mode():
        marks.append(pytest.mark.django_db(transaction=True))
    return sync_api.expect, marks


@pytest.fixture(scope="session")
def live_browser_server(request, fake_llm_server, tmp_path_factory):
    """(url, env) of the live daphne server; `env` runs commands against its database (manage_on_server)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="needs the playwright package (requirements-dev.txt)")
    directory = tmp_path_factory.mktemp("browser-server")
    env = live_server_env(request, fake_llm_server, directory)
    with live_daphne(env, directory) as port:
        yield f"http://127.0.0.1:{port}", env


@pytest.fixture(scope="session")
def browser_server(live_browser_server):
    """http://127.0.0.1:<port> of a live daphne server (HTTP and the voice WebSocket)."""
    return live_browser_server[0]


def live_server_env(request, fake_llm_server, directory: Path) -> dict:
    """The environment of a live daphne of these tests: the test database and the Celery worker when
    the run has services, else a migrated SQLite file of its own in `directory`."""
    if services_mode():
        request.getfixturevalue("celery_worker_process")  # also sets up the test database
        return _services_env(fake_llm_server)
    env = _embedded_env(fake_llm_server, directory / "db.sqlite3")
    migrate(env)
    return env


@contextlib.contextmanager
def live_daphne(env: dict, directory: Path):
    """The port of a daphne serving `env` for the block (a test failure with its log if it does not start)."""
    try:
        with serving_daphne(env, directory / "daphne.log") as (port, _process):
            yield port
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def page(request, browser_server, fake_llm_server):
    """A fresh Chromium page (new browser, no cookies, Chinese preferred, desktop size) with the
    fake microphone playing FAKE_MIC_WAV; a screenshot named after the test is saved at the end.

    Playwright is started per test, not per session: while its sync API is active a running event
    loop is set on this thread, and the Django ORM (the django_db flush after each test) refuses to
    run then.
    """
    from playwright.sync_api import sync_playwright

    fake_llm_server.reset()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(
            base_url=browser_server,
            locale="zh-CN",
            viewport={"width": 1280, "height": 900},
            permissions=["microphone"],
        )
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        try:
            yield page
        finally:
            try:
                page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            finally:
                context.close()
                browser.close()
    fake_llm_server.reset()
