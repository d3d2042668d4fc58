"""MCP servers' tools for the LLM, through the official `mcp` SDK as the client.

A provider lists each enabled server's allowed tools (staff get every enabled server, regular users
only those marked for them) as `mcp_<server>_<tool>`. A server's tool list is kept for
MCP_TOOLS_CACHE_S, so a turn does not start a process or make a request to list it; a server that
is down is remembered as having no tools for as long, so it costs at most MCP_LIST_TIMEOUT_S once
per period, not every turn. Each call opens its own session (stdio: starts the command; HTTP: a
new streamable-HTTP session), bounded by MCP_CALL_TIMEOUT_S: one session per call keeps a call's
failure (a killed process, a dropped connection) from touching any other turn, at the price of the
connection set-up (~0.5 s for a Python stdio server, a few ms over HTTP). A server that is down,
slow or fails answers the LLM with an error (tools.registry.ToolError), never a failed turn.
The SDK is imported on first use, in a thread (load_sdk), outside every time limit.
"""

import asyncio
import importlib
import logging
import re
import sys
import time
import weakref
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from magicmirror.dbasync import db_call

from .models import McpServer
from .registry import Tool, ToolContext, ToolError, provider

logger = logging.getLogger(__name__)

NAME_MAX = 64  # OpenAI function names: ^[a-zA-Z0-9_-]{1,64}$
LIST_PAGES_MAX = 20  # pages of a server's tool list read (a server whose cursor never ends cannot hang a turn)


@dataclass(frozen=True)
class ServerConfig:
    """What a session needs, read from the row (sessions run outside the database thread)."""

    pk: int
    name: str
    transport: str
    command: str
    args: tuple
    env: tuple
    url: str
    headers: tuple
    allowed_tools: tuple
    updated_at: float

    @classmethod
    def of(cls, row: McpServer) -> "ServerConfig":
        return cls(
            pk=row.pk,
            name=row.name,
            transport=row.transport,
            command=row.command,
            args=tuple(str(a) for a in row.args or []),
            env=tuple(sorted((str(k), str(v)) for k, v in (row.env or {}).items())),
            url=row.url,
            headers=tuple(sorted((str(k), str(v)) for k, v in (row.headers or {}).items())),
            allowed_tools=tuple(str(t) for t in row.allowed_tools or []),
            updated_at=row.updated_at.timestamp(),
        )


@dataclass(frozen=True)
class RemoteTool:
    name: str
    description: str
    input_schema: dict


def tool_name(server: str, tool: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]", "_", f"mcp_{server}_{tool}")[:NAME_MAX]


SDK_MODULES = ("mcp", "mcp.client.stdio", "mcp.client.streamable_http", "httpx2")


async def load_sdk() -> None:
    """Import the SDK on first use, in a thread: it takes a second or more, which must neither block
    the event loop (every other turn and socket of the process) nor count against a call's time limit."""
    if not all(name in sys.modules for name in SDK_MODULES):
        await asyncio.to_thread(lambda: [importlib.import_module(name) for name in SDK_MODULES])


@asynccontextmanager
async def session(config: ServerConfig, *, timeout: float):
    """A connected `mcp.Client` for the server (the SDK loaded by load_sdk())."""
    import os

    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    async with AsyncExitStack() as stack:
        target: Any  # the SDK's StdioServerParameters, or a streamable-HTTP transport
        if config.transport == McpServer.Transport.STDIO:
            # The child gets a minimal environment plus the server's own (never the site's secrets).
            env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ} | dict(config.env)
            target = StdioServerParameters(command=config.command, args=list(config.args), env=env)
        else:
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            http = await stack.enter_async_context(
                httpx2.AsyncClient(headers=dict(config.headers), timeout=httpx2.Timeout(timeout))
            )
            target = streamable_http_client(config.url, http_client=http)
        yield await stack.enter_async_context(Client(target, read_timeout_seconds=timeout))


async def list_remote_tools(config: ServerConfig, *, timeout: float | None = None) -> list[RemoteTool]:
    """The server's tools (all of them, before the allowlist); raises on failure or after `timeout`."""
    timeout = timeout if timeout is not None else settings.MCP_LIST_TIMEOUT_S
    await load_sdk()
    tools: list[RemoteTool] = []
    async with asyncio.timeout(timeout), session(config, timeout=timeout) as client:
        cursor = None
        for _ in range(LIST_PAGES_MAX):
            result = await client.list_tools(cursor=cursor)
            tools += [RemoteTool(t.name, t.description or "", t.input_schema or {}) for t in result.tools]
            cursor = result.next_cursor
            if not cursor:
                break
    return tools


async def call_remote_tool(config: ServerConfig, tool: str, arguments: dict, *, timeout: float | None = None):
    """Call the tool; its text (or structured) result, or ToolError within `timeout` whatever happens."""
    timeout = timeout if timeout is not None else settings.MCP_CALL_TIMEOUT_S
    await load_sdk()
    try:
        async with asyncio.timeout(timeout), session(config, timeout=timeout) as client:
            result = await client.call_tool(tool, arguments)
    except TimeoutError:
        raise ToolError(f"The MCP server {config.name} did not answer within {timeout:g} s.") from None
    except Exception as exc:  # a process that died, a refused connection, a protocol error
        logger.warning("MCP server %s: calling %s failed: %r", config.name, tool, exc)
        raise ToolError(f"The MCP server {config.name} is unavailable.") from None
    text = "\n".join(getattr(block, "text", "") for block in result.content if getattr(block, "text", None))
    if result.is_error:
        raise ToolError(text or f"The tool {tool} failed.")
    if result.structured_content is not None:
        return result.structured_content
    return {"text": text}


