"""Memory through real turns, on the SSE route and the voice WebSocket, on both backends: the
background job (a Celery worker on the default queue with Redis, else in this process) asks the fake
LLM for structured output, and what it learnt is in the system message of later requests."""

import json

import pytest
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient
from django.utils import timezone

from chat.models import Conversation, Message
from devtools.fake_llm import ErrorReply, Reply
from memory.models import ConversationMemory, Memory, MemoryProfile
from memory.services import EXTRACT_PROMPT

pytestmark = pytest.mark.django_db(transaction=True)

NO_CHANGES = {"add": [], "update": [], "remove": [], "confirm": []}


async def sse_turn(client, text, conversation_id):
    payload = {"message": text}
    if conversation_id is not None:
        payload["conversation_id"] = conversation_id
    response = await client.post("/api/chat", payload, content_type="application/json")
    assert response.status_code == 200, response.content
    body = b"".join([part async for part in response.streaming_content]).decode()
    events = [
        json.loads(dict(line.split(": ", 1) for line in block.splitlines())["data"])
        for block in body.strip().split("\n\n")
    ]
    assert events[-1]["type"] in ("done", "title"), events
    return events[0]["conversation"]["id"]


async def ws_turn(client, text, conversation_id):
    from magicmirror.asgi import application

    headers = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    ws = WebsocketCommunicator(application, "/ws/voice/", headers=headers)
    connected, _ = await ws.connect(timeout=10)
    assert connected
    try:
        assert (await ws.receive_json_from(10))["type"] == "hello"
        await ws.send_json_to(
            {"type": "start", "protocol": 1, "voice_output": False, "conversation_id": conversation_id}
        )
        assert (await ws.receive_json_from(10))["type"] == "ready"
        await ws.send_json_to({"type": "text", "text": text})
        conversation, done = conversation_id, False
        while True:  # until the turn is over: its reply saved and the session idle again
            event = await ws.receive_json_from(30)
            if event["type"] == "conversation":
                conversation = event["id"]
            elif event["type"] == "reply_done":
                done = True
            elif event["type"] == "error":
                raise AssertionError(event)
            elif done and event["type"] == "state" and event["state"] == "idle":
                return conversation
    finally:
        await ws.disconnect()


@pytest.fixture(params=["sse", "ws"])
def route(request):
    return {"sse": sse_turn, "ws": ws_turn}[request.param]


@pytest.fixture
def talk(route, fake_llm):
    """talk(user, text, conversation_id=None) -> (conversation id, the messages the chat request sent)."""
    clients = {}

    async def say(user, text, conversation_id=None):
        if user.pk not in clients:
            clients[user.pk] = AsyncClient()
            await clients[user.pk].aforce_login(user)
        before = len(fake_llm.requests)
        conversation_id = await route(clients[user.pk], text, conversation_id)
        chat = [r for r in fake_llm.requests[before:] if r.get("stream")]
        assert len(chat) == 1
        return conversation_id, chat[0]["messages"]

    return say


def system(messages):
    assert messages[0]["role"] == "system"
    return messages[0]["content"]


async def make_memory(user, text, days_ago=0):
    when = timezone.now() - timezone.timedelta(days=days_ago)
    return await Memory.objects.acreate(owner=user, text=text, confirmed_at=when)


async def test_a_fact_said_once_is_learnt_and_used_in_the_next_conversation(talk, user, fake_llm, memory_jobs):
    fake_llm.queue_structured("memory_update", {**NO_CHANGES, "add": ["叫小明", "喜欢爬山"]})
    first, sent = await talk(user, "你好，我叫小明，周末喜欢去爬山。")
    assert "<memories>" not in system(sent)  # nothing known yet
    [done] = await memory_jobs.wait()
    assert done["memory"] == "2 added, 0 updated, 0 removed, 0 confirmed"

    said = await Message.objects.aget(conversation_id=first, role="user")
    memories = [m async for m in Memory.objects.filter(owner=user).order_by("id")]
    assert [m.text for m in memories] == ["叫小明", "喜欢爬山"]
    assert all(m.source_message_id == said.pk and m.source == "conversation" for m in memories)
    # The job's own request: its prompt, the turn's messages, structured output.
    [job] = fake_llm.structured_requests["memory_update"]
    assert job["messages"][0]["content"] == EXTRACT_PROMPT
    assert "user: 你好，我叫小明，周末喜欢去爬山。" in job["messages"][1]["content"]
    assert job["response_format"]["type"] == "json_schema"
    assert job["response_format"]["json_schema"]["name"] == "memory_update"

    second, sent = await talk(user, "今天天气怎么样？")
    assert second != first
    text = system(sent)
    assert "<memories>" in text and "- 叫小明\n- 喜欢爬山\n</memories>" in text
    assert [m["content"] for m in sent[1:]] == ["今天天气怎么样？"]  # nothing else of conversation 1


