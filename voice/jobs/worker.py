"""Worker start-up: load the engines a worker serves once, at process start, and warm them.

Prefork children load in `worker_process_init`; the solo and threads pools run tasks in the main
process, which loads in `worker_ready` (before the worker answers its first ping). The
`voice_engines` inspect command reports what a worker holds:
`celery -A magicmirror inspect voice_engines`.
"""

import contextlib
import logging
import os
import threading

from celery.concurrency.thread import TaskPool as ThreadTaskPool
from celery.signals import worker_process_init, worker_ready
from django.conf import settings

logger = logging.getLogger(__name__)

LOADED: dict = {}  # what this process has loaded: {"asr": {...}, "tts": {...}, "errors": {...}}
_preloaded = False
_preload_lock = threading.Lock()


def preload_engines(parts=None) -> dict:
    """Load (and warm) the ASR and/or TTS engines of this process; returns what was loaded.

    A part that fails to load is logged and reported under `errors` rather than stopping the
    worker: its jobs then answer with the engine's error code.
    """
    from ..asr import get_asr_engine
    from ..tts import get_tts_engine

    loaded, errors = {}, {}
    parts = settings.VOICE_PRELOAD if parts is None else parts
    for part, get in (("asr", get_asr_engine), ("tts", get_tts_engine)):
        if part not in parts:
            continue
        try:
            engine = _warm(part, get)
            description = engine.describe()
            if part == "tts":  # and the engine of each language the site speaks, not only the chain's first
                description["by_language"] = _warm_languages(engine)
        except Exception as exc:
            logger.exception("Could not load the %s engine", part)
            errors[part] = str(exc)
            continue
        loaded[part] = description
    logger.info("Voice engines ready: %s", loaded)
    LOADED.update(loaded)
    if errors:
        LOADED["errors"] = {**LOADED.get("errors", {}), **errors}
    return loaded


def _warm(part, get):
    """Load and warm the engine; a TTS engine that fails here gives way to the next in the chain."""
    from ..tts.registry import mark_failed

    while True:
        engine = get()
        try:
            engine.warm_up()
        except Exception as exc:
            if part != "tts":
                raise
            logger.exception("TTS engine %s failed to warm up; trying the next in VOICE_TTS_ENGINES", engine.name)
            mark_failed(engine, exc)  # get() raises TTSError once no engine is left
            continue
        return engine


def _warm_languages(first) -> dict[str, str | None]:
    """Load and warm, for each configured language, the engine of the chain that speaks it (the first
    that loads may speak only some: Piper English beside espeak-ng Mandarin). Language -> engine name,
    None where no engine speaks it."""
    from ..tts.registry import configured_languages, engine_for, mark_failed

    warmed = {first.name}
    chosen: dict[str, str | None] = {}
    for language in configured_languages():
        while True:
            engine = engine_for(language)
            if engine is None or engine.name in warmed:
                break
            try:
                engine.warm_up()
            except Exception as exc:
                logger.exception("TTS engine %s failed to warm up; trying the next for %s", engine.name, language)
                mark_failed(engine, exc)
                continue
            warmed.add(engine.name)
            break
        chosen[language] = engine.name if engine is not None else None
    return chosen


def preload_in_background() -> threading.Thread:
    """Load the engines in a daemon thread (the web process of the embedded default, where the jobs
    run): the process serves at once, and a job that comes first waits only for its own engine."""
    thread = threading.Thread(target=_preload_once, name="voice-preload", daemon=True)
    thread.start()
    return thread


def _preload_once():
    global _preloaded
    with _preload_lock:
        if _preloaded:
            return
        _preloaded = True
    preload_engines()


@worker_process_init.connect
def _preload_in_child(**kwargs):  # prefork children (and the solo pool, in the main process)
    _preload_once()


@worker_ready.connect
def _preload_in_main(sender=None, **kwargs):  # sender: the worker's Consumer
    pool = getattr(sender, "pool", None)
    if "prefork" not in type(pool).__module__:
        _preload_once()


# A threads-pool worker acknowledges a finished job in the job's thread, which does not wake the
# worker's event loop; with every thread busy (its prefetch is full) the next queued job was then fetched
# only at the loop's next wake-up, up to 1 s later (celery/celery#6941): turn streams started in batches
# 1-2 s apart with 16 sessions on 8 threads. So each job, once it has ended and been acknowledged, writes
# a byte to a pipe the loop reads: the loop wakes then, and only then (an idle worker stays asleep).
@worker_ready.connect
def _wake_loop_when_jobs_end(sender=None, **kwargs):  # sender: the worker's Consumer
    hub, pool = getattr(sender, "hub", None), getattr(sender, "pool", None)
    if hub is None or not isinstance(pool, ThreadTaskPool):
        return  # no event loop, or a pool that wakes it itself (prefork's result pipes; solo blocks in it)
    wakeup = LoopWakeup(hub)
    apply = pool.on_apply

    def on_apply(*args, **kwargs):
        result = apply(*args, **kwargs)
        # Called in the job's thread after apply_target has run the job and its callback (the ack).
        result.f.add_done_callback(wakeup.wake)
        return result

    pool.on_apply = on_apply


class LoopWakeup:
    """A self-pipe in the worker's event loop: `wake()`, from any thread, makes the loop run once."""

    def __init__(self, hub) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        hub.add_reader(self._read, self._drain)

    def wake(self, *_: object) -> None:
        with contextlib.suppress(BlockingIOError):  # full: the loop has wake-ups enough to read
            os.write(self._write, b"\0")

    def _drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass


try:
    from celery.worker.control import inspect_command

    @inspect_command()
    def voice_engines(state):
        """`celery inspect voice_engines`: the engines this worker has loaded."""
        return {"engines": LOADED, "preload": list(settings.VOICE_PRELOAD)}

except ImportError:  # pragma: no cover - celery without the worker extras
    pass
