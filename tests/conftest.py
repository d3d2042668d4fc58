"""Fixtures for the real-browser tests (tests/test_browser.py): a daphne server of their own and
Debian's Chromium driven by Selenium through /usr/bin/chromedriver (nothing is downloaded)."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FAKE_MIC_WAV = ROOT / "voice" / "tests" / "fixtures" / "hello_padded.wav"
BROWSER_USER = "ada"
BROWSER_PASSWORD = "correct-horse-9"
# Where screenshots go (look at them; never commit them).
ARTIFACTS = Path(os.environ.get("MM_BROWSER_ARTIFACTS", tempfile.gettempdir())) / "mm-browser"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_env(fake_llm_server, sqlite_path):
    """The embedded default (SQLite file, in-memory channel layer, in-process voice jobs), whatever
    the test run itself uses: the server has its own database, so no test database is shared."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL"} and not k.startswith("MYSQL_")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="magicmirror.settings_test",
        SQLITE_PATH=str(sqlite_path),
        LLM_API_KEY="sk-test",
        LLM_BASE_URL=fake_llm_server.base_url,
        LLM_MODEL="fake-model",
        LLM_TITLE_MODEL="fake-model",
        LLM_MAX_RETRIES="0",
        VOICE_TTS_ENGINES="piper",
        PYTHONUNBUFFERED="1",
    )
    return env


def _manage(env, *args):
    command = [sys.executable, "manage.py", *args]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=180)


@pytest.fixture(scope="session")
def browser_server(fake_llm_server, tmp_path_factory):
    """http://127.0.0.1:<port> of a daphne server (HTTP and WebSockets) with one user, ada."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    pytest.importorskip("selenium")
    directory = tmp_path_factory.mktemp("browser-server")
    env = _server_env(fake_llm_server, directory / "db.sqlite3")
    _manage(env, "migrate", "--noinput")
    _manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({BROWSER_USER!r}, password={BROWSER_PASSWORD!r})",
    )
    port = _free_port()
    log = (directory / "daphne.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "magicmirror.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            pytest.fail(f"daphne exited with {process.returncode}: {(directory / 'daphne.log').read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail("daphne did not start within 60 s")
            time.sleep(0.1)  # readiness poll of a starting server
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="session")
def chromium(browser_server):
    """Headless Chromium with a fake microphone that plays FAKE_MIC_WAV, preferring Chinese."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
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
        "--window-size=1280,900",
    ):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})
    profile = tempfile.mkdtemp(prefix="mm-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def browser(chromium, browser_server, fake_llm_server):
    """The shared browser, back at desktop size with a fresh fake LLM script."""
    fake_llm_server.reset()
    chromium.set_window_size(1280, 900)
    yield chromium
    fake_llm_server.reset()
