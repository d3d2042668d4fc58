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
"""

import asyncio
import logging
import re
import time
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from django.conf import settings

from magicmirror.dbasync import db_call

from .models import McpServer
from .registry import Tool, ToolContext, ToolError, provider

logger = logging.getLogger(__name__)

NAME_MAX = 64  # OpenAI function names: ^[a-zA-Z0-9_-]{1,64}$


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


@asynccontextmanager
async def session(config: ServerConfig, *, timeout: float):
    """A connected `mcp.Client` for the server (imported here: the SDK is loaded on first use)."""
    import os

    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

    async with AsyncExitStack() as stack:
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
    async with asyncio.timeout(timeout), session(config, timeout=timeout) as client:
        result = await client.list_tools()
    return [RemoteTool(t.name, t.description or "", t.input_schema or {"type": "object"}) for t in result.tools]


async def call_remote_tool(config: ServerConfig, tool: str, arguments: dict, *, timeout: float | None = None):
    """Call the tool; its text (or structured) result, or ToolError within `timeout` whatever happens."""
    timeout = timeout if timeout is not None else settings.MCP_CALL_TIMEOUT_S
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
_locks: dict[int, asyncio.Lock] = {}


def cache_clear() -> None:
    _cache.clear()


async def cached_tools(config: ServerConfig) -> list[RemoteTool]:
    """The server's tools, from the cache while fresh (a server that failed: none, until it expires)."""
    key = (config.pk, config.updated_at)  # a changed row is listed afresh
    hit = _cache.get(key)
    if hit is not None and hit[0] > time.monotonic():
        return hit[1]
    lock = _locks.setdefault(config.pk, asyncio.Lock())
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
