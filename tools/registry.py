"""The tools an LLM may call in a turn, and who offers them.

A *provider* is a function of the turn's user that returns the tools that user may call (the
built-ins, reminders, each MCP server). Providers register themselves when their app is ready
(`AppConfig.ready`), so the turn code knows only this module.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any


@dataclasses.dataclass(frozen=True)
class ToolContext:
    """Who and where a tool acts for: a tool acts only as this user and only on this user's data."""

    user: Any  # the turn's User
    conversation_id: int | None
    speaker_id: int | None
    trace_id: str | None
    language: str  # the user's spoken language ("zh", "en", ...)
    time_zone: str  # IANA name, e.g. "Asia/Shanghai"
    # Filled by a tool that changes the session (switch voice, new conversation); the turn relays them.
    effects: list[dict] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class Tool:
    name: str  # ^[a-zA-Z0-9_-]{1,64}$, unique among a user's tools
    description: str
    parameters: dict  # JSON schema of the arguments (an object schema)
    run: Callable[[ToolContext, dict], Awaitable[Any]]  # returns something JSON-serialisable
    timeout_s: float | None = None  # None: settings.TOOLS_TIMEOUT_S
    source: str = "builtin"  # "builtin", "reminders", "mcp:<server name>"

    def openai_schema(self) -> dict:
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


class ToolError(Exception):
    """Raised by a tool that refuses (no such voice, memory off): its message, a sentence for the LLM,
    is the call's result (outcome `error`), never a failed turn."""


Provider = Callable[[Any], Awaitable[list[Tool]]]
_providers: list[Provider] = []


def provider(fn: Provider) -> Provider:
    """Register `fn(user) -> list[Tool]` (async). Used as a decorator in the providing module, which
    its app imports in `ready()`."""
    if fn not in _providers:
        _providers.append(fn)
    return fn


async def tools_for(user) -> list[Tool]:
    """Every tool this user may call, first registered provider first; a later tool with a name
    already taken is left out."""
    seen: dict[str, Tool] = {}
    for fn in _providers:
        for tool in await fn(user):
            seen.setdefault(tool.name, tool)
    return list(seen.values())
