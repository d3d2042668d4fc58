"""MCP servers' tools in real turns, against a small real MCP server of the tests' own.

The server (tools/tests/mcp_server.py) is built with the official SDK and started for real: as a
command the client starts over stdio, or as a streamable-HTTP server on 127.0.0.1 that the test
starts as a subprocess. The LLM is the fake OpenAI-compatible server (devtools.fake_llm): it calls
`mcp_<server>_<tool>`, and the continuation request shows what the LLM was told.
"""

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import AsyncClient

from chat.tests.test_chat_stream import chat, sse_events
from devtools.fake_llm import Reply, ToolCalls
from tools import mcp
from tools.models import McpServer

from .mcp_server import HttpServer

pytestmark = pytest.mark.django_db(transaction=True)

SERVER_MODULE = [sys.executable, "-m", "tools.tests.mcp_server"]
TOKEN = "mcp-test-token"
ALL_TOOLS = ["add", "echo", "environment", "secret", "block"]


@pytest.fixture(autouse=True)
def fresh_tool_lists():
    mcp.cache_clear()
    yield
    mcp.cache_clear()


@pytest.fixture(scope="module")
def http_server():
    """One HTTP server for the tests that do not kill it."""
    server = HttpServer(TOKEN)
    yield server
    server.stop()


@pytest.fixture
def own_http_server():
    """A server this test may kill."""
    server = HttpServer(TOKEN)
    yield server
    server.stop()


def http_row(name, url, *, token=TOKEN, **fields) -> dict:
    return {
        "name": name,
        "transport": McpServer.Transport.HTTP,
        "url": url,
        "headers": {"Authorization": f"Bearer {token}"},
        "allowed_tools": ALL_TOOLS,
        **fields,
    }


@pytest.fixture
def slow_start(settings):
    """Time for a stdio server to start: importing the SDK alone takes seconds on a busy test machine."""
    settings.MCP_LIST_TIMEOUT_S = 60
    settings.MCP_CALL_TIMEOUT_S = 60


def stdio_row(name, **fields) -> dict:
    return {
        "name": name,
        "transport": McpServer.Transport.STDIO,
        "command": SERVER_MODULE[0],
        "args": [*SERVER_MODULE[1:], "stdio"],
        # The child gets a minimal environment plus the row's: this one finds the test module.
        "env": {"PYTHONPATH": str(django_settings.BASE_DIR)},
        "allowed_tools": ALL_TOOLS,
        **fields,
    }


async def add_server(**fields) -> McpServer:
    return await McpServer.objects.acreate(**fields)


@pytest.fixture
def staff(make_user):
    return make_user("root", is_staff=True)


async def logged_in(user) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


def of(events, kind):
    return [e for e in events if e["type"] == kind]


def offered(request) -> set[str]:
    return {t["function"]["name"] for t in request.get("tools", [])}


def told(request) -> list[dict]:
    """What the continuation request brought back: the `tool` messages' contents."""
    return [json.loads(m["content"]) for m in request["messages"] if m["role"] == "tool"]


class Fifo:
    """A named pipe the `block` tool writes `blocking PID` to once the call has arrived: the test
    waits for that line (an event, not a sleep), then kills the server."""

    def __init__(self, directory):
        self.path = str(directory / "blocking.fifo")
        os.mkfifo(self.path)
        # Non-blocking, so opening does not wait for the writer; the tool's open() then succeeds at once.
        self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    async def line(self) -> str:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(self.fd, readable.set)
        data = b""
        try:
            while not data.endswith(b"\n"):
                await readable.wait()
                readable.clear()
                with contextlib.suppress(BlockingIOError):
                    data += os.read(self.fd, 100)
        finally:
            loop.remove_reader(self.fd)
        return data.decode().strip()

    def close(self):
        os.close(self.fd)


@pytest.fixture
def fifo(tmp_path):
    pipe = Fifo(tmp_path)
    yield pipe
    pipe.close()


