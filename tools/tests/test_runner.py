"""The LLM's streamed tool calls (chat.llm.stream_turn) and the runner on their own."""

import asyncio

import pytest
from django.contrib.auth import get_user_model

from chat import llm
from devtools.fake_llm import ToolCalls
from tools import runner
from tools.registry import Tool, ToolContext

from .helpers import Gate

SCHEMA = [{"type": "function", "function": {"name": "t", "description": "", "parameters": {"type": "object"}}}]


async def collect(stream):
    return [item async for item in stream]


@pytest.mark.parametrize("finish", ["tool_calls", "stop"])
async def test_streamed_calls_are_assembled(fake_llm, finish):
    fake_llm.queue(
        ToolCalls([("t", {"text": "你好，世界" * 5}), ("u", "{}")], text="Hi ", chunk_chars=2, finish_reason=finish)
    )
    items = await collect(llm.stream_turn([{"role": "user", "content": "x"}], tools=SCHEMA))
    assert items[:-1] == ["Hi "]
    calls = items[-1]
    assert [(c.name, c.arguments) for c in calls] == [
        ("t", '{"text": "' + "你好，世界" * 5 + '"}'),
        ("u", "{}"),
    ]
    assert len({c.id for c in calls}) == 2
    assert fake_llm.requests[0]["tool_choice"] == "auto" and fake_llm.requests[0]["tools"] == SCHEMA


async def test_without_tools_nothing_is_offered_and_only_text_comes(fake_llm):
    fake_llm.queue(ToolCalls([("t", {})], text="Only text."))
    assert "".join(await collect(llm.stream_reply([{"role": "user", "content": "x"}]))) == "Only text."
    assert "tools" not in fake_llm.requests[0] and "tool_choice" not in fake_llm.requests[0]


def context():
    return ToolContext(
        user=get_user_model()(pk=1), conversation_id=None, speaker_id=None, trace_id="t1", language="en",
        time_zone="UTC",
    )  # fmt: skip


async def test_a_tools_own_timeout_and_cancellation_with_the_caller(settings):
    settings.TOOLS_TIMEOUT_S = 30
    quick_timeout = Gate("quick", timeout_s=0.01)
    stuck = Gate("stuck")
    results = await runner.run_calls([llm.ToolCall("1", "quick", "{}")], [quick_timeout.tool], context())
    assert results[0].outcome == "timeout" and quick_timeout.cancelled.is_set()

    task = asyncio.create_task(runner.run_calls([llm.ToolCall("2", "stuck", "")], [stuck.tool], context()))
    await stuck.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stuck.cancelled.is_set()


async def test_a_result_that_is_not_json_and_a_long_one():
    async def odd(context, arguments):
        return {"when": object}

    async def long(context, arguments):
        return "x" * 10_000

    tools = [Tool("odd", "", {"type": "object"}, odd), Tool("long", "", {"type": "object"}, long)]
    calls = [llm.ToolCall("1", "odd", "{}"), llm.ToolCall("2", "long", "[]"), llm.ToolCall("3", "long", "{}")]
    odd_result, not_an_object, long_result = await runner.run_calls(calls, tools, context())
    assert odd_result.outcome == "ok" and "class 'object'" in odd_result.content
    assert not_an_object.outcome == "invalid"
    assert long_result.outcome == "ok" and len(long_result.content) < 4100 and "truncated" in long_result.content
