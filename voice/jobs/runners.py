"""The job bodies: recognition and synthesis. Run by Celery tasks in workers, or by threads in the
web process in the embedded default (voice.jobs.backends); either way results go to the requester
through `send`, one message at a time as they are produced (voice.jobs.messages lists them).

Every message carries `t`, the wall-clock time (time.time()) at which the job sent it.
"""

import contextlib
import functools
import itertools
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings

from magicmirror.logging import log_context
from speakers.models import Speaker
from speakers.services import speaker_clone_record

from ..asr import ASRError, get_asr_engine
from ..audio import StreamResampler
from ..speech_text import for_the_ear, sentence_language
from ..text import is_chinese, split_sentences, word_cut_point
from ..tts import TTSEngine, TTSError, VoiceRef
from ..tts.registry import engine_for
from . import backends, messages
from .inbox import InboxTimeout
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


class Cancelled(Exception):
    """The requester asked the job to stop (it is gone, or the turn was interrupted)."""


class VoiceRefs:
    """The voices of one job, read once each (a turn's stream speaks many sentences in one voice)."""

    def __init__(self) -> None:
        self._refs: dict = {}

    def get(self, speaker_id) -> VoiceRef | None:
        if speaker_id not in self._refs:
            self._refs[speaker_id] = voice_ref_get(speaker_id=speaker_id)
        return self._refs[speaker_id]


class ChunkWriter:
    """Engine output as tts.chunk messages, numbered in order, each at most VOICE_TTS_CHUNK_MS of audio,
    all at one sample rate (an engine of another rate is resampled); `done` gives the done fields."""

    def __init__(self, emit: Callable[[dict], None], rate: int, *, tag: dict, started: float, cancelled=None):
        self.emit, self.rate, self.tag, self.started, self.cancelled = emit, rate, tag, started, cancelled
        self.max_bytes = chunk_bytes(rate)
        self.seq = self.samples = self.piece_index = 0

    def write(self, pieces: Iterator[bytes], engine_rate: int, described: dict) -> None:
        """One engine's run of output; its first chunk says who speaks (`described`). Raises Cancelled
        when `cancelled()` says so between pieces; the engine's generator is closed either way."""
        resample = StreamResampler(engine_rate, self.rate)
        first_of_part = True
        try:
            for pcm in pieces:
                produced = time.time()  # when the engine handed this piece over (Piper: one sentence)
                for piece in split_pcm(resample(pcm), self.max_bytes):
                    chunk = {
                        "type": messages.TTS_CHUNK,
                        **self.tag,
                        "seq": self.seq,
                        "part": self.piece_index,
                        "produced": produced,
                        "pcm": piece,
                        "sample_rate": self.rate,
                    }
                    if first_of_part:  # who speaks is known before the audio: say it with the first chunk
                        chunk.update(described)
                        first_of_part = False
                    if self.seq == 0:
                        chunk["started"] = self.started
                    self.emit(chunk)
                    self.seq += 1
                    self.samples += len(piece) // 2
                self.piece_index += 1
                if self.cancelled is not None and self.cancelled():
                    raise Cancelled(f"after {self.seq} chunks")
        finally:
            close = getattr(pieces, "close", None)  # a generator: stop the engine's work now
            if close is not None:
                close()

    def done(self, first: dict, spoken: list[dict], unspoken: list[dict]) -> dict:
        return {
            **self.tag,
            "chunks": self.seq,
            "samples": self.samples,
            "duration": self.samples / self.rate,
            "engine": first["engine"],
            "voice": first["voice"],
            "clones": first["clones"],
            "language": first["language"],
            "sample_rate": self.rate,
            "spoken": spoken,
            "unspoken": unspoken,
        }


