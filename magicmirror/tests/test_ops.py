"""Operations: JSON logs with turn ids, liveness/readiness, Prometheus metrics, voice_status coverage."""

import io
import json
import logging
import logging.config
from contextlib import contextmanager

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.urls import Resolver404, path, resolve
from prometheus_client import REGISTRY

from devtools.fake_llm import ErrorReply, Reply
from magicmirror import health, metrics
from magicmirror.logging import JsonFormatter, log_context, logging_config, trace_context
from magicmirror.urls import urlpatterns as project_urlpatterns
from voice import jobs
from voice.jobs import runners

OPS_ROUTES = {"health/live": health.live, "health/ready": health.ready, "metrics": metrics.metrics_view}

# The project's routes plus the ops routes, for as long as magicmirror/urls.py lacks them
# (test_ops_routes_are_in_the_project_urlconf says whether it does).
urlpatterns = [*project_urlpatterns, *(path(route, view) for route, view in OPS_ROUTES.items())]


def _project_has_ops_routes() -> bool:
    try:
        return all(resolve(f"/{route}").func is view for route, view in OPS_ROUTES.items())
    except Resolver404:
        return False


@pytest.fixture(autouse=True)
def _ops_urls(settings):
    if not _project_has_ops_routes():
        settings.ROOT_URLCONF = __name__


def test_ops_routes_are_in_the_project_urlconf(settings):
    settings.ROOT_URLCONF = "magicmirror.urls"
    assert _project_has_ops_routes(), "add /health/live, /health/ready and /metrics to magicmirror/urls.py"


# -- logs -------------------------------------------------------------------------------------------
@contextmanager
def json_logs(*names):
    """Capture what the named loggers write, through the JSON formatter, as parsed objects."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger(name) for name in names]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    lines: list[dict] = []
    try:
        yield lines
    finally:
        for lg, level in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


def test_json_lines_parse_and_carry_the_context():
    with json_logs("mm.test") as lines:
        log = logging.getLogger("mm.test")
        log.info("outside")
        with log_context(trace_id="turn-1", job_id="job-1"):
            log.warning("inside %s", "the turn", extra={"queue": "tts"})
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("failed")
        log.info("after")
    assert [line["message"] for line in lines] == ["outside", "inside the turn", "failed", "after"]
    for line in lines:
        assert {"timestamp", "level", "logger", "message", "process"} <= set(line)
        assert line["logger"] == "mm.test"
    assert "trace_id" not in lines[0] and "trace_id" not in lines[3]
    assert lines[1]["trace_id"] == "turn-1" and lines[1]["job_id"] == "job-1" and lines[1]["level"] == "WARNING"
    assert lines[1]["queue"] == "tts"
    assert "ValueError: boom" in lines[2]["exc_info"]


def test_logging_config_choices():
    config = logging_config("json", "DEBUG")
    assert config["handlers"]["console"]["formatter"] == "json" and config["root"]["level"] == "DEBUG"
    assert logging_config("plain")["handlers"]["console"]["formatter"] == "plain"
    logging.config.dictConfig({**logging_config("json"), "root": {"level": "INFO"}})  # it loads
    with pytest.raises(ValueError):
        logging_config("xml")


def test_worker_code_path_logs_and_answers_with_the_trace_id():
    sent = []
    with json_logs("voice.jobs.runners") as lines:
        runners.tts_run(send=sent.append, job_id="job-w", text="   ", trace_id="turn-w")
    assert sent[-1]["code"] == "tts_empty_text" and sent[-1]["trace_id"] == "turn-w"
    assert lines and all(line["trace_id"] == "turn-w" and line["job_id"] == "job-w" for line in lines)
    # Without a turn id the job and its messages are as before.
    sent.clear()
    runners.tts_run(send=sent.append, job_id="job-x", text="   ")
    assert "trace_id" not in sent[-1]


@pytest.mark.django_db(transaction=True)
async def test_voice_jobs_carry_the_trace_id_from_the_web_side(settings, request):
    """The web side's turn id reaches the job (a worker process, or a thread in-process) and comes back."""
    if not settings.VOICE_JOBS_IN_PROCESS:
        await sync_to_async(request.getfixturevalue)("celery_worker_process")
    first_chunk = REGISTRY.get_sample_value("mm_tts_first_chunk_seconds_count", {"engine": "espeak-ng"}) or 0
    rtf = REGISTRY.get_sample_value("mm_tts_real_time_factor_count", {"engine": "espeak-ng"}) or 0
    with json_logs("voice.jobs.runners") as lines, trace_context("turn-web-1"):
        messages = [m async for m in jobs.synthesize(text="Hello there.", engine_name="espeak-ng")]
    assert messages[-1]["type"] == "voice.tts.done", messages[-1]
    assert {m["trace_id"] for m in messages} == {"turn-web-1"}
    if settings.VOICE_JOBS_IN_PROCESS:  # the job's log lines are this process's: they name the turn
        assert lines and {line["trace_id"] for line in lines} == {"turn-web-1"}
    # Worker-side timings, observed where the job's messages arrive.
    assert REGISTRY.get_sample_value("mm_tts_first_chunk_seconds_count", {"engine": "espeak-ng"}) == first_chunk + 1
    assert REGISTRY.get_sample_value("mm_tts_real_time_factor_count", {"engine": "espeak-ng"}) == rtf + 1


