"""Typed turns (POST /api/chat, server-sent events) in which the LLM calls tools.

The LLM is the fake OpenAI-compatible server answering with streamed `tool_calls` (devtools.fake_llm
ToolCalls: split argument chunks, several calls at once); the continuation is the reply it gives
to the request that brings the results back.
"""

import asyncio
import json
import logging

import pytest
from prometheus_client import REGISTRY

from chat.models import Conversation, Message
from chat.tests.test_chat_stream import chat, sse_events
from devtools.fake_llm import Reply, ToolCalls
from memory.models import Memory, MemoryProfile
from speakers.models import Speaker, UserSettings

from .helpers import Gate, offered

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def api(async_client, user):
    await async_client.aforce_login(user)
    return async_client


def of(events, kind):
    return [e for e in events if e["type"] == kind]


def tool_messages(request):
    return [m for m in request["messages"] if m["role"] == "tool"]


def calls_counted(tool, outcome):
    return REGISTRY.get_sample_value("mm_tool_calls_total", {"tool": tool, "outcome": outcome}) or 0.0


async def test_the_time_tool_in_a_typed_turn(api, user, fake_llm, fixed_now, caplog):
    await UserSettings.objects.acreate(user=user, time_zone="Europe/Paris")
    fake_llm.queue(
        ToolCalls([("current_time", {})], text="我看一下。"), Reply("现在是巴黎时间八点零五分。"), Reply("问时间")
    )
    before = calls_counted("current_time", "ok")
    with caplog.at_level(logging.INFO, logger="tools.runner"):
        events = await sse_events(await chat(api, "现在几点？"))
    kinds = [e["type"] for e in events]
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("done")
    assert "".join(e["text"] for e in of(events, "delta")) == "我看一下。现在是巴黎时间八点零五分。"
    (call,) = of(events, "tool_call")[0]["calls"]
    assert call["name"] == "current_time" and json.loads(call["arguments"]) == {}
    result = of(events, "tool_result")[0]
    assert result["outcome"] == "ok"
    told = json.loads(result["result"])
    assert told["time_zone"] == "Europe/Paris" and told["time"] == "08:05" and told["date"] == "2026-03-14"
    assert told["weekday"] == "星期六"

    # The first request offered the tools; the second brought the call and its result back.
    first, second = fake_llm.requests[0], fake_llm.requests[1]
    assert first["tool_choice"] == "auto"
    assert "current_time" in {t["function"]["name"] for t in first["tools"]}
    assert second["messages"][-2] == {
        "role": "assistant",
        "content": "我看一下。",
        "tool_calls": [{"id": call["id"], "type": "function", "function": {"name": "current_time", "arguments": "{}"}}],
    }
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": call["id"], "content": result["result"]}

    # Stored with the reply, shown by the API.
    reply = await Message.objects.aget(role="assistant", conversation__owner=user)
    assert reply.content == "我看一下。现在是巴黎时间八点零五分。"
    assert [(c["name"], c["outcome"], c["offset"], c["round"]) for c in reply.tool_calls] == [
        ("current_time", "ok", 5, 1)
    ]
    detail = await api.get(f"/api/conversations/{reply.conversation_id}")
    shown = detail.json()["messages"][1]["tool_calls"]
    assert shown == [
        {"id": call["id"], "name": "current_time", "arguments": "{}", "outcome": "ok", "result": result["result"]}
    ]
    assert of(events, "done")[0]["message"]["tool_calls"] == shown

    # Logged with the turn's trace id, counted by tool and outcome.
    logged = [r for r in caplog.records if r.name == "tools.runner" and "current_time" in r.getMessage()]
    assert logged and logged[0].trace_id
    assert calls_counted("current_time", "ok") == before + 1
    assert REGISTRY.get_sample_value("mm_tool_call_seconds_count", {"tool": "current_time"})


async def test_the_time_zone_defaults(api, user, fake_llm, fixed_now, settings):
    settings.TIME_ZONE = "UTC"
    await UserSettings.objects.acreate(user=user, spoken_language="zh")
    fake_llm.queue(ToolCalls([("current_time", {})]), Reply("三点零五分。"))
    events = await sse_events(await chat(api, "几点了"))
    assert json.loads(of(events, "tool_result")[0]["result"])["time"] == "15:05"  # Asia/Shanghai for zh
    await UserSettings.objects.filter(user=user).aupdate(spoken_language="en")
    fake_llm.queue(ToolCalls([("current_time", {})]), Reply("It is 7:05."))
    events = await sse_events(await chat(api, "What time is it?"))
    told = json.loads(of(events, "tool_result")[0]["result"])
    assert (told["time_zone"], told["time"], told["weekday"]) == ("UTC", "07:05", "Saturday")