def speak_text(
    emit: Callable[[dict], None],
    text: str,
    *,
    voice: VoiceRef | None,
    language=None,
    engine_name=None,
    cancelled: Callable[[], bool] | None = None,
    tag: dict | None = None,
    started: float | None = None,
) -> dict:
    """Synthesise `text` and emit it as tts.chunk messages (in order, each with `tag`'s fields); returns
    the fields of its done message. Raises TTSError, and Cancelled when `cancelled()` says so.

    Each sentence goes to the first engine of the chain that speaks its language (from its script;
    `language`, the user's, breaks ties); a sentence none speaks is left out and listed in `unspoken`.
    Chunks hold at most VOICE_TTS_CHUNK_MS of audio each, all at the sample rate of the first engine
    that speaks (others are resampled), and go out as soon as the engine has produced them. A chunk says
    which piece of engine output it belongs to (`part`, from 0; for Piper one sentence) and when the
    engine produced that piece (`produced`, time.time()); the first chunk of each engine's run names the
    engine, voice and language, and the first chunk says when the work started (`started`: for a job,
    the time before it is queueing, the time after it synthesis). `cancelled()` is asked between pieces
    of engine output.
    """
    started = time.time() if started is None else started
    tag = tag or {}
    # The limit is on the text as given; the engines read it for the ear (no markdown, emoji or
    # URLs), which may be longer. Nothing left (only an emoji): nothing is said. Already done for
    # a live reply's sentences: a no-op there. Numbers become words below, per engine.
    text = tts_text_clean(text)
    parts = tts_route(for_the_ear(text, language, numbers=False), language, engine_name)
    rate = next((p.engine.rate(p.language) for p in parts if p.engine is not None), DEFAULT_RATE)
    writer = ChunkWriter(emit, rate, tag=tag, started=started, cancelled=cancelled)
    spoken: list[dict] = []
    unspoken: list[dict] = []
    for part in parts:
        engine = part.engine
        if engine is None:
            unspoken += [{"text": s, "language": part.language} for s in part.sentences]
            continue
        info = engine.voice_info(voice, part.language)
        said = "\n".join(s if engine.reads_numbers else for_the_ear(s, part.language) for s in part.sentences)
        described = {"engine": info.engine, "voice": info.voice, "clones": info.clones, "language": part.language}
        spoken.append({**described, "sentences": len(part.sentences)})
        writer.write(engine.stream(said, voice, part.language), info.sample_rate, described)
        if voice is not None and info.clones:  # the engine has registered this version: the admin shows it
            speaker_clone_record(speaker_id=voice.speaker_id, version=voice.version, engine=info.engine)
    if unspoken:
        logger.info("No engine speaks %s", sorted({u["language"] for u in unspoken}))
    first = spoken[0] if spoken else {"engine": None, "voice": None, "clones": False, "language": None}
    if not parts:  # nothing to say (only an emoji): silence from the engine that would have spoken
        lang = sentence_language(text, language)
        silent = engine_for(lang, engine_name)
        if silent is not None:
            info = silent.voice_info(voice, lang)
            first = {"engine": info.engine, "voice": info.voice, "clones": info.clones, "language": lang}
    return writer.done(first, spoken, unspoken)


# Enough of a sentence's start to tell its language by its script, and so its engine.
LANGUAGE_HEAD_CHARS = 8


def ear_pieces(pieces: Iterable[str], language: str) -> Iterator[str]:
    """A sentence's pieces, as written, read for the ear (`for_the_ear`: no markdown, emoji or URLs)
    whole word by whole word, so a URL or an emphasis is never cut in two; the space after a word is
    kept. TTSError once the text passes TTS_MAX_CHARS."""
    chinese, buffer, length = language == "zh", "", 0
    for piece in pieces:
        length += len(piece)
        if length > settings.TTS_MAX_CHARS:
            raise TTSError(f"The text is longer than {settings.TTS_MAX_CHARS} characters.", code="tts_text_too_long")
        buffer += piece
        chinese = chinese or any(is_chinese(char) for char in piece)
        cut = word_cut_point(buffer, chinese)
        if cut:
            words, buffer = buffer[:cut], buffer[cut:]
            if said := for_the_ear(words, language, numbers=False):
                yield said + (" " if words[-1].isspace() else "")
    if said := for_the_ear(buffer, language, numbers=False):
        yield said


def speak_as_written(
    emit: Callable[[dict], None],
    pieces: Iterator[str],
    *,
    voice: VoiceRef | None,
    language=None,
    engine_name=None,
    cancelled: Callable[[], bool] | None = None,
    tag: dict | None = None,
) -> dict:
    """Speak ONE sentence whose text arrives in `pieces` while the LLM writes it (a turn's stream).

    Its first LANGUAGE_HEAD_CHARS tell its language, and so its engine: an engine that reads text as
    it is written (`takes_text_stream`: CosyVoice2 without vLLM) starts speaking now; any other waits
    for the whole sentence and speaks it as `speak_text` does. Returns the done fields (`as_written`:
    whether the engine read it as written)."""
    started, tag = time.time(), tag or {}
    head = ""
    for piece in pieces:
        head += piece
        if len(head.strip()) >= LANGUAGE_HEAD_CHARS:
            break
    lang = sentence_language(head, language)
    engine = engine_for(lang, engine_name) if head.strip() else None
    if engine is None or not engine.takes_text_stream:
        text = head + "".join(pieces)
        if not text.strip():  # nothing written after all: no error, no audio
            return {
                **ChunkWriter(emit, DEFAULT_RATE, tag=tag, started=started).done(_NOBODY, [], []),
                "as_written": False,
            }
        done = speak_text(
            emit,
            text,
            voice=voice,
            language=language,
            engine_name=engine_name,
            cancelled=cancelled,
            tag=tag,
            started=started,
        )
        return {**done, "as_written": False}
    info = engine.voice_info(voice, lang)
    writer = ChunkWriter(emit, engine.rate(lang), tag=tag, started=started, cancelled=cancelled)
    described = {"engine": info.engine, "voice": info.voice, "clones": info.clones, "language": lang}
    writer.write(
        engine.stream_text(ear_pieces(itertools.chain([head], pieces), lang), voice, lang), info.sample_rate, described
    )
    if voice is not None and info.clones:
        speaker_clone_record(speaker_id=voice.speaker_id, version=voice.version, engine=info.engine)
    return {**writer.done(described, [{**described, "sentences": 1}], []), "as_written": True}


