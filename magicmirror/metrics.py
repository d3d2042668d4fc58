"""Prometheus metrics (prometheus-client), served at /metrics by the web process.

Where each metric is observed:

* mm_turns_total{source}                 chat.services.replies.reply_stream, once per turn (text/voice)
* mm_llm_first_token_seconds             chat.llm.stream_reply: request sent -> first text token
* mm_errors_total{code}                  LLM errors (replies), voice job errors and timeouts (voice.jobs.requester)
* mm_tts_first_chunk_seconds{engine}     voice.jobs.requester.job_messages: the job's own `started` -> first chunk's `t`
* mm_tts_real_time_factor{engine}        voice.jobs.requester.job_messages: synthesis seconds / audio seconds, at done
* mm_time_to_first_audio_seconds{source} the voice session: end of the user's speech (or a typed message)
                                         -> first reply audio frame sent (call observe_ttfa)
* mm_transcript_latency_seconds          the voice session: end of speech -> final transcript
* mm_turn_stage_seconds{stage}           hands-free voice turns, from the end of the user's speech to:
                                         turn_end (end of turn declared), final (final transcript),
                                         llm_first_token, first_sentence (first speakable piece ready),
                                         first_audio (first reply audio frame sent)
* mm_turn_ends_total{reason}             hands-free ends of turn: model, silence_limit, silence_rule
* mm_turn_model_seconds                  one Smart Turn call (features + inference, in its thread)
* mm_preemptive_generations_total{outcome} replies started at a pause: used or discarded
* mm_barge_ins_total{outcome}            replies paused by user speech: interrupted or resumed
* mm_tool_calls_total{tool,outcome}      tools.runner: each tool call the LLM made (ok, error, invalid, timeout, ...)
* mm_tool_call_seconds{tool}             tools.runner: one tool call, arguments checked to result
* mm_reminders_fired_total / mm_reminders_pending  reminders/metrics.py, read from the database at scrape time
                                         (reminders fire in a Celery worker, which Prometheus does not scrape)
* mm_voice_sessions_active               the voice WebSocket consumer (session_opened/session_closed)
* mm_voice_queue_depth{queue}            collected at scrape time: Redis LLEN of the asr/tts/default queues
* process_* / python_*                   prometheus-client's default collectors

Multi-process: daphne serves /metrics from one process and keeps the values in memory. Celery
workers expose nothing over HTTP: the worker-side timings (TTS first chunk, real-time factor) are
computed in the web process from the timestamps every job message carries (`started`, `t`, both
taken on the worker's clock, so no clock skew between hosts enters them). With several daphne
processes, scrape each one (each listens on its own port) and aggregate in Prometheus.
"""

import logging
import time

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

logger = logging.getLogger(__name__)

# Voice latencies: tens of milliseconds to tens of seconds.
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
RTF_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)

TURNS = Counter("mm_turns", "Chat turns started, by source (text or voice).", ["source"])
ERRORS = Counter("mm_errors", "Errors reported to users, by stable error code.", ["code"])
LLM_FIRST_TOKEN = Histogram(
    "mm_llm_first_token_seconds", "LLM request sent to first text token.", buckets=LATENCY_BUCKETS
)
TTS_FIRST_CHUNK = Histogram(
    "mm_tts_first_chunk_seconds",
    "TTS job start (on the worker) to its first audio chunk.",
    ["engine"],
    buckets=LATENCY_BUCKETS,
)
TTS_RTF = Histogram(
    "mm_tts_real_time_factor",
    "TTS synthesis time divided by the duration of the audio produced (below 1: faster than real time).",
    ["engine"],
    buckets=RTF_BUCKETS,
)
TIME_TO_FIRST_AUDIO = Histogram(
    "mm_time_to_first_audio_seconds",
    "End of the user's input (speech or a typed message) to the first reply audio sent.",
    ["source"],
    buckets=LATENCY_BUCKETS,
)
TRANSCRIPT_LATENCY = Histogram(
    "mm_transcript_latency_seconds", "End of speech to the final transcript.", buckets=LATENCY_BUCKETS
)
TURN_STAGE = Histogram(
    "mm_turn_stage_seconds",
    "Hands-free voice turn: end of the user's speech to each stage (turn_end, final, llm_first_token, "
    "first_sentence, first_audio).",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
TURN_ENDS = Counter("mm_turn_ends", "Hands-free ends of turn, by what decided them.", ["reason"])
TURN_MODEL = Histogram(
    "mm_turn_model_seconds",
    "One end-of-turn model call (features and inference).",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1.0),
)
PREEMPTIVE = Counter(
    "mm_preemptive_generations", "Replies started at a pause before the turn ended, by outcome.", ["outcome"]
)
BARGE_INS = Counter("mm_barge_ins", "Replies paused by user speech, by outcome.", ["outcome"])
TOOL_CALLS = Counter("mm_tool_calls", "Tool calls made by the LLM, by tool and outcome.", ["tool", "outcome"])
TOOL_SECONDS = Histogram(
    "mm_tool_call_seconds", "One tool call, from its arguments to its result.", ["tool"], buckets=LATENCY_BUCKETS
)
VOICE_JOBS = Counter("mm_voice_jobs", "Voice jobs started by this process, by kind (asr, tts, tts_stream).", ["kind"])
SESSIONS_ACTIVE = Gauge("mm_voice_sessions_active", "Open voice WebSocket sessions (this process).")

