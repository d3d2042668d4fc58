"""Fixtures shared by every app's tests."""

import io
import math
import struct
import wave

import pytest
from django.conf import settings
from django.core.cache import cache

from devtools.fake_llm import FakeLLMServer


def _services_configured():
    return (not settings.EMBEDDED) and settings.DATABASES["default"]["ENGINE"].endswith("mysql")


def pytest_collection_modifyitems(config, items):
    if _services_configured():
        return
    skip = pytest.mark.skip(reason="needs MariaDB/MySQL, Redis and Celery (./dev test starts them)")
    for item in items:
        if "services_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _clear_cache():
    # Rate-limit counters live in the cache; every test starts from zero. On Redis only this run's
    # keys go (settings_test gives each run a key prefix): other runs may share the server.
    if settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        client = cache._cache.get_client(write=True)
        stale = list(client.scan_iter(match=cache.make_key("*"), count=1000))
        if stale:
            client.delete(*stale)
    else:
        cache.clear()
    yield


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    # Each test runs on an event loop of its own, and channels-redis keeps asyncio locks per layer
    # instance: one left locked by a task of an ended test's loop (a receive cut off with it) would
    # make every later receive fail with "bound to a different event loop". A layer per test.
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def fake_llm_server():
    with FakeLLMServer(api_key="sk-test") as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server, settings):
    """The fake OpenAI-compatible server, with the LLM settings pointed at it."""
    fake_llm_server.reset()
    for name, value in fake_llm_server.settings().items():
        setattr(settings, name, value)
    settings.LLM_TIMEOUT = 5.0
    yield fake_llm_server
    fake_llm_server.release()


@pytest.fixture
def make_user(django_user_model):
    counter = {"n": 0}

    def make(username=None, password="correct-horse-9", **extra):
        counter["n"] += 1
        return django_user_model.objects.create_user(
            username=username or f"user{counter['n']}", password=password, **extra
        )

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("mallory")


@pytest.fixture
def api(client, user):
    """A logged-in browser-like client (session auth)."""
    client.force_login(user)
    return client


def tone_wav(seconds=2.0, rate=24000, freq=220.0, amplitude=0.4) -> bytes:
    """A short mono PCM16 WAV of a tone: small, valid, non-silent reference audio."""
    frames = int(seconds * rate)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(amplitude * 32767 * math.sin(2 * math.pi * freq * i / rate)))
                for i in range(frames)
            )
        )
    return buf.getvalue()


@pytest.fixture
def wav_bytes():
    return tone_wav


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, fake_llm_server):
    """A real Celery worker process against the test Redis and the test database.

    It serves the default, asr and tts queues with four threads (one process, so one loaded model
    of each kind, as in production) and is ready once it answers a ping, which it does only after
    loading its engines (voice.worker preloads them before the consumer starts).
    """
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from devtools.localprocs import child_env
    from magicmirror.celery import app

    if settings.CELERY_TASK_ALWAYS_EAGER:
        pytest.skip("no broker: the embedded default runs jobs in-process")
    # The worker is no test runner: it uses NAME itself, so its database settings name the test database.
    env = child_env(**fake_llm_server.settings())  # the memory job (default queue) asks the fake LLM
    name = f"test-{os.getpid()}@localhost"
    command = [sys.executable, "-m", "celery", "-A", "magicmirror", "worker", "-n", name, "-l", "warning"]
    queues = ",".join([settings.CELERY_TASK_DEFAULT_QUEUE, settings.VOICE_ASR_QUEUE, settings.VOICE_TTS_QUEUE])
    command += ["-Q", queues, "--pool=threads", "-c", "4"]
    process = subprocess.Popen(
        command,
        cwd=Path(settings.BASE_DIR),
        env=env,
    )
    deadline = time.monotonic() + 180  # loading Vosk takes ~10 s here, minutes on a loaded machine
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"The Celery worker exited with {process.returncode}")
            replies = app.control.ping(destination=[name], timeout=0.5) or []
            if any(name in reply for reply in replies):
                break
            if time.monotonic() > deadline:
                pytest.fail("The Celery worker did not answer a ping within 180 s")
        yield name
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
