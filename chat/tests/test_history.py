import pytest

from chat.models import Conversation, Message
from chat.selectors import llm_history, llm_messages
from chat.services.titles import title_clean, title_fallback

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(user):
    conversation = Conversation.objects.create(owner=user)
    for i in range(10):
        Message.objects.create(conversation=conversation, role="user", content=f"question {i}")
        Message.objects.create(conversation=conversation, role="assistant", content=f"answer {i}")
    return conversation


def test_history_keeps_newest_within_message_budget(conversation):
    history = llm_history(conversation=conversation, max_messages=4, max_chars=10_000)
    assert [m["content"] for m in history] == ["question 8", "answer 8", "question 9", "answer 9"]


def test_history_within_char_budget_never_starts_with_assistant(conversation):
    # Each message is 8-10 characters; 25 characters fit two messages (answer 9, question 9).
    history = llm_history(conversation=conversation, max_messages=50, max_chars=25)
    assert [m["content"] for m in history] == ["question 9", "answer 9"]
    history = llm_history(conversation=conversation, max_messages=3, max_chars=10_000)
    assert history[0]["role"] == "user"
    assert [m["content"] for m in history] == ["question 9", "answer 9"]


def test_history_skips_empty_failed_replies_and_cuts_a_huge_last_message(user):
    conversation = Conversation.objects.create(owner=user)
    Message.objects.create(conversation=conversation, role="user", content="hello")
    Message.objects.create(conversation=conversation, role="assistant", content="", error_code="llm_timeout")
    Message.objects.create(conversation=conversation, role="user", content="x" * 500)
    history = llm_history(conversation=conversation, max_messages=10, max_chars=100)
    assert history == [{"role": "user", "content": "x" * 100}]


def test_system_prompt_comes_first(conversation, settings):
    settings.LLM_SYSTEM_PROMPT = "You are a test persona."
    messages = llm_messages(conversation=conversation)
    assert messages[0]["role"] == "system"
    # The site's prompt first, then the persona (memory.persona), in the language of the user's messages.
    assert messages[0]["content"].startswith("You are a test persona.\n\nYour name: MagicMirror.")
    assert messages[-1] == {"role": "assistant", "content": "answer 9"}


@pytest.mark.parametrize(
    ("text", "title"),
    [
        ("你好", "你好"),
        ("  Plan   a trip  ", "Plan a trip"),
        ("Help me plan a trip to Hangzhou next spring please", "Help me plan a trip…"),
        ("请帮我写一封给房东的邮件，说明下个月的房租会晚几天交", "请帮我写一封给房东的邮件…"),
    ],
)
def test_title_fallback(text, title):
    assert title_fallback(text) == title


def test_title_clean():
    assert title_clean('"Trip to Hangzhou."') == "Trip to Hangzhou"
    assert title_clean("标题：杭州旅行。") == "杭州旅行"
    assert title_clean("**Weekend plans**") == "Weekend plans"


def test_a_pending_user_message_is_the_newest_and_counts_against_the_budgets(django_user_model):
    user = django_user_model.objects.create_user("pending")
    conversation = Conversation.objects.create(owner=user)
    for role, content in [("user", "one"), ("assistant", "two"), ("user", "three"), ("assistant", "four")]:
        Message.objects.create(conversation=conversation, role=role, content=content)

    history = llm_history(conversation=conversation, max_messages=3, max_chars=10_000, pending_user_text="five")
    assert [m["content"] for m in history] == ["three", "four", "five"]
    assert history[-1]["role"] == "user"

    # The characters budget: the pending message is always kept, older ones only while they fit.
    history = llm_history(conversation=conversation, max_messages=10, max_chars=13, pending_user_text="five")
    assert [m["content"] for m in history] == ["three", "four", "five"]
    # An assistant message may not open the history.
    history = llm_history(conversation=conversation, max_messages=2, max_chars=10_000, pending_user_text="five")
    assert [m["content"] for m in history] == ["five"]


def test_a_reply_with_tool_calls_replays_as_the_llm_made_it(user):
    conversation = Conversation.objects.create(owner=user)
    Message.objects.create(conversation=conversation, role="user", content="time and weather?")
    calls = [
        {"id": "c1", "name": "current_time", "arguments": "{}", "result": '{"time": "15:05"}', "round": 1, "offset": 6},
        {"id": "c2", "name": "weather", "arguments": '{"city": "Paris"}', "result": '{"error": "x"}', "round": 1,
         "offset": 6},
        {"id": "c3", "name": "weather", "arguments": "{}", "result": '"sunny"', "round": 2, "offset": 99},
    ]  # fmt: skip
    Message.objects.create(conversation=conversation, role="assistant", content="Let me see.", tool_calls=calls)
    history = llm_history(conversation=conversation, max_messages=10, max_chars=10_000, replay_tools=True)
    assert [(m["role"], m.get("content")) for m in history] == [
        ("user", "time and weather?"),
        ("assistant", "Let me"),
        ("tool", '{"time": "15:05"}'),
        ("tool", '{"error": "x"}'),
        ("assistant", " see."),  # a cut reply: the second round's offset is past its end, so it is its end
        ("tool", '"sunny"'),
    ]
    assert [c["id"] for c in history[1]["tool_calls"]] == ["c1", "c2"]
    assert history[1]["tool_calls"][1] == {
        "id": "c2",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    # Without replay_tools (the memory jobs' window): one item per message, its text.
    plain = llm_history(conversation=conversation, max_messages=10, max_chars=10_000)
    assert plain == [
        {"role": "user", "content": "time and weather?"},
        {"role": "assistant", "content": "Let me see."},
    ]
