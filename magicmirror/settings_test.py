"""Settings for the test suite: the normal settings, with TESTING on and throw-away storage."""

import atexit
import os
import shutil
import tempfile

os.environ["MAGICMIRROR_TESTING"] = "1"

from .settings import *  # noqa: F403
from .settings import CACHES, REDIS_URL

# Shared with the worker and server processes a test starts (they inherit the environment).
MEDIA_ROOT = os.environ.setdefault("MM_TEST_MEDIA_ROOT", tempfile.mkdtemp(prefix="mm-test-media-"))
# Tests are not behind TLS.
SECURE_SSL_REDIRECT = False
if REDIS_URL:
    # A Redis database of its own for the cache, so clearing it between tests leaves the channel
    # layer and the Celery broker alone.
    CACHES["default"]["LOCATION"] = REDIS_URL.rsplit("/", 1)[0] + "/2"
STATIC_ROOT = tempfile.mkdtemp(prefix="mm-test-static-")
WHITENOISE_USE_FINDERS = True

# A test database of this run's own, so several runs can share one MariaDB server.
if DATABASES["default"]["ENGINE"].endswith("mysql"):  # noqa: F405
    DATABASES["default"]["TEST"]["NAME"] = os.environ.get("MM_TEST_DB_NAME", f"test_magicmirror_{os.getpid()}")  # noqa: F405
else:
    # A SQLite file, as the embedded default's (WAL, busy timeout): Django's in-memory test database
    # ("shared cache") refuses a second connection's write at once ("database table is locked")
    # where a file waits for the lock, and the embedded default writes from more than one thread
    # (the in-process memory job beside the turns). In RAM where there is a tmpfs, for speed.
    _shm = "/dev/shm"  # noqa: S108 (a private directory is made in it)
    _sqlite_dir = tempfile.mkdtemp(prefix="mm-test-db-", dir=_shm if os.access(_shm, os.W_OK) else None)
    DATABASES["default"]["TEST"] = {"NAME": f"{_sqlite_dir}/test.sqlite3"}  # noqa: F405
    atexit.register(shutil.rmtree, _sqlite_dir, True)  # RAM is not given back by itself

# Tests wrapped in a transaction need every query on the test's own connection: one thread-sensitive
# database thread, unless a test (or the server processes it starts) asks for the pool.
DB_ASYNC_THREADS = int(os.environ.get("DB_ASYNC_THREADS", "1"))

# Queues and channel names of this run's own: concurrent runs on one Redis never take each
# other's jobs. Worker and server processes started by the tests inherit the run id.
TEST_RUN_ID = os.environ.setdefault("MM_TEST_RUN_ID", f"{os.getpid()}")
CHANNEL_LAYER_PREFIX = f"mm-test-{TEST_RUN_ID}"
if REDIS_URL:
    # Cache keys too (rate-limit counters, voice socket slots keyed by user id, which another run's
    # database reuses): conftest.py clears only this prefix between tests.
    CACHES["default"]["KEY_PREFIX"] = CHANNEL_LAYER_PREFIX
if REDIS_URL:
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"{CHANNEL_LAYER_PREFIX}:asgi"  # noqa: F405
VOICE_ASR_QUEUE = f"{VOICE_ASR_QUEUE}-{TEST_RUN_ID}"  # noqa: F405
VOICE_TTS_QUEUE = f"{VOICE_TTS_QUEUE}-{TEST_RUN_ID}"  # noqa: F405
CELERY_TASK_DEFAULT_QUEUE = f"default-{TEST_RUN_ID}"
CELERY_TASK_ROUTES = {"voice.tasks.asr_*": {"queue": VOICE_ASR_QUEUE}, "voice.tasks.tts_*": {"queue": VOICE_TTS_QUEUE}}
# Memory's background jobs (an LLM request and writes after each turn) only where a test asks for
# them (memory/tests/conftest.py turns them on and waits for them): elsewhere they would race the
# test's own scripted replies and outlive its database.
MEMORY_ENABLED = False
MEMORY_SUMMARIES = False
# The embedded default's reminder clock fires with the real time; tests fire with a time they choose
# (reminders/tests turn the clock on where they test it).
REMINDERS_CLOCK_IN_PROCESS = False
# An Ollama the developer runs on 127.0.0.1:11434 must not answer for the suite's "not configured"
# tests: chat/tests/test_ollama.py points OLLAMA_URL at a fake of its own.
OLLAMA_URL = ""
