"""Abuse limits of the voice WebSocket, through the real ASGI application: one per-user budget of
chat turns shared with POST /api/chat (RATELIMIT_CHAT), a cap on a user's open sockets
(VOICE_WS_MAX_SOCKETS_PER_USER), and the recognition phrases' caps. On the services backend the
counters are in Redis, and the last test runs two daphne processes on it and kills one."""

import asyncio
import json
import signal
import threading
import time
import types

import pytest
import websockets
from asgiref.sync import sync_to_async

from chat.models import Message
from live import sockets
from voice.asr.base import MAX_PHRASE_CHARS, MAX_PHRASES

from .test_consumer import connect, events_until, fixture_pcm, stream_audio

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def application():
    from magicmirror.asgi import application

    return application


@pytest.fixture
def frozen_rate_window(monkeypatch):
    """django-ratelimit's windows are fixed and aligned to the clock: freeze the clock it reads, so
    that the end of a minute cannot reset a count in the middle of a test."""
    import django_ratelimit.core

    monkeypatch.setattr(django_ratelimit.core, "time", types.SimpleNamespace(time=lambda: 1_800_000_000.0))


@pytest.fixture
def budget_of_two(settings, frozen_rate_window):
    settings.RATELIMIT_CHAT = "2/m"


def llm_turns(fake_llm) -> int:
    """Chat replies asked of the LLM (streamed requests; the conversation's title is not one)."""
    return sum(1 for body in fake_llm.requests if body.get("stream"))


async def open_session(application, client, user):
    await client.aforce_login(user)
    ws, connected = await connect(application, client)
    assert connected
    assert await ws.receive_json_from(10) == {"type": "hello", "protocol": 1}
    await ws.send_json_to({"type": "start", "protocol": 1, "voice_output": False})
    assert (await ws.receive_json_from(10))["type"] == "ready"
    return ws


async def typed_turn(ws, text="hi"):
    """Send a typed message: the `reply_done` event once the turn is over (its title too, back to
    idle), or the `error` event that refused it."""
    await ws.send_json_to({"type": "text", "text": text})
    done = None
    while True:
        event = await ws.receive_json_from(30)
        if event["type"] == "error" and done is None:
            return event
        if event["type"] == "reply_done":
            done = event
        elif done is not None and event == {"type": "state", "state": "idle"}:
            return done


async def http_turn(client, text="hi"):
    response = await client.post("/api/chat", {"message": text}, content_type="application/json")
    if response.status_code == 200:
        async for _ in response.streaming_content:  # the whole reply
            pass
    return response


@pytest.fixture
async def session(application, async_client, user):
    ws = await open_session(application, async_client, user)
    yield ws
    await ws.disconnect()


# -- the turn budget ------------------------------------------------------------------------------
async def test_typed_messages_over_the_budget_are_refused_without_an_llm_call(session, user, fake_llm, budget_of_two):
    outcomes = [await typed_turn(session, f"message {i}") for i in range(5)]
    assert [e["type"] for e in outcomes] == ["reply_done", "reply_done", "error", "error", "error"]
    assert {e["code"] for e in outcomes[2:]} == {"rate_limited"}
    assert all(e["message"] and "turn_id" not in e for e in outcomes[2:])
    assert llm_turns(fake_llm) == 2
    assert await Message.objects.filter(role="user").acount() == 2
    # The session goes on.
    await session.send_json_to({"type": "ping", "id": 1})
    assert await session.receive_json_from(10) == {"type": "pong", "id": 1}


async def test_http_and_the_websocket_share_the_budget(session, async_client, user, fake_llm, budget_of_two):
    assert (await typed_turn(session))["type"] == "reply_done"
    assert (await http_turn(async_client)).status_code == 200
    refused = await typed_turn(session)
    assert (refused["type"], refused["code"]) == ("error", "rate_limited")
    response = await http_turn(async_client)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "rate_limited" and response.json()["error"]["message"]
    assert llm_turns(fake_llm) == 2


async def test_two_sockets_of_one_user_share_the_budget(application, async_client, user, fake_llm, budget_of_two):
    first = await open_session(application, async_client, user)
    second = await open_session(application, async_client, user)
    try:
        assert (await typed_turn(first))["type"] == "reply_done"
        assert (await typed_turn(second))["type"] == "reply_done"
        assert (await typed_turn(first))["code"] == "rate_limited"
        assert (await typed_turn(second))["code"] == "rate_limited"
        assert llm_turns(fake_llm) == 2
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_another_users_budget_is_their_own(application, async_client, user, other_user, fake_llm, budget_of_two):
    from django.test import AsyncClient

    mine = await open_session(application, async_client, user)
    theirs = await open_session(application, AsyncClient(), other_user)
    try:
        for _ in range(2):
            assert (await typed_turn(mine))["type"] == "reply_done"
        assert (await typed_turn(mine))["code"] == "rate_limited"
        assert (await typed_turn(theirs))["type"] == "reply_done"
    finally:
        await mine.disconnect()
        await theirs.disconnect()


