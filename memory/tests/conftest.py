import asyncio

import pytest


class MemoryJobs:
    """The background jobs the turns of a test started (memory.jobs.start), to wait for."""

    def __init__(self):
        self.handles = []

    def _wait_all(self, timeout):
        results = []
        while self.handles:
            handle = self.handles.pop(0)
            # A Future (in-process) or a Celery AsyncResult (workers: the result backend, Redis).
            results.append(handle.result(timeout) if hasattr(handle, "done") else handle.get(timeout=timeout))
        return results

    async def wait(self, timeout=30):
        """What each job did (memory.services.conversation_after_turn), oldest first."""
        return await asyncio.to_thread(self._wait_all, timeout)


@pytest.fixture
def memory_jobs(request, settings, monkeypatch, fake_llm):
    """Memory and summaries on (the test settings turn them off elsewhere), and their jobs recorded;
    with Redis configured they run on a real Celery worker (default queue), else in this process."""
    from memory import jobs

    settings.MEMORY_ENABLED = True
    settings.MEMORY_SUMMARIES = True
    if not settings.MEMORY_JOBS_IN_PROCESS:
        request.getfixturevalue("celery_worker_process")
    recorder = MemoryJobs()
    real_start = jobs.start

    def start(kwargs):
        handle = real_start(kwargs)
        recorder.handles.append(handle)
        return handle

    monkeypatch.setattr(jobs, "start", start)
    yield recorder
    recorder._wait_all(30)  # none outlives the test's database
