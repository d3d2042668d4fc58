"""Structured logs: a JSON formatter, and the trace / job ids that join web and worker lines.

LOG_FORMAT=json (settings.LOGGING) writes one JSON object a line to stdout:

    {"timestamp": "2025-01-01T12:00:00.123456+00:00", "level": "INFO", "logger": "voice.jobs.runners",
     "message": "...", "process": 1234, "thread": "MainThread", "trace_id": "9f2c...", "job_id": "ab12..."}

`trace_id` and `job_id` appear when set: by `log_context()` / `trace_context()` / `bind_trace()` (a
context variable, so it follows asyncio tasks created inside it and the code of one thread), or by
`extra={"trace_id": ...}` on one call. The web side gives each chat turn a trace id
(`new_trace_id()`); voice jobs carry it to the worker (voice.jobs.requester -> voice.jobs.tasks ->
voice.jobs.runners, the `trace_id` argument), where the job's log lines are written inside
`log_context(trace_id=..., job_id=...)`. Grep one turn across processes with
`jq 'select(.trace_id == "...")'`. (A trace id is a log correlation id: the live session's
`turn_id` is something else, a per-socket turn counter of the WebSocket protocol.)

This module must stay importable before Django is set up (settings.LOGGING names its classes).
"""

import contextlib
import contextvars
import datetime
import json
import logging
import uuid

trace_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("mm_trace_id", default=None)
job_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("mm_job_id", default=None)

CONTEXT_FIELDS = (("trace_id", trace_id_var), ("job_id", job_id_var))

# Attributes every LogRecord has: anything else on a record came from `extra=` and is logged too.
_RECORD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def new_trace_id() -> str:
    return uuid.uuid4().hex[:16]


def current_trace_id() -> str | None:
    return trace_id_var.get()


@contextlib.contextmanager
def log_context(*, trace_id=None, job_id=None):
    """Tag every log line written inside (this thread, or this task and tasks created in it).

    A None argument leaves that id as it was (an enclosing context's id stays).
    """
    tokens = []
    if trace_id is not None:
        tokens.append((trace_id_var, trace_id_var.set(str(trace_id))))
    if job_id is not None:
        tokens.append((job_id_var, job_id_var.set(str(job_id))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            try:
                var.reset(token)
            except ValueError:  # reset from another context (a generator resumed elsewhere): clear instead
                var.set(None)


def trace_context(trace_id: str | None = None):
    """`with trace_context():` tags log lines (and the voice jobs started inside) with one trace id.

    Without an argument a new id is made. Enter it in the task that runs the turn: tasks created
    inside inherit it, and voice.jobs passes it to the workers.
    """
    return log_context(trace_id=trace_id or new_trace_id())


def bind_trace(trace_id: str | None = None) -> str:
    """Tag the rest of the current asyncio task (and tasks it creates) with a trace id; returns it.

    For the first line of a task that runs one turn (no reset needed: the task's context ends with it).
    """
    trace_id = trace_id or new_trace_id()
    trace_id_var.set(trace_id)
    return trace_id


class ContextFilter(logging.Filter):
    """Puts trace_id/job_id on every record (None when unset), for `%(trace_id)s` in plain formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, message, process, thread, ids, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "timestamp": datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        for name, var in CONTEXT_FIELDS:
            value = getattr(record, name, None) or var.get()
            if value is not None:
                entry[name] = value
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def logging_config(log_format: str = "plain", level: str = "INFO") -> dict:
    """The LOGGING dict for settings: stdout, plain text or JSON lines."""
    if log_format not in ("plain", "json"):
        raise ValueError(f"LOG_FORMAT must be 'plain' or 'json', not {log_format!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "magicmirror.logging.ContextFilter"}},
        "formatters": {
            "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
            "json": {"()": "magicmirror.logging.JsonFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": log_format,
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {"django.db.backends": {"level": "WARNING"}},
    }
