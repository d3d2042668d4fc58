"""Fixtures shared by every app's tests."""

import io
import math
import struct
import wave

import pytest
from django.conf import settings
from django.core.cache import cache

from chat.fake_llm import FakeLLMServer


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
    # Rate-limit counters live in the cache; every test starts from zero.
    cache.clear()
    yield


@pytest.fixture(scope="session")
def fake_llm_server():
    with FakeLLMServer(api_key="sk-test") as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server, settings):
    """The fake OpenAI-compatible server, with the LLM settings pointed at it."""
    fake_llm_server.reset()
    settings.LLM_API_KEY = "sk-test"
    settings.LLM_BASE_URL = fake_llm_server.base_url
    settings.LLM_MODEL = "fake-model"
    settings.LLM_TITLE_MODEL = "fake-model"
    settings.LLM_MAX_RETRIES = 0
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
                struct.pack("<h", int(amplitude * 32767 * math.sin(2 * math.pi * freq * i / rate))) for i in range(frames)
            )
        )
    return buf.getvalue()


@pytest.fixture
def wav_bytes():
    return tone_wav
