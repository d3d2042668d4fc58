"""`manage.py benchmark --memory`'s harness runs end to end (tiny amounts: the figures are not judged here)."""

import os

import pytest

from devtools.benchmarks import memory as memory_benchmark

NAMES = {
    "recall_memories",
    "recall_cold_ms",
    "recall_p50_ms",
    "recall_p95_ms",
    "turns_per_setting",
    "memory_on_ttfa_p50_ms",
    "memory_on_ttfa_p95_ms",
    "memory_on_saved_ms",
    "memory_on_first_delta_ms",
    "memory_on_recalled",
    "memory_on_jobs",
    "memory_off_ttfa_p50_ms",
    "memory_off_ttfa_p95_ms",
    "memory_off_saved_ms",
    "memory_off_first_delta_ms",
    "memory_off_recalled",
    "memory_off_jobs",
    "memory_ttfa_delta_ms",
}


def test_recall_cost_ranks_the_memories_it_is_given():
    figures = memory_benchmark.recall_cost(count=30, rounds=3)
    assert figures["recall_memories"] == 30
    assert 0 < figures["recall_p50_ms"] <= figures["recall_p95_ms"] and figures["recall_cold_ms"] > 0


@pytest.mark.services_only
def test_a_tiny_run_compares_memory_on_and_off_on_mysql():
    lines = []
    results = memory_benchmark.run(rounds=2, count=5, out=lines.append, database_url=os.environ["DATABASE_URL"])

    assert set(results) == NAMES
    started = sorted(line.split("] ", 1)[1] for line in lines[:2])  # in the order they came up
    assert started == ["memory_off: up (MySQL/MariaDB), 5 memories", "memory_on: up (MySQL/MariaDB), 5 memories"]
    assert "2 turns each measured" in lines[-1]
    # Memory on: the five memories (all of them: they are few) in the request, a job after each turn;
    # memory off: neither, with the same memories stored.
    assert (results["memory_on_recalled"], results["memory_on_jobs"]) == (5, 2)
    assert (results["memory_off_recalled"], results["memory_off_jobs"]) == (0, 0)
    # The fake LLM waits 300 ms before its first token: every time to first audio includes it.
    for name in ("memory_on", "memory_off"):
        assert 300 < results[f"{name}_ttfa_p50_ms"] <= results[f"{name}_ttfa_p95_ms"]
        assert results[f"{name}_saved_ms"] > 0 and results[f"{name}_first_delta_ms"] > 300
    delta = results["memory_on_ttfa_p50_ms"] - results["memory_off_ttfa_p50_ms"]
    assert results["memory_ttfa_delta_ms"] == pytest.approx(delta)