# -- (a) a tool listed and called in a real turn -------------------------------------------------------
async def test_a_stdio_servers_tool_in_a_turn(staff, fake_llm, slow_start, monkeypatch):
    monkeypatch.setenv("MM_SITE_SECRET", "not for MCP servers")  # as the site's own settings are
    row = stdio_row("local")
    await add_server(**{**row, "env": {**row["env"], "GREETING": "你好"}})
    names = ["GREETING", "MM_SITE_SECRET"]
    calls = [("mcp_local_add", {"a": 2, "b": 3}), ("mcp_local_environment", {"names": names})]
    fake_llm.queue(ToolCalls(calls, text="我算一下。"), Reply("等于五。"))
    events = await sse_events(await chat(await logged_in(staff), "二加三等于几？"))

    first, second = fake_llm.requests[0], fake_llm.requests[1]
    offered_tools = {t["function"]["name"]: t["function"] for t in first["tools"]}
    assert {f"mcp_local_{tool}" for tool in ALL_TOOLS} <= set(offered_tools)
    assert "current_time" in offered_tools  # with the built-ins
    add = offered_tools["mcp_local_add"]
    assert add["description"] == "Add two integers."
    assert add["parameters"]["required"] == ["a", "b"]
    assert add["parameters"]["properties"]["a"]["type"] == "integer"

    result = of(events, "tool_result")[0]
    assert (result["name"], result["outcome"], json.loads(result["result"])) == ("mcp_local_add", "ok", {"result": 5})
    # The command got the row's environment, not the site's.
    assert told(second) == [{"result": 5}, {"GREETING": "你好", "MM_SITE_SECRET": None}]
    assert of(events, "done")[0]["message"]["content"] == "我算一下。等于五。"


async def test_an_http_servers_tool_in_a_turn(staff, fake_llm, http_server):
    await add_server(**http_row("remote", http_server.url))
    fake_llm.queue(ToolCalls([("mcp_remote_add", {"a": 40, "b": 2})]), Reply("42."))
    events = await sse_events(await chat(await logged_in(staff), "40 + 2?"))
    assert "mcp_remote_add" in offered(fake_llm.requests[0])
    assert of(events, "tool_result")[0]["outcome"] == "ok"
    assert told(fake_llm.requests[1]) == [{"result": 42}]
    assert of(events, "done")[0]["message"]["content"] == "42."


async def test_arguments_are_checked_against_the_servers_schema(staff, fake_llm, http_server):
    await add_server(**http_row("remote", http_server.url))
    fake_llm.queue(ToolCalls([("mcp_remote_add", {"a": "two", "b": 2})]), Reply("Hm."))
    events = await sse_events(await chat(await logged_in(staff), "two plus two"))
    result = of(events, "tool_result")[0]
    assert result["outcome"] == "invalid"  # refused before the server is asked
    assert "'two' is not of type 'integer'" in told(fake_llm.requests[1])[0]["error"]


# -- (b) the allowlist ----------------------------------------------------------------------------------
async def test_only_allowed_tools_are_offered(staff, fake_llm, http_server):
    await add_server(**http_row("remote", http_server.url, allowed_tools=["add", "nosuchtool"]))
    fake_llm.queue(ToolCalls([("mcp_remote_secret", {})]), Reply("I cannot."))
    events = await sse_events(await chat(await logged_in(staff), "tell me the secret"))
    mine = {name for name in offered(fake_llm.requests[0]) if name.startswith("mcp_")}
    assert mine == {"mcp_remote_add"}  # an allowed name the server lacks is no tool either
    result = of(events, "tool_result")[0]
    assert result["outcome"] == "unknown_tool"  # called anyway: never reaches the server
    assert "the secret" not in result["result"]


async def test_an_empty_allowlist_offers_nothing(staff, fake_llm, http_server):
    await add_server(**http_row("remote", http_server.url, allowed_tools=[]))
    fake_llm.queue(Reply("Hello."))
    await sse_events(await chat(await logged_in(staff), "hi"))
    assert not {name for name in offered(fake_llm.requests[0]) if name.startswith("mcp_")}


