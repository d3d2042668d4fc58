"""Settings for the test suite: the normal settings, with TESTING on and throw-away storage."""

import os
import tempfile

os.environ["MAGICMIRROR_TESTING"] = "1"

from .settings import *  # noqa: F403
from .settings import CACHES, REDIS_URL

MEDIA_ROOT = tempfile.mkdtemp(prefix="mm-test-media-")
# Tests are not behind TLS.
SECURE_SSL_REDIRECT = False
if REDIS_URL:
    # A Redis database of its own for the cache, so clearing it between tests leaves the channel
    # layer and the Celery broker alone.
    CACHES["default"]["LOCATION"] = REDIS_URL.rsplit("/", 1)[0] + "/2"
    CACHES["default"]["KEY_PREFIX"] = "mm-test"
STATIC_ROOT = tempfile.mkdtemp(prefix="mm-test-static-")
WHITENOISE_USE_FINDERS = True

# A test database of this run's own, so several runs can share one MariaDB server.
if DATABASES["default"]["ENGINE"].endswith("mysql"):  # noqa: F405
    DATABASES["default"]["TEST"]["NAME"] = os.environ.get("MM_TEST_DB_NAME", f"test_magicmirror_{os.getpid()}")  # noqa: F405
