"""The embedded default runs the voice jobs in the web process: daphne loads and warms their engines
in the background as it starts (VOICE_PRELOAD_IN_PROCESS), before any request, so the first user's
first words do not wait for the models."""

import os

import pytest

from devtools.localprocs import child_env, serving_daphne, wait_until


@pytest.mark.skipif(bool(os.environ.get("REDIS_URL")), reason="jobs run in the web process only without Redis")
def test_daphne_loads_the_engines_as_it_starts(tmp_path):
    env = child_env(
        VOICE_PRELOAD_IN_PROCESS="true",
        VOICE_JOBS_IN_PROCESS="true",
        LOG_LEVEL="INFO",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",  # never opened: no request is made
    )
    log = tmp_path / "daphne.log"
    with serving_daphne(env, log):
        ready = wait_until(
            lambda: next((line for line in log.read_text().splitlines() if "Voice engines ready" in line), None),
            timeout=240,  # a bound for a loaded machine: Vosk, Piper and espeak-ng load and warm up
            what="the engines to load in the web process",
        )
    assert "'engine': 'vosk'" in ready and "'tts': {'engine':" in ready
    assert "GET " not in log.read_text()  # no request was needed for it
