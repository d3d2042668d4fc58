"""The in-process inbox (voice.jobs.inbox.LocalInbox): its lock survives an abandoned reader being
finalised by the garbage collector while the lock is held (the full suite once hung there)."""

import asyncio
import threading

from voice.jobs.inbox import END, LocalInbox

WAIT = 30.0  # seconds, a bound only


def test_a_reader_finalised_while_the_lock_is_held_does_not_deadlock():
    inbox = LocalInbox("text")
    inbox.open("job-1")
    asyncio.run(inbox.put("job-1", b"first"))
    reader = inbox.items("job-1", idle_timeout=WAIT)
    assert next(reader) == b"first"  # suspended inside its try: its finally discards under the lock

    def finalised_inside_open():
        with inbox._lock:  # as in `open`, when an allocation there runs the garbage collector
            reader.close()

    thread = threading.Thread(target=finalised_inside_open, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "the reader's finally waited for a lock its own thread held"
    assert "job-1" not in inbox._queues


def test_items_end_at_the_end_marker_and_later_ones_are_dropped():
    inbox = LocalInbox("text")
    inbox.open("job-2")
    for item in (b"a", b"b", END):
        asyncio.run(inbox.put("job-2", item))
    assert list(inbox.items("job-2", idle_timeout=WAIT)) == [b"a", b"b"]
    asyncio.run(inbox.put("job-2", b"late"))  # the job has ended: nothing keeps it
    assert "job-2" not in inbox._queues