# -- (c) who gets which servers -------------------------------------------------------------------------
async def test_staff_get_every_enabled_server_regular_users_those_marked(staff, user, fake_llm, http_server):
    await add_server(**http_row("staffonly", http_server.url, allowed_tools=["add"]))
    await add_server(**http_row("everyone", http_server.url, allowed_tools=["add"], available_to_regular_users=True))
    await add_server(
        **http_row("off", http_server.url, allowed_tools=["add"], available_to_regular_users=True, enabled=False)
    )
    fake_llm.queue(Reply("Hi."))
    await sse_events(await chat(await logged_in(staff), "hi"))
    as_staff, asked = fake_llm.requests[0], len(fake_llm.requests)  # then the title's request
    fake_llm.queue(Reply("Hi."))
    await sse_events(await chat(await logged_in(user), "hi"))
    as_user = fake_llm.requests[asked]
    assert {n for n in offered(as_staff) if n.startswith("mcp_")} == {"mcp_everyone_add", "mcp_staffonly_add"}
    assert {n for n in offered(as_user) if n.startswith("mcp_")} == {"mcp_everyone_add"}


async def test_a_regular_user_cannot_call_a_staff_servers_tool(user, fake_llm, http_server):
    await add_server(**http_row("staffonly", http_server.url))
    fake_llm.queue(ToolCalls([("mcp_staffonly_echo", {"text": "x"})]), Reply("No."))
    events = await sse_events(await chat(await logged_in(user), "echo x"))
    assert of(events, "tool_result")[0]["outcome"] == "unknown_tool"
    assert not {n for n in offered(fake_llm.requests[0]) if n.startswith("mcp_")}


# -- (d) the server killed mid-call -----------------------------------------------------------------------
async def run_turn_killing_the_server(client, fifo, kill):
    """A turn whose tool call blocks in the server until the test, told by the tool, kills it."""

    async def kill_when_blocking():
        word, pid = (await fifo.line()).split()
        assert word == "blocking"
        kill(int(pid))

    killer = asyncio.create_task(kill_when_blocking())
    try:
        events = await sse_events(await chat(client, "block"))
    finally:
        killer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await killer
    assert killer.done() and not killer.cancelled(), "the tool never told the test it was blocking"
    return events


async def test_a_stdio_server_killed_mid_call(staff, fake_llm, fifo, slow_start):
    # 60 s to answer (slow_start): the error comes from the dead process, not the time limit.
    await add_server(**stdio_row("local"))
    fake_llm.queue(ToolCalls([("mcp_local_block", {"signal": fifo.path})]), Reply("The tool is unavailable."))

    events = await run_turn_killing_the_server(await logged_in(staff), fifo, lambda pid: os.kill(pid, signal.SIGKILL))
    result = of(events, "tool_result")[0]
    assert result["outcome"] == "error"
    assert told(fake_llm.requests[1]) == [{"error": "The MCP server local is unavailable."}]
    assert of(events, "done")[0]["message"]["content"] == "The tool is unavailable."


async def test_an_http_server_killed_mid_call(staff, fake_llm, fifo, settings, own_http_server):
    settings.MCP_CALL_TIMEOUT_S = 60
    await add_server(**http_row("remote", own_http_server.url))
    fake_llm.queue(ToolCalls([("mcp_remote_block", {"signal": fifo.path})]), Reply("It went away."))

    def kill(pid):
        assert pid == own_http_server.process.pid
        own_http_server.process.kill()

    events = await run_turn_killing_the_server(await logged_in(staff), fifo, kill)
    assert of(events, "tool_result")[0]["outcome"] == "error"
    assert told(fake_llm.requests[1]) == [{"error": "The MCP server remote is unavailable."}]
    assert of(events, "done")[0]["message"]["content"] == "It went away."