METRIC_NAMES = (
    "mm_turns_total",
    "mm_errors_total",
    "mm_llm_first_token_seconds",
    "mm_tts_first_chunk_seconds",
    "mm_tts_real_time_factor",
    "mm_time_to_first_audio_seconds",
    "mm_transcript_latency_seconds",
    "mm_turn_stage_seconds",
    "mm_turn_ends_total",
    "mm_turn_model_seconds",
    "mm_preemptive_generations_total",
    "mm_barge_ins_total",
    "mm_tool_calls_total",
    "mm_tool_call_seconds",
    "mm_voice_jobs_total",
    "mm_voice_sessions_active",
    "mm_voice_queue_depth",
)


# -- calls for the web side (consumers, voice session) -----------------------------------------------
def session_opened() -> None:
    SESSIONS_ACTIVE.inc()


def session_closed() -> None:
    SESSIONS_ACTIVE.dec()


def voice_job_started(kind: str) -> None:
    VOICE_JOBS.labels(kind=kind).inc()


def turn_started(source: str) -> None:
    TURNS.labels(source=str(source or "text")).inc()


def observe_error(code: str | None) -> None:
    ERRORS.labels(code=str(code or "unknown")).inc()


def observe_llm_first_token(seconds: float) -> None:
    LLM_FIRST_TOKEN.observe(max(0.0, seconds))


def observe_ttfa(seconds: float, source: str = "voice") -> None:
    TIME_TO_FIRST_AUDIO.labels(source=str(source or "voice")).observe(max(0.0, seconds))


def observe_transcript_latency(seconds: float) -> None:
    TRANSCRIPT_LATENCY.observe(max(0.0, seconds))


TURN_STAGES = ("turn_end", "final", "llm_first_token", "first_sentence", "first_audio")


def observe_turn_stage(stage: str, seconds: float) -> None:
    TURN_STAGE.labels(stage=stage).observe(max(0.0, seconds))


def turn_ended(reason: str) -> None:
    TURN_ENDS.labels(reason=reason).inc()


def observe_turn_model(seconds: float) -> None:
    TURN_MODEL.observe(max(0.0, seconds))


def preemptive_outcome(outcome: str) -> None:
    """A preemptive reply was `used` or `discarded`."""
    PREEMPTIVE.labels(outcome=outcome).inc()


def barge_in_outcome(outcome: str) -> None:
    """A paused reply was `interrupted` or `resumed`."""
    BARGE_INS.labels(outcome=outcome).inc()


def observe_tool_call(tool: str, outcome: str, seconds: float) -> None:
    TOOL_CALLS.labels(tool=tool, outcome=outcome).inc()
    TOOL_SECONDS.labels(tool=tool).observe(max(0.0, seconds))


def observe_tts_first_chunk(seconds: float, engine: str | None) -> None:
    TTS_FIRST_CHUNK.labels(engine=engine or "unknown").observe(max(0.0, seconds))


def observe_tts_rtf(synthesis_seconds: float, audio_seconds: float, engine: str | None) -> None:
    if audio_seconds > 0 and synthesis_seconds >= 0:
        TTS_RTF.labels(engine=engine or "unknown").observe(synthesis_seconds / audio_seconds)


class Stopwatch:
    """`clock = Stopwatch()`; later `clock.seconds()` (monotonic)."""

    __slots__ = ("start",)

    def __init__(self):
        self.start = time.monotonic()

    def seconds(self) -> float:
        return time.monotonic() - self.start


# -- queue depth, collected when Prometheus scrapes -------------------------------------------------
def voice_queues() -> list[str]:
    from django.conf import settings

    return [settings.CELERY_TASK_DEFAULT_QUEUE, settings.VOICE_ASR_QUEUE, settings.VOICE_TTS_QUEUE]


def queue_depths() -> dict[str, int] | None:
    """Jobs waiting per queue (Redis LLEN of Celery's list), or None without a Redis broker."""
    from django.conf import settings

    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        with client.pipeline(transaction=False) as pipe:
            queues = voice_queues()
            for queue in queues:
                pipe.llen(queue)
            return dict(zip(queues, pipe.execute(), strict=True))
    finally:
        client.close()


class QueueDepthCollector:
    def collect(self):
        family = GaugeMetricFamily(
            "mm_voice_queue_depth", "Jobs waiting in a Celery queue (Redis LLEN).", labels=["queue"]
        )
        try:
            depths = queue_depths()
        except Exception as exc:  # Redis down: the scrape still answers; readiness reports the outage
            logger.warning("Could not read the queue depths: %s", exc)
            depths = None
        for queue, depth in (depths or {}).items():
            family.add_metric([queue], depth)
        yield family

    def describe(self):
        return []  # collected at scrape time only; avoids a Redis call at registration


_queue_collector = QueueDepthCollector()
REGISTRY.register(_queue_collector)


# -- the /metrics view ------------------------------------------------------------------------------
def _client_allowed(request) -> bool:
    import hmac
    import ipaddress

    from django.conf import settings

    token = getattr(settings, "METRICS_TOKEN", "")
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip(), token):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for allowed in getattr(settings, "METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"]):
        try:
            if address in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            logger.warning("METRICS_ALLOWED_IPS holds %r, which is no address or network", allowed)
    return False


def metrics_view(request):
    """Prometheus exposition. Allowed from METRICS_ALLOWED_IPS (addresses or networks, default
    loopback) or with `Authorization: Bearer <METRICS_TOKEN>`; 403 otherwise. REMOTE_ADDR is the
    peer's address: behind a reverse proxy it is the proxy's, so protect /metrics there or use
    the token."""
    from django.http import HttpResponse, HttpResponseForbidden, HttpResponseNotAllowed
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    if not _client_allowed(request):
        return HttpResponseForbidden("Metrics are not available to this client.\n", content_type="text/plain")
    response = HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