async def test_a_spoken_utterance_over_the_budget_is_refused(
    request, session, user, fake_llm, settings, frozen_rate_window
):
    if not settings.VOICE_JOBS_IN_PROCESS:
        request.getfixturevalue("celery_worker_process")  # recognition runs on a real worker
    settings.RATELIMIT_CHAT = "1/m"
    settings.VOICE_MAX_AUDIO_RATE = 1000.0  # the test streams faster than real time
    assert (await typed_turn(session))["type"] == "reply_done"
    phrases = ["안녕하세요", "오늘", "좋네요"]
    # A new start: the limits (the audio rate) are read when a session starts.
    start = {"type": "start", "protocol": 1, "mode": "ptt", "voice_output": False, "phrases": phrases}
    await session.send_json_to(start)
    assert (await session.receive_json_from(10))["type"] == "ready"
    await stream_audio(session, fixture_pcm("hello.wav"))
    await session.send_json_to({"type": "audio_end"})
    events, _ = await events_until(session, "error", timeout=60)
    assert [e["type"] for e in events].count("final") == 1, events
    final = next(e for e in events if e["type"] == "final")
    assert "안녕하세요" in final["text"] and final["message_id"] is None  # shown, not saved
    error = events[-1]
    assert (error["code"], error["utterance_id"]) == ("rate_limited", final["utterance_id"])
    after, _ = await events_until(session, "state", timeout=10)
    assert after[-1]["state"] == "idle"
    assert llm_turns(fake_llm) == 1
    assert await Message.objects.filter(role="user").acount() == 1


# -- the cap on open sockets ------------------------------------------------------------------------
async def hello_or_refusal(application, client):
    """Open a socket: ("hello", socket) or ("refused", (error event, close code))."""
    ws, connected = await connect(application, client)
    assert connected
    event = await ws.receive_json_from(10)
    if event["type"] == "hello":
        return "hello", ws
    close = await ws.receive_output(10)
    assert close["type"] == "websocket.close"
    return "refused", (event, close["code"])


async def test_a_socket_over_the_cap_is_refused_with_4429(application, async_client, user, settings):
    settings.VOICE_WS_MAX_SOCKETS_PER_USER = 2
    await async_client.aforce_login(user)
    open_ = [await hello_or_refusal(application, async_client) for _ in range(2)]
    assert [kind for kind, _ in open_] == ["hello", "hello"]
    kind, (event, code) = await hello_or_refusal(application, async_client)
    assert kind == "refused" and code == 4429
    assert event["type"] == "error" and event["code"] == "too_many_sessions" and "2" in event["message"]
    # A closed socket frees its slot at once.
    await open_[0][1].disconnect()
    kind, again = await hello_or_refusal(application, async_client)
    assert kind == "hello"
    await again.disconnect()
    await open_[1][1].disconnect()


async def test_the_cap_is_per_user(application, async_client, user, other_user, settings):
    from django.test import AsyncClient

    settings.VOICE_WS_MAX_SOCKETS_PER_USER = 1
    await async_client.aforce_login(user)
    kind, mine = await hello_or_refusal(application, async_client)
    assert kind == "hello"
    other_client = AsyncClient()
    await other_client.aforce_login(other_user)
    kind, theirs = await hello_or_refusal(application, other_client)
    assert kind == "hello"
    await mine.disconnect()
    await theirs.disconnect()


async def test_a_dead_processs_sockets_come_free_after_the_ttl(application, async_client, user, settings):
    """Slots taken by sockets of a process that died (never renewed, never freed) lapse on their own."""
    settings.VOICE_WS_MAX_SOCKETS_PER_USER = 2
    settings.VOICE_WS_SOCKET_TTL_SECONDS = 1
    for _ in range(2):  # what the dead process left behind
        assert await sync_to_async(sockets.socket_slot_take)(user=user) is not None
    await async_client.aforce_login(user)
    kind, _ = await hello_or_refusal(application, async_client)
    assert kind == "refused"

    async def accepted():
        while True:
            kind, ws = await hello_or_refusal(application, async_client)
            if kind == "hello":
                return ws
            await asyncio.sleep(0.1)  # poll the condition; the deadline below bounds the wait

    ws = await asyncio.wait_for(accepted(), timeout=10)
    await ws.disconnect()


async def test_an_open_socket_keeps_its_slot_beyond_the_ttl(application, async_client, user, settings, monkeypatch):
    settings.VOICE_WS_MAX_SOCKETS_PER_USER = 1
    settings.VOICE_WS_SOCKET_TTL_SECONDS = 1
    renewed, enough = [], threading.Event()
    renew = sockets.SocketSlot.renew

    def counting_renew(slot):
        result = renew(slot)
        renewed.append(result)
        if len(renewed) >= 4:  # 4 renewals a third of a TTL apart: the slot has outlived its first TTL
            enough.set()
        return result

    monkeypatch.setattr(sockets.SocketSlot, "renew", counting_renew)
    await async_client.aforce_login(user)
    kind, ws = await hello_or_refusal(application, async_client)
    assert kind == "hello"
    assert await asyncio.to_thread(enough.wait, 10)
    kind, refusal = await hello_or_refusal(application, async_client)
    assert kind == "refused" and refusal[1] == 4429
    assert all(renewed)
    await ws.disconnect()