async def test_two_calls_run_at_once(api, user, fake_llm):
    # Each tool waits for the other to have started: run one after the other, neither would finish.
    a, b = Gate("tool_a", result={"a": 1}), Gate("tool_b", result={"b": 2})

    async def open_each_other():
        await a.started.wait()
        await b.started.wait()
        a.open()
        b.open()

    opener = asyncio.create_task(open_each_other())
    fake_llm.queue(ToolCalls([("tool_a", {}), ("tool_b", {})], chunk_chars=1), Reply("Both done."))
    with offered(a.tool, b.tool):
        events = await sse_events(await chat(api, "do both"))
    await opener
    assert [c["name"] for c in of(events, "tool_call")[0]["calls"]] == ["tool_a", "tool_b"]
    assert [(r["name"], r["outcome"], json.loads(r["result"])) for r in of(events, "tool_result")] == [
        ("tool_a", "ok", {"a": 1}),
        ("tool_b", "ok", {"b": 2}),
    ]
    sent = fake_llm.requests[1]["messages"]
    assert [m["tool_call_id"] for m in tool_messages(fake_llm.requests[1])] == [c["id"] for c in sent[-3]["tool_calls"]]
    # The tool acted as the turn's user, in the turn's conversation.
    assert a.contexts[0].user.pk == user.pk and a.contexts[0].conversation_id == events[0]["conversation"]["id"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"time_zone": 5}, "Invalid arguments at time_zone: 5 is not of type 'string'"),
        ({"zone": "Europe/Paris"}, "Additional properties are not allowed ('zone' was unexpected)"),
        ('{"time_zone": "Eur', "The arguments are not valid JSON."),
    ],
)
async def test_invalid_arguments_are_refused_by_the_schema(api, fake_llm, arguments, message):
    fake_llm.queue(ToolCalls([("current_time", arguments)]), Reply("Sorry, let me try again later."))
    events = await sse_events(await chat(api, "time?"))
    result = of(events, "tool_result")[0]
    assert result["outcome"] == "invalid"
    assert message in json.loads(result["result"])["error"]
    assert tool_messages(fake_llm.requests[1])[0]["content"] == result["result"]  # the LLM is told
    assert events[-2]["type"] == "done" and events[-2]["message"]["content"] == "Sorry, let me try again later."


async def test_a_tool_that_times_out(api, user, fake_llm, settings):
    settings.TOOLS_TIMEOUT_S = 0.05
    stuck = Gate("stuck")  # never opened
    fake_llm.queue(ToolCalls([("stuck", {})]), Reply("That took too long."))
    with offered(stuck.tool):
        events = await sse_events(await chat(api, "go"))
    result = of(events, "tool_result")[0]
    assert result["outcome"] == "timeout" and "0.05 s" in json.loads(result["result"])["error"]
    assert stuck.cancelled.is_set()
    assert tool_messages(fake_llm.requests[1])[0]["content"] == result["result"]
    assert of(events, "done")[0]["message"]["content"] == "That took too long."


async def test_unknown_tool_and_failing_tool_are_results_not_failed_turns(api, fake_llm):
    async def broken(context, arguments):
        raise RuntimeError("boom")

    from tools.registry import Tool

    tool = Tool(name="broken", description="fails", parameters={"type": "object"}, run=broken)
    fake_llm.queue(ToolCalls([("broken", {}), ("no_such_tool", {})]), Reply("Neither worked."))
    with offered(tool):
        events = await sse_events(await chat(api, "go"))
    assert [(r["name"], r["outcome"]) for r in of(events, "tool_result")] == [
        ("broken", "error"),
        ("no_such_tool", "unknown_tool"),
    ]
    assert json.loads(of(events, "tool_result")[0]["result"]) == {"error": "The tool failed."}
    assert of(events, "done")


async def test_rounds_are_capped(api, fake_llm, settings):
    settings.TOOLS_MAX_ROUNDS = 1
    fake_llm.queue(ToolCalls([("current_time", {})]), ToolCalls([("current_time", {})], text="Again? "))
    events = await sse_events(await chat(api, "time"))
    assert len(of(events, "tool_call")) == 1
    assert "tools" in fake_llm.requests[0] and "tools" not in fake_llm.requests[1]  # the last: words only
    assert of(events, "done")[0]["message"]["content"] == "Again? "