# -- health -----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_live_asks_no_dependency(client, settings, django_assert_num_queries):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}
    }
    with django_assert_num_queries(0):
        response = client.get("/health/live")
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert client.post("/health/live").status_code == 405


@pytest.mark.django_db
def test_ready_is_503_when_redis_is_down(client, settings):
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]}}
    }
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["channel_layer"]["ok"] is False and body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_ready_is_503_when_the_broker_is_down(client, settings, monkeypatch):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.VOICE_JOBS_IN_PROCESS = False

    def refuse(*args, **kwargs):
        raise ConnectionRefusedError("no broker")

    monkeypatch.setattr(health.celery_app.control, "broadcast", refuse)
    monkeypatch.setattr(health.celery_app.control, "inspect", refuse)
    response = client.get("/health/ready")
    assert response.status_code == 503
    workers = response.json()["checks"]["workers"]
    assert workers["ok"] is False and workers["error"] == "ConnectionRefusedError"
    assert set(workers["unserved_queues"]) == {
        settings.CELERY_TASK_DEFAULT_QUEUE,
        settings.VOICE_ASR_QUEUE,
        settings.VOICE_TTS_QUEUE,
    }


@pytest.mark.django_db
def test_ready_in_the_embedded_default(client, settings):
    if not settings.EMBEDDED:
        pytest.skip("embedded default only")
    response = client.get("/health/ready")
    assert response.status_code == 200, response.json()
    assert response.json()["checks"]["workers"]["mode"] == "in-process"


@pytest.mark.services_only
@pytest.mark.django_db
def test_ready_with_a_worker_serving_every_queue(client, settings, celery_worker_process):
    response = client.get("/health/ready")
    body = response.json()
    assert response.status_code == 200, body
    queues = body["checks"]["workers"]["queues"]
    wanted = [settings.CELERY_TASK_DEFAULT_QUEUE, settings.VOICE_ASR_QUEUE, settings.VOICE_TTS_QUEUE]
    assert sorted(queues) == sorted(wanted)
    for queue in wanted:
        assert queues[queue]["ok"] and queues[queue]["workers"] == [celery_worker_process]
    assert queues[settings.VOICE_TTS_QUEUE]["engines"][celery_worker_process]["tts"] == "piper"
    assert queues[settings.VOICE_ASR_QUEUE]["engines"][celery_worker_process]["asr"] == "vosk"


@pytest.mark.services_only
@pytest.mark.django_db
def test_ready_names_a_queue_no_worker_serves(client, settings, celery_worker_process):
    settings.VOICE_TTS_QUEUE = f"{settings.VOICE_TTS_QUEUE}-nobody"
    response = client.get("/health/ready")
    assert response.status_code == 503
    workers = response.json()["checks"]["workers"]
    assert workers["unserved_queues"] == [settings.VOICE_TTS_QUEUE]
    assert workers["queues"][settings.VOICE_TTS_QUEUE] == {"ok": False, "workers": [], "engines": {}}
    assert workers["queues"][settings.VOICE_ASR_QUEUE]["ok"] is True