async def test_an_updated_fact_replaces_the_old_one(talk, user, fake_llm, memory_jobs):
    old = await make_memory(user, "住在北京")
    fake_llm.queue_structured("memory_update", {**NO_CHANGES, "update": [{"id": old.pk, "text": "住在上海"}]})
    conversation, sent = await talk(user, "我上个月从北京搬到上海了。")
    assert "- 住在北京" in system(sent)
    await memory_jobs.wait()
    assert f"{old.pk}: 住在北京" in fake_llm.structured_requests["memory_update"][0]["messages"][1]["content"]
    assert [m.text async for m in Memory.objects.filter(owner=user)] == ["住在上海"]

    _, sent = await talk(user, "推荐个周末去处吧。", conversation)
    assert "- 住在上海" in system(sent) and "北京" not in system(sent)


async def test_forgetting_removes_it_and_it_is_no_longer_sent(talk, user, fake_llm, memory_jobs):
    hiking = await make_memory(user, "喜欢爬山")
    await make_memory(user, "有一只猫")
    fake_llm.queue_structured("memory_update", {**NO_CHANGES, "remove": [hiking.pk]})
    conversation, _ = await talk(user, "请忘掉我喜欢爬山这件事。")
    await memory_jobs.wait()
    assert [m.text async for m in Memory.objects.filter(owner=user)] == ["有一只猫"]
    _, sent = await talk(user, "你还记得我什么？", conversation)
    assert "爬山" not in system(sent) and "- 有一只猫" in system(sent)


async def test_forget_everything_on_the_api(talk, user, fake_llm, memory_jobs):
    await make_memory(user, "喜欢爬山")
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.post("/api/memories/forget_all")
    assert response.status_code == 200 and response.json() == {"deleted": 1}
    _, sent = await talk(user, "你还记得我什么？")
    assert "<memories>" not in system(sent) and "爬山" not in system(sent)


async def test_memory_off_recalls_nothing_and_learns_nothing(talk, user, fake_llm, memory_jobs):
    await make_memory(user, "喜欢爬山")
    await MemoryProfile.objects.acreate(user=user, enabled=False)
    fake_llm.queue_structured("memory_update", {**NO_CHANGES, "add": ["叫小明"]})
    conversation, sent = await talk(user, "我叫小明。")
    assert "<memories>" not in system(sent) and "爬山" not in system(sent)
    [done] = await memory_jobs.wait()
    assert done["memory"] == "memory off"
    assert "memory_update" not in fake_llm.structured_requests  # the LLM was not even asked
    assert [m.text async for m in Memory.objects.filter(owner=user)] == ["喜欢爬山"]
    # Turned on again later, what was said while it was off is never read.
    state = await ConversationMemory.objects.aget(conversation_id=conversation)
    assert state.extracted_through == (await Message.objects.filter(conversation_id=conversation).alatest("id")).pk


@pytest.mark.parametrize(
    "garbage",
    [
        "好的，我记住了：你叫小明。",  # prose, no JSON
        '{"add": [1, 2], "update": [], "remove": [], "confirm": []}',  # the wrong types
        '{"add": ["叫小明"], "update": [{"id": "x"}], "remove": [], "confirm": []}',  # one bad item refuses all
        '{"add": ["叫小明"], "forget": ["everything"]}',  # a key it does not know
    ],
)
async def test_a_garbage_answer_changes_nothing(talk, user, fake_llm, memory_jobs, garbage):
    kept = await make_memory(user, "喜欢爬山")
    fake_llm.queue_structured("memory_update", garbage)
    conversation, _ = await talk(user, "我叫小明。")
    [done] = await memory_jobs.wait()
    assert done["memory"] == "malformed"
    assert [(m.pk, m.text) async for m in Memory.objects.filter(owner=user)] == [(kept.pk, "喜欢爬山")]
    state = await ConversationMemory.objects.aget(conversation_id=conversation)
    assert state.last_error == "memory_malformed"