async def test_history_replays_a_turn_with_tool_calls(api, user, fake_llm, fixed_now):
    fake_llm.queue(ToolCalls([("current_time", {})], text="Let me see. "), Reply("It is 15:05."), Reply("Time"))
    first = await sse_events(await chat(api, "What time is it?"))
    conversation_id = first[0]["conversation"]["id"]
    call_id = of(first, "tool_call")[0]["calls"][0]["id"]
    result = of(first, "tool_result")[0]["result"]
    fake_llm.queue(Reply("You are welcome."))
    await sse_events(await chat(api, "Thanks", conversation_id))
    sent = fake_llm.requests[-1]["messages"]
    assert sent[1:] == [
        {"role": "user", "content": "What time is it?"},
        {
            "role": "assistant",
            "content": "Let me see. ",
            "tool_calls": [
                {"id": call_id, "type": "function", "function": {"name": "current_time", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": result},
        {"role": "assistant", "content": "It is 15:05."},
        {"role": "user", "content": "Thanks"},
    ]


async def test_remember_and_forget_through_tools(api, user, fake_llm, settings):
    settings.MEMORY_ENABLED = True
    fake_llm.queue(ToolCalls([("remember", {"fact": "对花生过敏"})]), Reply("记住了。"))
    events = await sse_events(await chat(api, "记住我对花生过敏"))
    assert of(events, "tool_result")[0]["outcome"] == "ok"
    assert [m.text async for m in Memory.objects.filter(owner=user)] == ["对花生过敏"]

    fake_llm.queue(ToolCalls([("forget", {"fact": "花生"})]), Reply("忘掉了。"))
    events = await sse_events(await chat(api, "忘了花生的事"))
    assert json.loads(of(events, "tool_result")[0]["result"]) == {"forgotten": ["对花生过敏"]}
    assert not await Memory.objects.filter(owner=user).aexists()


async def test_memory_off_remembers_nothing(api, user, fake_llm, settings):
    settings.MEMORY_ENABLED = True  # for the site; off for this user
    await MemoryProfile.objects.acreate(user=user, enabled=False)
    fake_llm.queue(ToolCalls([("remember", {"fact": "喜欢爬山"})]), Reply("好的。"))
    events = await sse_events(await chat(api, "记住我喜欢爬山"))
    assert "remember" not in {t["function"]["name"] for t in fake_llm.requests[0]["tools"]}  # not offered
    assert of(events, "tool_result")[0]["outcome"] == "unknown_tool"
    assert not await Memory.objects.filter(owner=user).aexists()


async def make_speaker(owner, slot, name):
    return await Speaker.objects.acreate(owner=owner, slot=slot, name=name, audio=f"x/{name}.wav", prompt_text="你好")


async def test_switch_voice_only_among_the_users_own(api, user, other_user, fake_llm):
    mine = [await make_speaker(user, 1, "小明"), await make_speaker(user, 2, "妈妈")]
    await make_speaker(other_user, 1, "陌生人")
    await UserSettings.objects.acreate(user=user, current_speaker=mine[0])
    fake_llm.queue(ToolCalls([("switch_voice", {"name": "陌生人"})]), Reply("没有这个声音。"))
    events = await sse_events(await chat(api, "换成陌生人的声音"))
    result = of(events, "tool_result")[0]
    assert result["outcome"] == "error" and "陌生人" not in result["result"]  # another user's names are never told
    assert not of(events, "effect")
    assert (await UserSettings.objects.aget(user=user)).current_speaker_id == mine[0].pk

    fake_llm.queue(ToolCalls([("switch_voice", {"slot": 2})]), Reply("好的。"))
    events = await sse_events(await chat(api, "用二号声音"))
    assert of(events, "effect") == [
        {"type": "effect", "effect": "speaker", "speaker": {"id": mine[1].pk, "name": "妈妈"}}
    ]
    assert (await UserSettings.objects.aget(user=user)).current_speaker_id == mine[1].pk


async def test_new_conversation_is_reported(api, user, fake_llm):
    fake_llm.queue(ToolCalls([("new_conversation", {})]), Reply("好，我们换个话题。"))
    events = await sse_events(await chat(api, "我们重新开始吧"))
    assert of(events, "effect") == [{"type": "effect", "effect": "new_conversation"}]
    assert await Conversation.objects.filter(owner=user).acount() == 1  # the next message makes the new one
