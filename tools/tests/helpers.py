"""Tools of the tests' own, offered through the registry like any provider's, and a fixed clock."""

import asyncio
import contextlib
import datetime

from tools import registry
from tools.registry import Tool


class Gate:
    """A tool that starts, then waits for the test (`open()`), or forever; it notes being cancelled."""

    def __init__(self, name: str, *, result=None, parameters=None, timeout_s=None):
        self.name, self.result = name, result
        self.started = asyncio.Event()
        self.opened = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.calls: list[dict] = []
        self.contexts: list = []
        self.tool = Tool(
            name=name,
            description=f"A test tool ({name}).",
            parameters=parameters or {"type": "object", "properties": {}, "additionalProperties": False},
            run=self.run,
            timeout_s=timeout_s,
            source="test",
        )

    async def run(self, context, arguments):
        self.calls.append(arguments)
        self.contexts.append(context)
        self.started.set()
        try:
            await self.opened.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return self.result if self.result is not None else {"tool": self.name}

    def open(self):
        self.opened.set()


@contextlib.contextmanager
def offered(*tools: Tool):
    """These tools are offered to every user while inside (a provider registered for the test)."""

    async def test_tools(user):
        return list(tools)

    registry.provider(test_tools)
    try:
        yield
    finally:
        registry._providers.remove(test_tools)


FIXED_NOW = datetime.datetime(2026, 3, 14, 7, 5, tzinfo=datetime.UTC)  # a Saturday, 15:05 in Shanghai
