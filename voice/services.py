"""Voice jobs: recognition and synthesis. Run by Celery tasks in workers, or by threads in the
web process in the embedded default; either way results go to the requester through `send`,
one message at a time as they are produced (see docs/architecture.md for the message types).
"""

import logging
import uuid
from collections.abc import Callable

from django.conf import settings

from speakers.models import Speaker

from .asr import ASRError, get_asr_engine
from .inbox import InboxTimeout, audio_chunks
from .tts import TTSError, VoiceRef, get_tts_engine

logger = logging.getLogger(__name__)

Send = Callable[[dict], None]


def new_job_id() -> str:
    return uuid.uuid4().hex


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


def split_pcm(pcm: bytes, max_bytes: int):
    for start in range(0, len(pcm), max_bytes):
        yield pcm[start : start + max_bytes]


def tts_run(*, send: Send, job_id: str, text: str, speaker_id=None, engine_name=None) -> None:
    """Synthesise `text` and send it as tts.chunk messages (in order), then tts.done or tts.error."""
    try:
        text = (text or "").strip()
        if not text:
            raise TTSError("There is no text to speak.", code="tts_empty_text")
        if len(text) > settings.TTS_MAX_CHARS:
            raise TTSError(f"The text is longer than {settings.TTS_MAX_CHARS} characters.", code="tts_text_too_long")
        engine = get_tts_engine(engine_name)
        voice = voice_ref_get(speaker_id=speaker_id)
        info = engine.voice_info(voice)
        max_bytes = max(2, engine.sample_rate * settings.VOICE_TTS_CHUNK_MS // 1000 * 2)
        seq = 0
        for pcm in engine.stream(text, voice):
            for piece in split_pcm(pcm, max_bytes):
                send({"type": "voice.tts.chunk", "job_id": job_id, "seq": seq, "pcm": piece, "sample_rate": engine.sample_rate})
                seq += 1
        send(
            {
                "type": "voice.tts.done",
                "job_id": job_id,
                "chunks": seq,
                "engine": info.engine,
                "voice": info.voice,
                "clones": info.clones,
                "sample_rate": info.sample_rate,
            }
        )
    except TTSError as exc:
        send({"type": "voice.tts.error", "job_id": job_id, "code": exc.code, "message": str(exc)})
    except Exception:
        logger.exception("TTS job %s failed", job_id)
        send({"type": "voice.tts.error", "job_id": job_id, "code": "tts_failed", "message": "Speech synthesis failed."})


def asr_run(*, send: Send, job_id: str, phrases=None) -> None:
    """Recognise the audio arriving in the job's inbox; send partials, then the final transcript."""
    try:
        engine = get_asr_engine()
        with engine.open_stream(phrases or None) as stream:
            for pcm in audio_chunks(job_id, idle_timeout=settings.VOICE_JOB_IDLE_TIMEOUT):
                partial = stream.accept(pcm)
                if partial is not None:
                    send({"type": "voice.asr.partial", "job_id": job_id, "text": partial})
            text = stream.finish()
        send({"type": "voice.asr.final", "job_id": job_id, "text": text})
    except InboxTimeout:
        send({"type": "voice.asr.error", "job_id": job_id, "code": "asr_audio_timeout", "message": "No audio arrived in time."})
    except ASRError as exc:
        send({"type": "voice.asr.error", "job_id": job_id, "code": exc.code, "message": str(exc)})
    except Exception:
        logger.exception("ASR job %s failed", job_id)
        send({"type": "voice.asr.error", "job_id": job_id, "code": "asr_failed", "message": "Speech recognition failed."})