_NOBODY = {"engine": None, "voice": None, "clones": False, "language": None}


class SentencePieces:
    """The pieces of one sentence fed to a stream as it is written: the first item's text, then each
    following item's, up to the item without `more` (the sentence's end). Read by the engine (maybe
    from a thread of its own); `drain()` reads what it left, so the stream goes on at the next sentence."""

    def __init__(self, first: dict, items: Iterator[dict]):
        self._first, self._items = first, items
        self.ended = not first.get("more")
        self._started = False
        self._lock = threading.Lock()

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        with self._lock:
            if not self._started:
                self._started = True
                return self._first.get("text", "")
            if self.ended:
                raise StopIteration
            item = next(self._items, None)
            if item is None:  # the inbox ended mid-sentence (the stream was cancelled)
                self.ended = True
                raise StopIteration
            if item.get("sentence") != self._first["sentence"]:
                raise TTSError("A sentence's text was interleaved with another's.", code="tts_failed")
            self.ended = not item.get("more")
            return item.get("text", "")

    def drain(self) -> None:
        for _ in self:
            pass


def _job_emit(send: Send, job_id: str) -> Callable[[dict], None]:
    def emit(message: dict) -> None:
        send({**message, "job_id": job_id, "t": time.time()})

    return emit


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
    """Synthesise `text` (speak_text) and send it as tts.chunk messages (in order), then tts.done or
    tts.error. When `cancelled()` says yes the job stops without another message (its requester is gone).
    """
    started = time.time()
    emit = _job_emit(send, job_id)
    try:
        voice = voice_ref_get(speaker_id=speaker_id)
        done = speak_text(
            emit, text, voice=voice, language=language, engine_name=engine_name, cancelled=cancelled, started=started
        )
        emit({"type": messages.TTS_DONE, **done})
    except Cancelled as exc:
        logger.info("TTS job %s cancelled by its requester %s", job_id, exc)
    except RequesterGone as exc:
        logger.info("TTS job %s stopped: its requester is gone (%s)", job_id, exc)
    except TTSError as exc:
        _send_error(emit, messages.TTS_ERROR, exc.code, str(exc))
    except Exception:
        logger.exception("TTS job %s failed", job_id)
        _send_error(emit, messages.TTS_ERROR, "tts_failed", "Speech synthesis failed.")


def stream_items(job_id: str) -> Generator[dict, None, None]:
    """The sentences a turn's requester feeds its synthesis stream (voice.jobs.stream), in order."""
    inbox = backends.current().text
    for item in inbox.items(job_id, idle_timeout=settings.VOICE_TTS_STREAM_IDLE_TIMEOUT):
        yield json.loads(item)


def reads_as_written(language, engine_name=None) -> bool:
    """Whether the engine that would speak `language` here reads a sentence as it is written (the
    requester then feeds it text as the LLM writes it). False when none loads: the first sentence says why."""
    try:
        engine = engine_for(sentence_language("", language), engine_name)
    except TTSError:
        return False
    return engine is not None and engine.takes_text_stream


