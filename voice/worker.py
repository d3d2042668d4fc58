"""Worker start-up: load the engines a worker serves once, at process start, and warm them."""

import logging

from celery.signals import worker_process_init, worker_ready
from django.conf import settings

logger = logging.getLogger(__name__)


def preload_engines(parts=None) -> dict:
    """Load (and warm) the ASR and/or TTS engines of this process; returns what was loaded."""
    from .asr import get_asr_engine
    from .tts import get_tts_engine

    loaded = {}
    parts = settings.VOICE_PRELOAD if parts is None else parts
    if "asr" in parts:
        engine = get_asr_engine()
        engine.warm_up()
        loaded["asr"] = engine.describe()
    if "tts" in parts:
        engine = get_tts_engine()
        engine.warm_up()
        loaded["tts"] = engine.describe()
    logger.info("Voice engines ready: %s", loaded)
    return _record(loaded)


@worker_process_init.connect
def _preload_in_child(**kwargs):  # prefork children
    preload_engines()


@worker_ready.connect
def _preload_in_main(sender=None, **kwargs):  # solo and threads pools run tasks in the main process
    pool = getattr(getattr(sender, "pool_cls", None), "__module__", "")
    if "prefork" not in pool:
        preload_engines()


LOADED: dict = {}


def _record(loaded):
    LOADED.update(loaded)
    return loaded


try:
    from celery.worker.control import inspect_command

    @inspect_command()
    def voice_engines(state):
        """`celery inspect voice_engines`: the engines this worker has loaded."""
        return {"engines": LOADED, "preload": list(settings.VOICE_PRELOAD)}

except ImportError:  # pragma: no cover - celery without the worker extras
    pass
