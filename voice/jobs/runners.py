"""The job bodies: recognition and synthesis. Run by Celery tasks in workers, or by threads in the
web process in the embedded default (voice.jobs.backends); either way results go to the requester
through `send`, one message at a time as they are produced (voice.jobs.messages lists them).

Every message carries `t`, the wall-clock time (time.time()) at which the job sent it.
"""

import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable

from django.conf import settings

from magicmirror.logging import log_context
from speakers.models import Speaker

from ..asr import ASRError, get_asr_engine
from ..speech_text import for_the_ear
from ..tts import TTSError, VoiceRef, get_tts_engine
from . import backends, messages
from .audio_stream import AudioTimeout
from .sending import RequesterGone, Send

logger = logging.getLogger(__name__)


def logged_job(run):
    """A job runs inside `log_context(trace_id=..., job_id=...)` (its log lines name the turn that asked
    for it) and logs its start and end. `trace_id` is optional: when given, every message the job
    sends carries it too."""

    @functools.wraps(run)
    def job(*, send: Send, job_id: str, trace_id=None, **kwargs):
        if trace_id is not None:
            plain_send = send

            def send(message: dict) -> None:
                plain_send({**message, "trace_id": trace_id})

        with log_context(trace_id=trace_id, job_id=job_id):
            started = time.monotonic()
            logger.info("Voice job %s started (%s)", job_id, run.__name__)
            try:
                return run(send=send, job_id=job_id, **kwargs)
            finally:
                logger.info("Voice job %s ended after %.3f s", job_id, time.monotonic() - started)

    return job


def voice_ref_from_speaker(speaker: Speaker) -> VoiceRef:
    return VoiceRef(
        speaker_id=speaker.pk,
        name=speaker.name,
        prompt_text=speaker.prompt_text,
        audio_path=speaker.audio.path,
        # The stored file name changes whenever the audio is replaced.
        version=uuid.uuid5(uuid.NAMESPACE_URL, f"{speaker.audio.name}|{speaker.prompt_text}").hex[:12],
    )


def voice_ref_get(*, speaker_id) -> VoiceRef | None:
    if speaker_id is None:
        return None
    speaker = Speaker.objects.filter(pk=speaker_id).first()
    if speaker is None:
        raise TTSError("The speaker no longer exists.", code="speaker_not_found")
    return voice_ref_from_speaker(speaker)


def tts_text_clean(text) -> str:
    """The text to speak, stripped; TTSError when it is empty or longer than TTS_MAX_CHARS."""
    text = (text or "").strip() if isinstance(text, str) else ""
    if not text:
        raise TTSError("There is no text to speak.", code="tts_empty_text")
    if len(text) > settings.TTS_MAX_CHARS:
        raise TTSError(f"The text is longer than {settings.TTS_MAX_CHARS} characters.", code="tts_text_too_long")
    return text


def split_pcm(pcm: bytes, max_bytes: int):
    max_bytes -= max_bytes % 2  # never split a sample
    for start in range(0, len(pcm), max_bytes):
        yield pcm[start : start + max_bytes]