async def test_an_llm_failure_changes_nothing_and_the_next_run_reads_the_turn(
    talk, user, fake_llm, memory_jobs, settings
):
    settings.LLM_MAX_RETRIES = 0
    fake_llm.queue_structured("memory_update", ErrorReply(500))
    conversation, _ = await talk(user, "我叫小明。")
    [done] = await memory_jobs.wait()
    assert done["memory"].startswith("llm error ")
    assert not await Memory.objects.filter(owner=user).aexists()
    state = await ConversationMemory.objects.aget(conversation_id=conversation)
    assert state.last_error and state.extracted_through == 0
    fake_llm.queue_structured("memory_update", {**NO_CHANGES, "add": ["叫小明"]})
    await talk(user, "你好。", conversation)
    await memory_jobs.wait()
    assert "user: 我叫小明。" in fake_llm.structured_requests["memory_update"][1]["messages"][1]["content"]
    assert [m.text async for m in Memory.objects.filter(owner=user)] == ["叫小明"]
    state = await ConversationMemory.objects.aget(conversation_id=conversation)
    assert state.last_error == ""


async def test_an_answer_in_a_code_fence_is_read(talk, user, fake_llm, memory_jobs):
    fake_llm.queue_structured(
        "memory_update", '好的：\n```json\n{"add": ["叫小明"], "update": [], "remove": [], "confirm": []}\n```'
    )
    await talk(user, "我叫小明。")
    await memory_jobs.wait()
    assert [m.text async for m in Memory.objects.filter(owner=user)] == ["叫小明"]


async def test_the_summary_of_a_long_conversation_replaces_the_dropped_messages(
    talk, user, fake_llm, memory_jobs, settings
):
    settings.LLM_HISTORY_MAX_MESSAGES = 4
    conversation, _ = await talk(user, "第一句：我们聊聊旅行。")
    await talk(user, "第二句：我想去云南。", conversation)
    await memory_jobs.wait()
    assert "conversation_summary" not in fake_llm.structured_requests  # 4 messages: they fit
    await talk(user, "第三句：预算五千。", conversation)
    *_, done = await memory_jobs.wait()
    assert done["summary"] == "summarised 4 messages"
    [job] = fake_llm.structured_requests["conversation_summary"]
    assert job["response_format"]["json_schema"]["name"] == "conversation_summary"
    assert "user: 第一句：我们聊聊旅行。" in job["messages"][1]["content"]
    assert "第三句" not in job["messages"][1]["content"]  # the newest stay as they are

    _, sent = await talk(user, "第四句：什么时候去最好？", conversation)
    text = system(sent)
    assert "<conversation_summary>" in text and "SUMMARY OF: user: 第一句：我们聊聊旅行。" in text
    history = [m["content"] for m in sent[1:]]
    assert history[0] == "第三句：预算五千。" and history[-1] == "第四句：什么时候去最好？"
    assert not any("第一句" in m or "第二句" in m for m in history)


async def test_the_persona_is_in_every_request(talk, user, fake_llm, memory_jobs):
    client = AsyncClient()
    await client.aforce_login(user)
    response = await client.patch(
        "/api/settings",
        {"persona": {"name": "小白", "address": "叫用户“老板”"}},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    conversation, sent = await talk(user, "你是谁？")
    assert "你的名字：小白。" in system(sent) and "称呼用户：叫用户“老板”。" in system(sent)
    assert "你的性格：温暖" in system(sent)  # the field left blank: the Chinese default
    _, sent = await talk(user, "Who are you?", conversation)
    assert "Your name: 小白." in system(sent) and "Your personality: warm" in system(sent)


async def test_one_users_memories_never_reach_anothers_requests(talk, user, other_user, fake_llm, memory_jobs):
    await make_memory(user, "叫小明")
    fake_llm.queue_structured("memory_update", {**NO_CHANGES, "add": ["叫小红"]})
    _, sent = await talk(other_user, "我叫小红。")
    assert "小明" not in system(sent)
    await memory_jobs.wait()
    assert [m.text async for m in Memory.objects.filter(owner=other_user)] == ["叫小红"]
    assert "小明" not in fake_llm.structured_requests["memory_update"][0]["messages"][1]["content"]
    _, sent = await talk(user, "我是谁？")
    assert "- 叫小明" in system(sent) and "小红" not in system(sent)
    assert await Conversation.objects.filter(owner=user).acount() == 1


async def test_the_turn_does_not_wait_for_the_job(talk, user, fake_llm, memory_jobs):
    """The memory job's LLM request hangs until released; the turn is over meanwhile."""
    fake_llm.queue_structured("memory_update", Reply(json.dumps({**NO_CHANGES, "add": ["叫小明"]}), pause_after=0))
    await talk(user, "我叫小明。")  # returns with the job's request still waiting
    assert fake_llm.wait_for_structured("memory_update", 1)
    assert not await Memory.objects.filter(owner=user).aexists()
    fake_llm.release()
    await memory_jobs.wait()
    assert [m.text async for m in Memory.objects.filter(owner=user)] == ["叫小明"]