@logged_job
def tts_stream_run(
    *,
    send: Send,
    job_id: str,
    speaker_id=None,
    engine_name=None,
    language=None,
    cancelled: Callable[[], bool] | None = None,
) -> None:
    """A turn's synthesis stream: speak each sentence fed to the job's inbox, in order, until its end.

    Sends tts.opened at once (the requester then knows a worker holds the stream), then per sentence
    its chunks and a tts.sentence_done, each tagged with the requester's `sentence` key, and at the end
    tts.closed. A sentence may name another voice or language than the stream's (a tool changed the
    voice mid-reply). An error (an engine's, a speaker that is gone) ends the stream with tts.error,
    tagged with the sentence it happened in. Nothing fed for VOICE_TTS_STREAM_IDLE_TIMEOUT: the requester
    is gone, the stream ends without a word; so does a cancelled one.
    """
    emit = _job_emit(send, job_id)
    voices = VoiceRefs()
    sentence = None
    items = None
    try:
        emit({"type": messages.TTS_OPENED, "takes_text": reads_as_written(language, engine_name)})
        items = stream_items(job_id)
        for item in items:
            if cancelled is not None and cancelled():
                raise Cancelled("before a sentence")
            sentence = item["sentence"]
            voice = voices.get(item.get("speaker_id", speaker_id))
            spoken_in = item.get("language", language)
            if item.get("more"):  # its text comes as it is written
                pieces = SentencePieces(item, items)
                done = speak_as_written(
                    emit,
                    pieces,
                    voice=voice,
                    language=spoken_in,
                    engine_name=engine_name,
                    cancelled=cancelled,
                    tag={"sentence": sentence},
                )
                pieces.drain()
            else:
                done = speak_text(
                    emit,
                    item["text"],
                    voice=voice,
                    language=spoken_in,
                    engine_name=engine_name,
                    cancelled=cancelled,
                    tag={"sentence": sentence},
                )
            emit({"type": messages.TTS_SENTENCE_DONE, **done})
            sentence = None
        emit({"type": messages.TTS_CLOSED})
    except Cancelled as exc:
        logger.info("TTS stream %s cancelled by its requester %s", job_id, exc)
    except InboxTimeout:
        logger.info(
            "TTS stream %s: nothing to say for %g s, its requester is gone",
            job_id,
            settings.VOICE_TTS_STREAM_IDLE_TIMEOUT,
        )
    except RequesterGone as exc:
        logger.info("TTS stream %s stopped: its requester is gone (%s)", job_id, exc)
    except TTSError as exc:
        _send_error(emit, messages.TTS_ERROR, exc.code, str(exc), sentence=sentence)
    except Exception:
        logger.exception("TTS stream %s failed", job_id)
        _send_error(emit, messages.TTS_ERROR, "tts_failed", "Speech synthesis failed.", sentence=sentence)
    finally:
        if items is not None:
            items.close()  # now, not whenever the garbage collector finds it (its finally takes a lock)
        with contextlib.suppress(Exception):
            backends.current().text.discard(job_id)  # sentences fed after the end must not linger


@logged_job
def asr_run(*, send: Send, job_id: str, phrases=None, language=None) -> None:
    """Recognise the audio arriving on the job's audio stream with the model of `language` (the user's
    "I speak"; default the site's); send partials, then the final transcript."""
    emit = _job_emit(send, job_id)
    try:
        engine = get_asr_engine(language)
        with engine.open_stream(phrases or None) as stream:
            audio = backends.current().audio
            for pcm in audio.items(job_id, idle_timeout=settings.VOICE_JOB_IDLE_TIMEOUT):
                partial = stream.accept(pcm)
                if partial is not None:
                    emit({"type": messages.ASR_PARTIAL, "text": partial})
            text = stream.finish()
        emit({"type": messages.ASR_FINAL, "text": text})
    except RequesterGone as exc:
        logger.info("ASR job %s stopped: its requester is gone (%s)", job_id, exc)
    except InboxTimeout:
        _send_error(emit, messages.ASR_ERROR, "asr_audio_timeout", "No audio arrived in time.")
    except ASRError as exc:
        _send_error(emit, messages.ASR_ERROR, exc.code, str(exc))
    except Exception:
        logger.exception("ASR job %s failed", job_id)
        _send_error(emit, messages.ASR_ERROR, "asr_failed", "Speech recognition failed.")
    finally:
        with contextlib.suppress(Exception):
            backends.current().audio.discard(job_id)  # audio that arrived after a failure must not linger


def _send_error(emit, type_, code, message, **tag) -> None:
    try:
        emit({"type": type_, **{k: v for k, v in tag.items() if v is not None}, "code": code, "message": message})
    except Exception as exc:  # the requester is unreachable too: nothing more to do
        logger.info("Could not report %s to the requester: %s", code, exc)


def runner(kind: str):
    """The body of a `kind` ("tts", "tts_stream" or "asr") job (looked up at each call, so tests can replace one)."""
    return {"tts": tts_run, "tts_stream": tts_stream_run, "asr": asr_run}[kind]
