"""`manage.py benchmark --tts-stream`'s harness runs end to end (tiny amounts: the figures are not judged here)."""

import pytest

from devtools.benchmarks import tts_stream


@pytest.mark.services_only
def test_a_tiny_run_compares_the_stream_with_a_job_per_sentence():
    lines = []
    results = tts_stream.run(rounds=1, turns_per_round=2, sessions=2, out=lines.append)

    assert "up: two stacks" in lines[0] and "Piper" in lines[0] and "measured" in lines[-1]
    # The reply has two sentences: one stream job a turn, or one job per sentence.
    assert results["tts_stream_jobs_per_turn"] == 1
    assert results["tts_per_sentence_jobs_per_turn"] == 2
    for mode in ("stream", "per_sentence"):
        # The fake LLM waits 300 ms before its first token: the floor and every first audio include it.
        assert results["tts_ttfa_floor_ms"] > 300 and results[f"tts_{mode}_ttfa_ms"] > 300
        assert results[f"tts_{mode}_ttfa_overhead_ms"] == pytest.approx(
            results[f"tts_{mode}_ttfa_ms"] - results["tts_ttfa_floor_ms"]
        )
        assert 0 < results[f"tts_{mode}_first_audio_p50_ms"] <= results[f"tts_{mode}_overhead_p50_ms"]
        assert results[f"tts_{mode}_overhead_p50_ms"] <= results[f"tts_{mode}_overhead_p95_ms"]
        # The two parts of a turn: up to the LLM's first text, and after it.
        before, after = results[f"tts_{mode}_to_first_delta_p50_ms"], results[f"tts_{mode}_after_first_delta_p50_ms"]
        assert 0 < before <= results[f"tts_{mode}_first_audio_p50_ms"] and after > 0
        assert after <= results[f"tts_{mode}_after_first_delta_p95_ms"]
        assert results[f"tts_{mode}_turns_per_s_2"] > 0
        # Worker threads: every job of a turn held one for a while; at most the worker's 8 busy at once.
        assert results[f"tts_{mode}_thread_ms_per_turn"] > 0
        assert 0 < results[f"tts_{mode}_threads_busy_2"] <= 8
