"""Voice jobs: recognition and synthesis. Run by Celery tasks in workers, or by threads in the
web process in the embedded default; either way results go to the requester through `send`,
one message at a time as they are produced (see docs/architecture.md for the message types).

Every message carries `t`, the wall-clock time (time.time()) at which the job sent it.
"""

import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Callable

from channels.exceptions import ChannelFull
from django.conf import settings

from magicmirror.logging import log_context
from speakers.models import Speaker

from . import inbox
from .asr import ASRError, get_asr_engine
from .inbox import InboxTimeout, audio_chunks
from .tts import TTSError, VoiceRef, get_tts_engine

logger = logging.getLogger(__name__)

Send = Callable[[dict], None]


class RequesterGone(Exception):
    """The requester stopped listening (its channel stayed full, its event loop ended)."""


def new_job_id() -> str:
    return uuid.uuid4().hex


def patient_sender(send_once: Send, *, timeout: float) -> Send:
    """Wrap a channel-layer send so a full channel slows the job down instead of failing it.

    A requester that reads slowly makes the job wait (backpressure); one that has not read for
    `timeout` seconds is taken as gone: RequesterGone.
    """

    def send(message: dict) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                send_once(message)
                return
            except ChannelFull:
                if time.monotonic() >= deadline:
                    raise RequesterGone(f"The channel stayed full for {timeout:g} s.") from None
                time.sleep(delay)  # production back-off while the requester drains its channel
                delay = min(delay * 2, 0.1)

    return send


def logged_job(run):
    """A job runs inside `log_context(turn_id=..., job_id=...)` (its log lines name the turn that asked
    for it) and logs its start and end. `turn_id` is optional: when given, every message the job
    sends carries it too."""

    @functools.wraps(run)
    def job(*, send: Send, job_id: str, turn_id=None, **kwargs):
        if turn_id is not None:
            plain_send = send

            def send(message: dict) -> None:
                plain_send({**message, "turn_id": turn_id})

        with log_context(turn_id=turn_id, job_id=job_id):
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
        text = tts_text_clean(text)
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
                        "type": "voice.tts.chunk",
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
                "type": "voice.tts.done",
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
        _send_error(emit, "voice.tts.error", exc.code, str(exc))
    except Exception:
        logger.exception("TTS job %s failed", job_id)
        _send_error(emit, "voice.tts.error", "tts_failed", "Speech synthesis failed.")


@logged_job
def asr_run(*, send: Send, job_id: str, phrases=None) -> None:
    """Recognise the audio arriving in the job's inbox; send partials, then the final transcript."""

    def emit(message: dict) -> None:
        send({**message, "job_id": job_id, "t": time.time()})

    try:
        engine = get_asr_engine()
        with engine.open_stream(phrases or None) as stream:
            for pcm in audio_chunks(job_id, idle_timeout=settings.VOICE_JOB_IDLE_TIMEOUT):
                partial = stream.accept(pcm)
                if partial is not None:
                    emit({"type": "voice.asr.partial", "text": partial})
            text = stream.finish()
        emit({"type": "voice.asr.final", "text": text})
    except RequesterGone as exc:
        logger.info("ASR job %s stopped: its requester is gone (%s)", job_id, exc)
    except InboxTimeout:
        _send_error(emit, "voice.asr.error", "asr_audio_timeout", "No audio arrived in time.")
    except ASRError as exc:
        _send_error(emit, "voice.asr.error", exc.code, str(exc))
    except Exception:
        logger.exception("ASR job %s failed", job_id)
        _send_error(emit, "voice.asr.error", "asr_failed", "Speech recognition failed.")
    finally:
        with contextlib.suppress(Exception):
            inbox.discard(job_id)  # audio that arrived after a failure must not linger


def _send_error(emit, type_, code, message) -> None:
    try:
        emit({"type": type_, "code": code, "message": message})
    except Exception as exc:  # the requester is unreachable too: nothing more to do
        logger.info("Could not report %s to the requester: %s", code, exc)