async def test_a_call_that_never_answers_is_cut_at_the_time_limit(staff, fake_llm, settings, http_server, tmp_path):
    settings.MCP_CALL_TIMEOUT_S = 0.5
    await add_server(**http_row("remote", http_server.url))
    signal_file = tmp_path / "blocking.txt"  # a plain file: the tool writes it and waits forever
    fake_llm.queue(ToolCalls([("mcp_remote_block", {"signal": str(signal_file)})]), Reply("Too slow."))
    events = await sse_events(await chat(await logged_in(staff), "block"))
    assert signal_file.read_text().startswith("blocking ")  # the call did reach the server
    assert of(events, "tool_result")[0]["outcome"] == "error"
    assert told(fake_llm.requests[1]) == [{"error": "The MCP server remote did not answer within 0.5 s."}]
    assert of(events, "done")[0]["message"]["content"] == "Too slow."


# -- (e) a server that is down ------------------------------------------------------------------------------
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_servers_that_are_down_offer_nothing_and_the_turn_completes(staff, fake_llm, tmp_path, slow_start):
    started = tmp_path / "started.txt"
    await add_server(**http_row("refused", f"http://127.0.0.1:{closed_port()}/mcp"))
    await add_server(**stdio_row("missing", command=str(tmp_path / "no-such-program"), args=[]))
    # A command that starts (and says so) but exits at once, speaking no MCP.
    exits = f"open({str(started)!r}, 'a').write('started\\n')"
    await add_server(**stdio_row("exits", args=["-c", exits]))
    fake_llm.queue(Reply("Hello."))
    client = await logged_in(staff)
    events = await sse_events(await chat(client, "hi"))
    assert of(events, "done")[0]["message"]["content"] == "Hello."
    assert "current_time" in offered(fake_llm.requests[0])
    assert not {n for n in offered(fake_llm.requests[0]) if n.startswith("mcp_")}
    assert started.read_text() == "started\n"

    # Remembered as down: the next turn does not start the command again.
    fake_llm.queue(Reply("Hello again."))
    events = await sse_events(await chat(client, "hi", events[0]["conversation"]["id"]))
    assert of(events, "done")[0]["message"]["content"] == "Hello again."
    assert started.read_text() == "started\n"