def chunk_bytes(sample_rate: int) -> int:
    """Bytes of PCM16 mono in VOICE_TTS_CHUNK_MS milliseconds (at least one sample)."""
    return max(2, sample_rate * settings.VOICE_TTS_CHUNK_MS // 1000 * 2)


@logged_job
def tts_run(
    *,
    send: Send,
    job_id: str,
    text: str,
    speaker_id=None,
    engine_name=None,
    cancelled: Callable[[], bool] | None = None,
) -> None:
    """Synthesise `text` and send it as tts.chunk messages (in order), then tts.done or tts.error.

    Chunks hold at most VOICE_TTS_CHUNK_MS of audio each and go out as soon as the engine has
    produced them. A chunk says which piece of engine output it belongs to (`part`, from 0; for
    Piper one sentence) and when the engine produced that piece (`produced`, time.time()); the
    first chunk also names the engine and voice, and says when the job started (`started`: the
    time before it is queueing, the time after it synthesis). `cancelled()` is asked between pieces of engine
    output; when it says yes the job stops without another message (its requester is gone).
    """

    started = time.time()

    def emit(message: dict) -> None:
        send({**message, "job_id": job_id, "t": time.time()})

    try:
        # The limit is on the text as given; the engine reads it for the ear (no markdown, emoji or
        # URLs; numbers as words), which may be longer. Nothing left (only an emoji): the engine gets
        # the text as it is and says nothing. Already done for a live reply's sentences: a no-op there.
        text = tts_text_clean(text)
        text = for_the_ear(text) or text
        engine = get_tts_engine(engine_name)
        voice = voice_ref_get(speaker_id=speaker_id)
        info = engine.voice_info(voice)
        max_bytes = chunk_bytes(engine.sample_rate)
        seq = samples = 0
        pieces = iter(engine.stream(text, voice))
        try:
            for part, pcm in enumerate(pieces):
                produced = time.time()  # when the engine handed this piece over (Piper: one sentence)
                for piece in split_pcm(pcm, max_bytes):
                    chunk = {
                        "type": messages.TTS_CHUNK,
                        "seq": seq,
                        "part": part,
                        "produced": produced,
                        "pcm": piece,
                        "sample_rate": engine.sample_rate,
                    }
                    if seq == 0:  # who speaks is known before the audio: say it with the first chunk
                        chunk.update(engine=info.engine, voice=info.voice, clones=info.clones, started=started)
                    emit(chunk)
                    seq += 1
                    samples += len(piece) // 2
                if cancelled is not None and cancelled():
                    logger.info("TTS job %s cancelled by its requester after %d chunks", job_id, seq)
                    return
        finally:
            close = getattr(pieces, "close", None)  # a generator: stop the engine's work now
            if close is not None:
                close()
        emit(
            {
                "type": messages.TTS_DONE,
                "chunks": seq,
                "samples": samples,
                "duration": samples / engine.sample_rate,
                "engine": info.engine,
                "voice": info.voice,
                "clones": info.clones,
                "sample_rate": info.sample_rate,
            }
        )
    except RequesterGone as exc:
        logger.info("TTS job %s stopped: its requester is gone (%s)", job_id, exc)
    except TTSError as exc:
        _send_error(emit, messages.TTS_ERROR, exc.code, str(exc))
    except Exception:
        logger.exception("TTS job %s failed", job_id)
        _send_error(emit, messages.TTS_ERROR, "tts_failed", "Speech synthesis failed.")


@logged_job
def asr_run(*, send: Send, job_id: str, phrases=None) -> None:
    """Recognise the audio arriving on the job's audio stream; send partials, then the final transcript."""

    def emit(message: dict) -> None:
        send({**message, "job_id": job_id, "t": time.time()})

    try:
        engine = get_asr_engine()
        with engine.open_stream(phrases or None) as stream:
            audio = backends.current().audio
            for pcm in audio.chunks(job_id, idle_timeout=settings.VOICE_JOB_IDLE_TIMEOUT):
                partial = stream.accept(pcm)
                if partial is not None:
                    emit({"type": messages.ASR_PARTIAL, "text": partial})
            text = stream.finish()
        emit({"type": messages.ASR_FINAL, "text": text})
    except RequesterGone as exc:
        logger.info("ASR job %s stopped: its requester is gone (%s)", job_id, exc)
    except AudioTimeout:
        _send_error(emit, messages.ASR_ERROR, "asr_audio_timeout", "No audio arrived in time.")
    except ASRError as exc:
        _send_error(emit, messages.ASR_ERROR, exc.code, str(exc))
    except Exception:
        logger.exception("ASR job %s failed", job_id)
        _send_error(emit, messages.ASR_ERROR, "asr_failed", "Speech recognition failed.")
    finally:
        with contextlib.suppress(Exception):
            backends.current().audio.discard(job_id)  # audio that arrived after a failure must not linger


def _send_error(emit, type_, code, message) -> None:
    try:
        emit({"type": type_, "code": code, "message": message})
    except Exception as exc:  # the requester is unreachable too: nothing more to do
        logger.info("Could not report %s to the requester: %s", code, exc)


def runner(kind: str):
    """The body of a `kind` ("tts" or "asr") job (looked up at each call, so tests can replace one)."""
    return {"tts": tts_run, "asr": asr_run}[kind]
