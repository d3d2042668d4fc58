"""Celery application. Workers: `celery -A magicmirror worker` (see docs/deploy.md).

In the embedded default (no REDIS_URL) tasks run eagerly inside the web process.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "magicmirror.settings")

app = Celery("magicmirror")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.autodiscover_tasks(["voice.jobs"])  # voice/jobs/tasks.py (a package below the app)