@pytest.fixture
def silent_server():
    """A port that accepts connections and never answers a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    accepted: list[socket.socket] = []
    connected = threading.Event()

    def accept():
        with contextlib.suppress(OSError):  # the socket closed at teardown
            while True:
                accepted.append(sock.accept()[0])
                connected.set()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp", connected
    sock.close()
    for conn in accepted:
        conn.close()


async def test_a_server_that_never_answers_costs_the_list_time_limit(staff, fake_llm, settings, silent_server):
    settings.MCP_LIST_TIMEOUT_S = 0.5
    url, connected = silent_server
    await add_server(**http_row("silent", url))
    fake_llm.queue(Reply("Hello."))
    # Without the limit the turn would wait for the server for ever; the guard only turns that into a failure.
    async with asyncio.timeout(60):
        events = await sse_events(await chat(await logged_in(staff), "hi"))
    assert connected.is_set()  # it was asked
    assert of(events, "done")[0]["message"]["content"] == "Hello."
    assert not {n for n in offered(fake_llm.requests[0]) if n.startswith("mcp_")}


async def test_a_listed_server_that_went_down_answers_with_an_error(staff, fake_llm, own_http_server):
    await add_server(**http_row("remote", own_http_server.url))
    fake_llm.queue(Reply("Hi."))
    client = await logged_in(staff)
    events = await sse_events(await chat(client, "hi"))
    own_http_server.stop()
    # Its tool list is kept (MCP_TOOLS_CACHE_S): offered again without asking it; the call finds it down.
    asked = len(fake_llm.requests)
    fake_llm.queue(ToolCalls([("mcp_remote_add", {"a": 1, "b": 1})]), Reply("It is down."))
    events = await sse_events(await chat(client, "1 + 1?", events[0]["conversation"]["id"]))
    assert "mcp_remote_add" in offered(fake_llm.requests[asked])
    assert told(fake_llm.requests[asked + 1]) == [{"error": "The MCP server remote is unavailable."}]
    assert of(events, "done")[0]["message"]["content"] == "It is down."


async def test_a_changed_row_is_listed_afresh(staff, fake_llm, http_server):
    row = await add_server(**http_row("remote", http_server.url, allowed_tools=["add"]))
    fake_llm.queue(Reply("Hi."))
    client = await logged_in(staff)
    await sse_events(await chat(client, "hi"))
    row.allowed_tools = ["echo"]
    await row.asave()
    asked = len(fake_llm.requests)
    fake_llm.queue(Reply("Hi."))
    await sse_events(await chat(client, "hi"))
    assert {n for n in offered(fake_llm.requests[0]) if n.startswith("mcp_")} == {"mcp_remote_add"}
    assert {n for n in offered(fake_llm.requests[asked]) if n.startswith("mcp_")} == {"mcp_remote_echo"}


def test_turns_in_different_event_loops_list_servers_alike(http_server, settings):
    # An asyncio.Lock belongs to the loop it first waited in: each loop gets its own per server.
    settings.MCP_TOOLS_CACHE_S = 0  # every turn lists afresh, so the two turns of a loop wait for each other
    config = mcp.ServerConfig.of(McpServer.objects.create(**http_row("remote", http_server.url)))

    async def two_turns_at_once():
        return await asyncio.gather(mcp.cached_tools(config), mcp.cached_tools(config))

    for _ in range(2):  # as daphne's loop and a command's own
        lists = asyncio.run(two_turns_at_once())
        assert [[tool.name for tool in tools] for tools in lists] == [ALL_TOOLS, ALL_TOOLS]


# -- (f) the row's HTTP headers reach the server ------------------------------------------------------------
async def test_the_rows_headers_reach_the_server(staff, fake_llm, http_server):
    await add_server(**http_row("remote", http_server.url))
    await add_server(**http_row("wrongtoken", http_server.url, token="not-the-token"))
    fake_llm.queue(ToolCalls([("mcp_remote_echo", {"text": "你好"})]), Reply("你好。"))
    events = await sse_events(await chat(await logged_in(staff), "echo"))
    mine = {n for n in offered(fake_llm.requests[0]) if n.startswith("mcp_")}
    assert mine == {f"mcp_remote_{tool}" for tool in ALL_TOOLS}  # the server refused the other token (401)
    assert of(events, "tool_result")[0]["outcome"] == "ok"
    (result,) = told(fake_llm.requests[1])
    assert json.loads(result["text"]) == {"text": "你好", "authorization": f"Bearer {TOKEN}"}


# -- (g) the admin --------------------------------------------------------------------------------------------
ADD_URL = "/admin/tools/mcpserver/add/"


def add_form(**fields) -> dict:
    form = {
        "name": "weather",
        "enabled": "on",
        "allowed_tools": '["forecast"]',
        "transport": "http",
        "command": "",
        "args": "[]",
        "env": "{}",
        "url": "https://mcp.example.com/mcp",
        "headers": '{"Authorization": "Bearer abc"}',
    }
    form.update(fields)
    return {k: v for k, v in form.items() if v is not None}


async def test_regular_users_cannot_reach_the_admin(user, make_user):
    client = await logged_in(user)
    for url in ("/admin/tools/mcpserver/", ADD_URL):
        response = await client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    response = await client.post(ADD_URL, add_form())
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    # Staff without the permission to add servers are refused too.
    clerk = await logged_in(await make_user_async(make_user, "clerk", is_staff=True))
    assert (await clerk.get(ADD_URL)).status_code == 403
    assert (await clerk.post(ADD_URL, add_form())).status_code == 403
    assert not await McpServer.objects.aexists()


async def make_user_async(make_user, username, **extra):
    from asgiref.sync import sync_to_async

    return await sync_to_async(make_user)(username, **extra)


async def test_staff_add_a_server_in_the_admin(make_user):
    admin = await logged_in(await make_user_async(make_user, "admin", is_staff=True, is_superuser=True))
    assert (await admin.get(ADD_URL)).status_code == 200
    response = await admin.post(ADD_URL, add_form())
    assert response.status_code == 302, response.content.decode()[:2000]
    row = await McpServer.objects.aget(name="weather")
    assert (row.transport, row.url, row.headers, row.allowed_tools) == (
        "http",
        "https://mcp.example.com/mcp",
        {"Authorization": "Bearer abc"},
        ["forecast"],
    )
    assert row.enabled and not row.available_to_regular_users

    response = await admin.post(
        ADD_URL,
        add_form(
            name="files",
            transport="stdio",
            url="",
            headers="{}",
            command="/usr/bin/mcp-files",
            args='["--root", "/srv"]',
            env='{"LANG": "C.UTF-8"}',
            available_to_regular_users="on",
        ),
    )
    assert response.status_code == 302
    row = await McpServer.objects.aget(name="files")
    assert (row.command, row.args, row.env, row.available_to_regular_users) == (
        "/usr/bin/mcp-files",
        ["--root", "/srv"],
        {"LANG": "C.UTF-8"},
        True,
    )


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"args": '"--root"'}, "args"),
        ({"args": "[1, 2]"}, "args"),
        ({"env": '["LANG"]'}, "env"),
        ({"headers": '{"X-Retries": 3}'}, "headers"),
        ({"headers": "{not json"}, "headers"),
        ({"allowed_tools": '"forecast"'}, "allowed_tools"),
        ({"url": ""}, "url"),
        ({"transport": "stdio", "command": ""}, "command"),
        ({"name": "my-server"}, "name"),
    ],
)
async def test_the_admin_form_checks_its_fields(make_user, fields, field):
    admin = await logged_in(await make_user_async(make_user, "admin", is_staff=True, is_superuser=True))
    response = await admin.post(ADD_URL, add_form(**fields))
    assert response.status_code == 200  # the form again, with its errors
    assert field in response.context["adminform"].form.errors
    assert not await McpServer.objects.aexists()


# -- the admin in the staff member's language ----------------------------------------------------------------
def test_the_catalogue_translates_every_string_of_tools(tmp_path):
    root = Path(django_settings.BASE_DIR)
    sources = [
        str(p.relative_to(root))
        for p in sorted((root / "tools").rglob("*.py"))
        if "tests" not in p.parts and "migrations" not in p.parts
    ]
    pot = tmp_path / "tools.pot"
    keywords = ["--keyword=gettext_lazy", "--keyword=gettext", "--keyword=ngettext:1,2", "--keyword=_"]
    command = ["xgettext", "-L", "Python", "--from-code=UTF-8", "-o", str(pot), *keywords, *sources]
    subprocess.run(command, cwd=root, check=True, capture_output=True)
    po = root / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
    # msgcmp fails for every msgid of the sources that the catalogue lacks or leaves untranslated/fuzzy.
    result = subprocess.run(["msgcmp", str(po), str(pot)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


async def test_the_admin_reads_in_chinese(make_user):
    staff_member = await make_user_async(make_user, "admin", is_staff=True, is_superuser=True)
    client = AsyncClient(HTTP_ACCEPT_LANGUAGE="zh-CN")
    await client.aforce_login(staff_member)
    html = (await client.get(ADD_URL)).content.decode()
    for label in ("MCP 服务器", "传输方式", "允许的工具", "普通用户可用", "请求头", "命令（stdio）"):
        assert label in html, label
    response = await client.post(ADD_URL, add_form(args="[1]"))
    assert "须为由字符串组成的 JSON 列表。" in response.content.decode()
