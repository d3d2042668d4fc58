"""Running the tools an LLM called in a turn: parse, validate, run in parallel, bounded, reported.

Each call's arguments are parsed (JSON text, an object) and validated against its tool's JSON
schema before it runs; the calls of one round run at once (asyncio.gather), each within its
timeout (the tool's own, else TOOLS_TIMEOUT_S). Whatever happens, every call ends with a result
the LLM is told about (an error, a timeout, bad arguments, an unknown tool): never a failed turn.
Cancelling the caller (an interrupt) cancels the running tools with it.
"""

import asyncio
import dataclasses
import json
import logging
import time

import jsonschema  # type: ignore[import-untyped]
from django.conf import settings

from chat.llm import ToolCall
from magicmirror import metrics
from magicmirror.errors import ApplicationError

from .registry import Tool, ToolContext, ToolError

logger = logging.getLogger(__name__)

RESULT_MAX_CHARS = 4000  # of a result's JSON text sent to the LLM (and stored)

OUTCOMES = ("ok", "error", "invalid", "timeout", "unknown_tool")


@dataclasses.dataclass
class ToolResult:
    call: ToolCall
    outcome: str  # one of OUTCOMES
    content: str  # the `tool` message's content: the result's JSON text, or {"error": ...}
    seconds: float = 0.0


def _error(message: str) -> str:
    return json.dumps({"error": message}, ensure_ascii=False)


def parse_arguments(tool: Tool, text: str) -> dict:
    """The call's arguments as a dict valid for the tool's schema; ToolError (for the LLM) otherwise."""
    try:
        arguments = json.loads(text) if text and text.strip() else {}
    except ValueError:
        raise ToolError("The arguments are not valid JSON.") from None
    if not isinstance(arguments, dict):
        raise ToolError("The arguments must be a JSON object.")
    validator = jsonschema.Draft202012Validator(tool.parameters)
    problem = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path)
        raise ToolError(f"Invalid arguments{f' at {where}' if where else ''}: {problem.message}")
    return arguments


async def _run_one(call: ToolCall, tools: dict[str, Tool], context: ToolContext) -> ToolResult:
    started = time.monotonic()
    tool = tools.get(call.name)
    if tool is None:
        result = ToolResult(call, "unknown_tool", _error(f"There is no tool named {call.name!r}."))
    else:
        result = await _run_tool(call, tool, context)
    result.seconds = time.monotonic() - started
    metrics.observe_tool_call(call.name if tool is not None else "unknown", result.outcome, result.seconds)
    log = logger.info if result.outcome == "ok" else logger.warning
    log(
        "Tool %s (%s): %s in %.3f s",
        call.name,
        tool.source if tool is not None else "-",
        result.outcome,
        result.seconds,
        extra={"trace_id": context.trace_id},
    )
    return result


async def _run_tool(call: ToolCall, tool: Tool, context: ToolContext) -> ToolResult:
    try:
        arguments = parse_arguments(tool, call.arguments)
    except ToolError as exc:
        return ToolResult(call, "invalid", _error(str(exc)))
    timeout = tool.timeout_s if tool.timeout_s is not None else settings.TOOLS_TIMEOUT_S
    try:
        async with asyncio.timeout(timeout):
            value = await tool.run(context, arguments)
    except TimeoutError:
        return ToolResult(call, "timeout", _error(f"The tool did not answer within {timeout:g} s."))
    except ToolError as exc:
        return ToolResult(call, "error", _error(str(exc)))
    except ApplicationError as exc:  # a service's refusal (not found, a limit): its sentence is for people
        return ToolResult(call, "error", _error(exc.message))
    except Exception:
        logger.exception("Tool %s failed", call.name, extra={"trace_id": context.trace_id})
        return ToolResult(call, "error", _error("The tool failed."))
    try:
        content = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        content = json.dumps(str(value), ensure_ascii=False)
    if len(content) > RESULT_MAX_CHARS:
        content = json.dumps({"truncated": content[:RESULT_MAX_CHARS]}, ensure_ascii=False)
    return ToolResult(call, "ok", content)


async def run_calls(calls: list[ToolCall], tools: list[Tool], context: ToolContext) -> list[ToolResult]:
    """Run one round's calls at once; their results in the calls' order. Cancelled with the caller."""
    by_name = {tool.name: tool for tool in tools}
    return list(await asyncio.gather(*(_run_one(call, by_name, context) for call in calls)))
