"""Reminder metrics, read from the database when Prometheus scrapes the web process.

Reminders fire in a Celery worker (beat's task), which exposes no metrics, or in the web process
(embedded): a counter kept in memory would miss the first. The rows are the truth in both cases, so
`mm_reminders_fired_total` counts the fired reminders (it drops when users are deleted: Prometheus
treats that as a counter reset) and `mm_reminders_pending` the ones waiting. Two indexed counts.
"""

import logging

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

logger = logging.getLogger(__name__)


class ReminderCollector:
    def collect(self):
        from django.db import close_old_connections
        from django.db.models import Count

        from .models import Reminder

        fired = CounterMetricFamily("mm_reminders_fired", "Reminders fired at their time (from the database).")
        pending = GaugeMetricFamily("mm_reminders_pending", "Reminders waiting for their time.")
        try:
            counts = dict(
                Reminder.objects.filter(state__in=[Reminder.State.FIRED, Reminder.State.PENDING])
                .values_list("state")
                .annotate(n=Count("id"))
                .values_list("state", "n")
            )
        except Exception as exc:  # the database is away: the scrape still answers
            logger.warning("Could not count reminders: %s", exc)
            close_old_connections()
        else:
            fired.add_metric([], counts.get(Reminder.State.FIRED, 0))
            pending.add_metric([], counts.get(Reminder.State.PENDING, 0))
        yield fired
        yield pending

    def describe(self):
        return []  # collected at scrape time only: no query at registration


_collector: ReminderCollector | None = None


def register() -> None:
    global _collector
    if _collector is None:
        _collector = ReminderCollector()
        REGISTRY.register(_collector)