# -- the provider ------------------------------------------------------------------------------------
_cache: dict[tuple[int, float], tuple[float, list[RemoteTool]]] = {}
# One lock per server and event loop: an asyncio.Lock belongs to the loop it was first awaited in,
# and this process may run turns in more than one (daphne's, a management command's, the tests').
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, asyncio.Lock]] = weakref.WeakKeyDictionary()


def cache_clear() -> None:
    """Forget every server's tool list (the tests call it between tests)."""
    _cache.clear()
    _locks.clear()


async def cached_tools(config: ServerConfig) -> list[RemoteTool]:
    """The server's tools, from the cache while fresh (a server that failed: none, until it expires)."""
    key = (config.pk, config.updated_at)  # a changed row is listed afresh
    hit = _cache.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    lock = _locks.setdefault(asyncio.get_running_loop(), {}).setdefault(config.pk, asyncio.Lock())
    async with lock:  # turns starting together list the server once
        hit = _cache.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        try:
            tools = await list_remote_tools(config)
        except Exception as exc:
            logger.warning("MCP server %s: listing its tools failed: %r", config.name, exc)
            tools = []
        for stale in [k for k in _cache if k[0] == config.pk]:
            del _cache[stale]
        _cache[key] = (time.monotonic() + settings.MCP_TOOLS_CACHE_S, tools)
        return tools


def servers_for(user) -> list[ServerConfig]:
    """The enabled servers this user's turns may use: all for staff, else those marked for regular users."""
    rows = McpServer.objects.filter(enabled=True)
    if not getattr(user, "is_staff", False):
        rows = rows.filter(available_to_regular_users=True)
    return [ServerConfig.of(row) for row in rows.order_by("name")]


def _as_tool(config: ServerConfig, remote: RemoteTool) -> Tool:
    async def run(ctx: ToolContext, args: dict):
        return await call_remote_tool(config, remote.name, args)

    schema = remote.input_schema if remote.input_schema.get("type") == "object" else {"type": "object"}
    return Tool(
        name=tool_name(config.name, remote.name),
        description=(remote.description or remote.name)[:1000],
        parameters=schema,
        run=run,
        # The runner's own limit is a little above the call's, so the call's clearer error is the one seen.
        timeout_s=settings.MCP_CALL_TIMEOUT_S + 2,
        source=f"mcp:{config.name}",
    )


async def server_tools(config: ServerConfig) -> list[Tool]:
    allowed = set(config.allowed_tools)
    return [_as_tool(config, remote) for remote in await cached_tools(config) if remote.name in allowed]


@provider
async def mcp_tools(user) -> list[Tool]:
    configs = await db_call(servers_for, user=user)
    if not configs:
        return []
    lists = await asyncio.gather(*(server_tools(config) for config in configs))
    return [tool for tools in lists for tool in tools]


# -- voice_status ------------------------------------------------------------------------------------
def servers_report(*, timeout: float) -> dict:
    """Every configured server for `manage.py voice_status`: whom it is for and, for an enabled one,
    its tools as listed now (every server at once, each within `timeout`; one that is down says so).
    Synchronous: it reads the rows, then runs the listing in its own event loop."""
    try:
        rows = list(McpServer.objects.order_by("name"))
    except Exception as exc:  # the database is down: the rest of the report still prints
        return {"error": f"The MCP servers cannot be read: {exc}", "servers": []}

    async def ask(row: McpServer) -> list[str] | str | None:
        if not row.enabled:
            return None  # not asked: no turn would
        config = ServerConfig.of(row)
        try:
            return [tool.name for tool in await list_remote_tools(config, timeout=timeout)]
        except TimeoutError:
            return f"no answer within {timeout:g} s"
        except Exception as exc:
            return _failure(exc)

    async def ask_all() -> list[list[str] | str | None]:
        return list(await asyncio.gather(*(ask(row) for row in rows)))

    answers = asyncio.run(ask_all()) if rows else []
    servers = []
    for row, answer in zip(rows, answers, strict=True):
        listed = answer if isinstance(answer, list) else None
        servers.append(
            {
                "name": row.name,
                "transport": row.transport,
                "target": row.command if row.transport == McpServer.Transport.STDIO else row.url,
                "enabled": row.enabled,
                "for": "everyone" if row.available_to_regular_users else "staff",
                "allowed_tools": list(row.allowed_tools or []),
                "listed": listed,  # None: disabled (not asked) or down
                "offered": [t for t in row.allowed_tools or [] if listed is not None and t in listed],
                "error": answer if isinstance(answer, str) else None,
            }
        )
    return {"servers": servers}


def _failure(exc: BaseException) -> str:
    """The first real error inside the SDK's exception groups, in a line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