@pytest.mark.services_only
@pytest.mark.django_db
def test_voice_status_shows_queue_coverage(settings, celery_worker_process):
    settings.VOICE_TTS_QUEUE = f"{settings.VOICE_TTS_QUEUE}-nobody"
    out = io.StringIO()
    call_command("voice_status", "--timeout", "1", stdout=out)
    text = out.getvalue()
    assert f"Queue {settings.VOICE_ASR_QUEUE}: served by {celery_worker_process} (asr vosk, tts piper)" in text
    assert f"Queue {settings.VOICE_TTS_QUEUE}: NO WORKER" in text
    assert f"No worker serves: {settings.VOICE_TTS_QUEUE}" in text
    out = io.StringIO()
    call_command("voice_status", "--json", "--timeout", "1", stdout=out)
    report = json.loads(out.getvalue())["workers"]
    assert report["queues"][settings.VOICE_ASR_QUEUE]["workers"] == [celery_worker_process]
    assert report["unserved_queues"] == [settings.VOICE_TTS_QUEUE]


# -- metrics ----------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_metrics_are_exported_to_allowed_clients_only(client, settings):
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1", "::1", "192.168.7.0/24"]
    settings.METRICS_TOKEN = "s3cret-token"
    response = client.get("/metrics")  # the test client is 127.0.0.1
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    body = response.content.decode()
    for name in metrics.METRIC_NAMES:
        if name != "mm_voice_queue_depth" or not settings.EMBEDDED:
            assert f"# TYPE {name.removesuffix('_total')}" in body, name
    assert client.get("/metrics", REMOTE_ADDR="192.168.7.9").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret-token").status_code == 200
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer ").status_code == 403


@pytest.mark.services_only
@pytest.mark.django_db
def test_queue_depth_is_read_from_redis(client, settings):
    import redis

    queue = settings.VOICE_TTS_QUEUE + "-depth"
    settings.VOICE_TTS_QUEUE = queue
    r = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        r.rpush(queue, "a", "b", "c")
        body = client.get("/metrics").content.decode()
        assert f'mm_voice_queue_depth{{queue="{queue}"}} 3.0' in body
    finally:
        r.delete(queue)
        r.close()


def sample(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.django_db(transaction=True)
async def test_counters_move_after_a_chat_turn(async_client, user, fake_llm):
    await async_client.aforce_login(user)
    turns, first_token = sample("mm_turns_total", source="text"), sample("mm_llm_first_token_seconds_count")
    fake_llm.queue(Reply("Hello from the fake model."), Reply("A title"))
    with json_logs("chat.services.replies") as lines:
        response = await async_client.post("/api/chat", {"message": "hi"}, content_type="application/json")
        assert response.status_code == 200
        body = b"".join([part async for part in response.streaming_content]).decode()
    assert "event: done" in body
    assert sample("mm_turns_total", source="text") == turns + 1
    assert sample("mm_llm_first_token_seconds_count") == first_token + 1
    assert lines and lines[0]["trace_id"]  # the web side names the turn

    errors = sample("mm_errors_total", code="llm_server_error")
    fake_llm.queue(ErrorReply(500))
    response = await async_client.post("/api/chat", {"message": "again"}, content_type="application/json")
    body = b"".join([part async for part in response.streaming_content]).decode()
    assert "llm_server_error" in body
    assert sample("mm_errors_total", code="llm_server_error") == errors + 1
    response = await async_client.get("/metrics")
    assert 'mm_turns_total{source="text"}' in response.content.decode()


def test_session_gauge_and_voice_latency_calls():
    active = sample("mm_voice_sessions_active")
    metrics.session_opened()
    assert sample("mm_voice_sessions_active") == active + 1
    metrics.session_closed()
    assert sample("mm_voice_sessions_active") == active
    ttfa, transcript = (
        sample("mm_time_to_first_audio_seconds_count", source="voice"),
        sample("mm_transcript_latency_seconds_count"),
    )
    metrics.observe_ttfa(0.8)
    metrics.observe_transcript_latency(0.3)
    assert sample("mm_time_to_first_audio_seconds_count", source="voice") == ttfa + 1
    assert sample("mm_transcript_latency_seconds_count") == transcript + 1


async def test_bind_trace_tags_the_task_and_its_children():
    import asyncio

    from magicmirror.logging import bind_trace, current_trace_id

    async def turn():
        turn_id = bind_trace()
        child = asyncio.create_task(asyncio.sleep(0, result=None))
        await child
        return turn_id, current_trace_id(), await asyncio.create_task(_current())

    async def _current():
        return current_trace_id()

    turn_id, seen, in_child = await asyncio.create_task(turn())
    assert turn_id and seen == turn_id and in_child == turn_id
    assert current_trace_id() is None  # the caller's context is untouched