async def test_no_cap_when_the_setting_is_zero(application, async_client, user, settings):
    settings.VOICE_WS_MAX_SOCKETS_PER_USER = 0
    await async_client.aforce_login(user)
    opened = [await hello_or_refusal(application, async_client) for _ in range(6)]
    assert [kind for kind, _ in opened] == ["hello"] * 6
    for _, ws in opened:
        await ws.disconnect()


# -- recognition phrases ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("phrases", "detail"),
    [
        ([f"말{i}" for i in range(MAX_PHRASES + 1)], f"phrases must hold at most {MAX_PHRASES} phrases."),
        (["말" * (MAX_PHRASE_CHARS + 1)], f"phrases must each be at most {MAX_PHRASE_CHARS} characters long."),
    ],
    ids=["too-many", "too-long"],
)
@pytest.mark.parametrize("kind", ["start", "configure"])
async def test_phrases_over_the_caps_are_refused(application, async_client, user, phrases, detail, kind):
    ws = await open_session(application, async_client, user)
    try:
        await ws.send_json_to({"type": kind, "phrases": phrases, **({"protocol": 1} if kind == "start" else {})})
        event = await ws.receive_json_from(10)
        assert (event["type"], event["code"], event["message"]) == ("error", "invalid_config", detail)
        at_the_caps = [f"{i:03d}" + "말" * (MAX_PHRASE_CHARS - 3) for i in range(MAX_PHRASES)]
        await ws.send_json_to({"type": "configure", "phrases": at_the_caps})
        assert (await ws.receive_json_from(10))["type"] == "ready"
    finally:
        await ws.disconnect()


# -- across processes (services backend: Redis) -----------------------------------------------------
async def daphne_socket(port, cookie):
    """A socket to a daphne process: ("hello", socket) or ("refused", (error event, close code))."""
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/ws/voice/", origin=f"http://127.0.0.1:{port}", additional_headers={"Cookie": cookie}
    )
    event = json.loads(await asyncio.wait_for(ws.recv(), 10))
    if event["type"] == "hello":
        return "hello", ws
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    return "refused", (event, ws.close_code)


async def daphne_turn(ws):
    await ws.send(json.dumps({"type": "text", "text": "hi"}))
    async with asyncio.timeout(30):
        while True:
            event = json.loads(await ws.recv())
            if event["type"] in ("reply_done", "error"):
                return event


@pytest.mark.services_only
async def test_two_daphne_processes_share_the_limits_and_a_killed_ones_slots_lapse(fake_llm, fake_llm_server, user):
    from devtools.localprocs import child_env, start_daphne
    from devtools.localprocs import stop_process as stop

    from .test_e2e import session_cookie

    env = child_env(
        **fake_llm_server.settings(),
        RATELIMIT_CHAT="1/d",  # a day's window: its end cannot fall inside the test (their clocks are real)
        VOICE_WS_MAX_SOCKETS_PER_USER="2",
        VOICE_WS_SOCKET_TTL_SECONDS="3",
    )
    (port_a, process_a), (port_b, process_b) = await asyncio.gather(
        asyncio.to_thread(start_daphne, env), asyncio.to_thread(start_daphne, env)
    )
    opened = []
    try:
        cookie = await sync_to_async(session_cookie)(user)
        kind_a, on_a = await daphne_socket(port_a, cookie)
        kind_b, on_b = await daphne_socket(port_b, cookie)
        assert (kind_a, kind_b) == ("hello", "hello")
        opened += [on_a, on_b]
        kind, (event, code) = await daphne_socket(port_b, cookie)  # a third socket, on either process
        assert (kind, event["code"], code) == ("refused", "too_many_sessions", 4429)

        for ws in (on_a, on_b):
            await ws.send(json.dumps({"type": "start", "protocol": 1, "voice_output": False}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "ready"
        assert (await daphne_turn(on_a))["type"] == "reply_done"
        refused = await daphne_turn(on_b)  # the other process knows the budget is spent
        assert (refused["type"], refused["code"]) == ("error", "rate_limited")
        assert llm_turns(fake_llm) == 1

        process_a.send_signal(signal.SIGKILL)  # a crash: its socket's slot is neither freed nor renewed
        await asyncio.to_thread(process_a.wait, 10)
        killed_at = time.monotonic()

        async def accepted():
            while True:
                kind, ws = await daphne_socket(port_b, cookie)
                if kind == "hello":
                    return ws
                await asyncio.sleep(0.2)  # poll the condition; the deadline below bounds the wait

        opened.append(await asyncio.wait_for(accepted(), timeout=20))
        assert time.monotonic() - killed_at <= 3 + 5  # about the TTL (plus polling, on a busy machine)
    finally:
        for ws in opened:
            await ws.close()
        stop(process_b)
        if process_a.poll() is None:
            stop(process_a)
