"""`manage.py benchmark --memory`: what recall costs a turn (memory/recall.py and the system message,
no database): a user's memories at MEMORY_MAX_PER_USER, ranked against recent Chinese messages
within MEMORY_RECALL_MAX_CHARS. Figures in docs/benchmarks.md."""

import statistics
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from memory.persona import Persona, system_message
from memory.recall import Candidate, recall

FACTS = ["喜欢爬山", "女儿在上海读大学", "对花粉过敏", "每天早上跑步", "养了一只叫咪咪的猫", "在北京做程序员"]
RECENT = ["我下周要去上海看女儿，", "你觉得带什么礼物好？", "她喜欢看书和爬山。", "天气怎么样？"]


def run(*, count: int | None = None, rounds: int = 200) -> dict:
    count = count or settings.MEMORY_MAX_PER_USER
    now = timezone.now()
    memories = [Candidate(i, f"{FACTS[i % len(FACTS)]}（第{i}条）", now - timedelta(days=i)) for i in range(count)]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        picked = recall(memories, RECENT, budget=settings.MEMORY_RECALL_MAX_CHARS, now=now)
        system_message(
            base=settings.LLM_SYSTEM_PROMPT, persona=Persona(), language="zh", memories=[m.text for m in picked]
        )
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {
        "recall_memories": float(count),
        "recall_p50_ms": statistics.median(times),
        "recall_p95_ms": times[int(len(times) * 0.95) - 1],
    }
