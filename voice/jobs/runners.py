"""The job bodies: recognition and synthesis. Run by Celery tasks in workers, or by threads in the
web process in the embedded default (voice.jobs.backends); either way results go to the requester
through `send`, one message at a time as they are produced (voice.jobs.messages lists them).

Every message carries `t`, the wall-clock time (time.time()) at which the job sent it.
"""

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from magicmirror.logging import log_context
from speakers.models import Speaker
from speakers.services import speaker_clone_record

from ..asr import ASRError, get_asr_engine
from ..audio import StreamResampler
from ..speech_text import for_the_ear, sentence_language
from ..text import split_sentences
from ..tts import TTSEngine, TTSError, VoiceRef
from ..tts.registry import engine_for
from . import backends, messages
from .audio_stream import AudioTimeout
from .sending import RequesterGone, Send

logger = logging.getLogger(__name__)

DEFAULT_RATE = 22050  # the rate of a job that speaks nothing (no engine speaks its language)


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
        version=speaker.voice_version,
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


@dataclass
class SpokenPart:
    """Consecutive sentences of a text that one engine speaks in one language."""

    engine: TTSEngine | None  # None: no engine speaks the language (shown, not spoken)
    language: str
    sentences: list[str] = field(default_factory=list)


def tts_route(text: str, language: str | None, engine_name=None) -> list[SpokenPart]:
    """`text` (already cleaned for the ear) cut into sentences, each routed to the first engine of the
    chain that speaks its language (voice.tts.registry.engine_for); consecutive sentences of one engine
    and language stay together, so an engine still gets whole runs of text to speak."""
    parts: list[SpokenPart] = []
    for sentence in split_sentences(text):
        lang = sentence_language(sentence, language)
        engine = engine_for(lang, engine_name)
        if parts and parts[-1].engine is engine and parts[-1].language == lang:
            parts[-1].sentences.append(sentence)
        else:
            parts.append(SpokenPart(engine, lang, [sentence]))
    return parts


@logged_job
def tts_run(
    *,
    send: Send,
    job_id: str,
    text: str,
    speaker_id=None,
    engine_name=None,
    language=None,
    cancelled: Callable[[], bool] | None = None,
) -> None:
    """Synthesise `text` and send it as tts.chunk messages (in order), then tts.done or tts.error.

    Each sentence goes to the first engine of the chain that speaks its language (from its script;
    `language`, the user's, breaks ties); a sentence none speaks is left out and listed in the done
    message's `unspoken`. Chunks hold at most VOICE_TTS_CHUNK_MS of audio each, all at the sample
    rate of the first engine that speaks (others are resampled), and go out as soon as the engine has
    produced them. A chunk says which piece of engine output it belongs to (`part`, from 0; for Piper
    one sentence) and when the engine produced that piece (`produced`, time.time()); the first chunk
    of each engine's run names the engine, voice and language, and the job's first chunk says when the
    job started (`started`: the time before it is queueing, the time after it synthesis).
    `cancelled()` is asked between pieces of engine output; when it says yes the job stops without
    another message (its requester is gone).
    """

    started = time.time()

    def emit(message: dict) -> None:
        send({**message, "job_id": job_id, "t": time.time()})

    try:
        # The limit is on the text as given; the engines read it for the ear (no markdown, emoji or
        # URLs), which may be longer. Nothing left (only an emoji): nothing is said. Already done for
        # a live reply's sentences: a no-op there. Numbers become words below, per engine.
        text = tts_text_clean(text)
        parts = tts_route(for_the_ear(text, language, numbers=False), language, engine_name)
        voice = voice_ref_get(speaker_id=speaker_id)
        rate = next((p.engine.rate(p.language) for p in parts if p.engine is not None), DEFAULT_RATE)
        max_bytes = chunk_bytes(rate)
        seq = samples = piece_index = 0
        spoken: list[dict] = []
        unspoken: list[dict] = []
        for part in parts:
            engine = part.engine
            if engine is None:
                unspoken += [{"text": s, "language": part.language} for s in part.sentences]
                continue
            info = engine.voice_info(voice, part.language)
            said = "\n".join(s if engine.reads_numbers else for_the_ear(s, part.language) for s in part.sentences)
            resample = StreamResampler(info.sample_rate, rate)
            described = {"engine": info.engine, "voice": info.voice, "clones": info.clones, "language": part.language}
            spoken.append({**described, "sentences": len(part.sentences)})
            first_of_part = True
            pieces = iter(engine.stream(said, voice, part.language))
            try:
                for pcm in pieces:
                    produced = time.time()  # when the engine handed this piece over (Piper: one sentence)
                    for piece in split_pcm(resample(pcm), max_bytes):
                        chunk = {
                            "type": messages.TTS_CHUNK,
                            "seq": seq,
                            "part": piece_index,
                            "produced": produced,
                            "pcm": piece,
                            "sample_rate": rate,
                        }
                        if first_of_part:  # who speaks is known before the audio: say it with the first chunk
                            chunk.update(described)
                            first_of_part = False
                        if seq == 0:
                            chunk["started"] = started
                        emit(chunk)
                        seq += 1
                        samples += len(piece) // 2
                    piece_index += 1
                    if cancelled is not None and cancelled():
                        logger.info("TTS job %s cancelled by its requester after %d chunks", job_id, seq)
                        return
            finally:
                close = getattr(pieces, "close", None)  # a generator: stop the engine's work now
                if close is not None:
                    close()
            if voice is not None and info.clones:  # the engine has registered this version: the admin shows it
                speaker_clone_record(speaker_id=voice.speaker_id, version=voice.version, engine=info.engine)
        if unspoken:
            logger.info("TTS job %s: no engine speaks %s", job_id, sorted({u["language"] for u in unspoken}))
        first = spoken[0] if spoken else {"engine": None, "voice": None, "clones": False, "language": None}
        if not parts:  # nothing to say (only an emoji): silence from the engine that would have spoken
            lang = sentence_language(text, language)
            silent = engine_for(lang, engine_name)
            if silent is not None:
                info = silent.voice_info(voice, lang)
                first = {"engine": info.engine, "voice": info.voice, "clones": info.clones, "language": lang}
        emit(
            {
                "type": messages.TTS_DONE,
                "chunks": seq,
                "samples": samples,
                "duration": samples / rate,
                "engine": first["engine"],
                "voice": first["voice"],
                "clones": first["clones"],
                "language": first["language"],
                "sample_rate": rate,
                "spoken": spoken,
                "unspoken": unspoken,
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
def asr_run(*, send: Send, job_id: str, phrases=None, language=None) -> None:
    """Recognise the audio arriving on the job's audio stream with the model of `language` (the user's
    "I speak"; default the site's); send partials, then the final transcript."""

    def emit(message: dict) -> None:
        send({**message, "job_id": job_id, "t": time.time()})

    try:
        engine = get_asr_engine(language)
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
