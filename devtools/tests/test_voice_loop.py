"""`manage.py benchmark`'s harness runs end to end (a tiny plan: the figures are not judged here)."""

import os

import pytest
from django.core.management import CommandError, call_command

from devtools.benchmarks import voice_loop as benchmark

NAMES = {
    "ttfa_streamed_ms",
    "ttfa_whole_ms",
    "ttfa_floor_ms",
    "ttfa_ratio",
    "ttfa_overhead_ms",
    "ttfa_streamed_p95_ms",
    "final_ms_2s",
    "whole_ms_2s",
    "web_peak_mb",
    "worker_peak_mb",
    "overhead_p50_ms",
    "overhead_p95_ms",
    "overhead_saved_ms",
    "overhead_first_delta_ms",
    "overhead_reply_done_ms",
    "overhead_first_audio_ms",
    "sessions_3_turns_per_s",
    "sessions_3_p50_ms",
    "sessions_3_p95_ms",
    "sessions_3_p99_ms",
    "sessions_3_errors",
}


@pytest.mark.services_only
def test_a_tiny_run_produces_every_figure_on_mysql():
    plan = benchmark.Plan(rounds=1, lengths=(2,), sessions=(3,), turns_per_session=1, think_s=(0.0, 0.05))
    lines = []
    results = benchmark.run(plan, out=lines.append, database_url=os.environ["DATABASE_URL"])

    assert set(results) == NAMES
    assert "MySQL/MariaDB" in lines[0] and "3 sessions measured" in lines[-1]
    # The fake LLM waits 300 ms before its first token: every time to first audio includes it.
    assert results["ttfa_floor_ms"] > 300 and 300 < results["ttfa_streamed_ms"] < results["ttfa_whole_ms"]
    assert results["ttfa_ratio"] == pytest.approx(results["ttfa_streamed_ms"] / results["ttfa_whole_ms"])
    assert results["ttfa_overhead_ms"] == pytest.approx(results["ttfa_streamed_ms"] - results["ttfa_floor_ms"])
    assert results["final_ms_2s"] > 0 and results["whole_ms_2s"] > 0
    assert 0 < results["overhead_p50_ms"] <= results["overhead_p95_ms"]
    assert 0 < results["overhead_saved_ms"] < results["overhead_reply_done_ms"]
    assert results["overhead_first_delta_ms"] < results["overhead_reply_done_ms"]
    assert results["sessions_3_errors"] == 0 and results["sessions_3_turns_per_s"] > 0
    assert results["sessions_3_p50_ms"] <= results["sessions_3_p99_ms"]
    assert results["web_peak_mb"] > 0 and results["worker_peak_mb"] > 0


@pytest.mark.parametrize(
    "argv, message",
    [(["--rounds", "0"], "--rounds"), (["--sessions", "ten"], "--sessions"), (["--sessions", "0"], "--sessions")],
)
def test_bad_options_are_refused_before_anything_starts(argv, message):
    with pytest.raises(CommandError, match=message):
        call_command("benchmark", *argv)
