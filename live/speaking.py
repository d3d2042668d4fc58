"""Speaking: a reply's sentences to audio frames, in order, paced a little ahead of real time.

A reply has one synthesis stream (voice.jobs.stream), opened as the turn starts, while the LLM is
still thinking; each sentence goes into it as soon as it is complete, and comes back as that
sentence's own job messages. With VOICE_TTS_STREAM off, each sentence is its own synthesis job
(voice.jobs.synthesize). Where the worker's engine reads text as it is written (CosyVoice2 without
vLLM: the stream's `takes_text`), the sentence being written goes in as it grows (`write`), so the
engine speaks its first words while the LLM writes the rest; its audio is held until its text is
complete, so that the `sentence` event carries the whole text, as the protocol says.

Either way at most VOICE_TTS_PREFETCH sentences are read at once (the one playing and the next), so
there is no gap between sentences when synthesis keeps up. Audio goes to the client at most
`audio_lead_s` ahead of real time: a slow client never makes us buffer much, and a barge-in stops
what is heard quickly.
"""

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings

from magicmirror import metrics
from voice import jobs
from voice.jobs import messages
from voice.speech_text import EarText
from voice.text import speakable

from .protocol import audio_frame

if TYPE_CHECKING:
    from .session import VoiceSession


_FENCE_MARKS = set("`~")  # a code fence may start: EarText decides with the whole sentence


class SentenceAudio:
    """One sentence's synthesis job, its messages buffered until it is this sentence's turn to play."""

    def __init__(self, sentence_id: int, text: str, ear: str, prepared=None):
        self.id, self.text = sentence_id, text
        self.prepared = prepared  # job messages synthesised ahead (live.preemptive), instead of a new job
        self.ear = ear  # what the engine is given (voice/speech_text.py); `text` is what is shown
        self.queue: asyncio.Queue[dict | None] = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self.written: jobs.WrittenSentence | None = None  # fed as it is written (`text` is known at its end)
        self.written_text = ""  # what of it has gone to the stream so far
        self.text_known = asyncio.Event()
        self.text_known.set()


class ReplySpeaker:
    """Speaks a reply sentence by sentence, in order, prefetching the next sentence's synthesis."""

    def __init__(self, session: "VoiceSession", turn_id: int, speaker_id, input_ended_at=None, source="text"):
        self.session, self.turn_id, self.speaker_id = session, turn_id, speaker_id
        self.input_ended_at, self.source = input_ended_at, source
        self.sentences: asyncio.Queue[SentenceAudio | None] = asyncio.Queue()
        self.spoken: list[str] = []  # sentences whose audio reached the client (fully or partly)
        self.failed = False
        self._prefetch = asyncio.Semaphore(settings.VOICE_TTS_PREFETCH)
        self._jobs: list[SentenceAudio] = []
        self._count = 0
        self._played = 0  # sentences played to their end (or skipped: no audio)
        self._player = asyncio.create_task(self._play())
        self._clock_start: float | None = None
        self._audio_seconds = 0.0
        # One per reply: it follows code fences across sentences. Numbers are left to the job, which
        # writes them as words for the engines without a text frontend of their own.
        self._ear = EarText(getattr(session, "spoken_language", None), numbers=False)
        self._playing = asyncio.Event()  # cleared while a barge-in pauses the reply (live.barge_in)
        self._playing.set()
        self._paused_at: float | None = None
        self.on_first_audio: Callable[[], None] | None = None  # called once, as the first audio frame goes out
        self._stream: jobs.SynthesisStream | None = None
        self._writing: SentenceAudio | None = None  # the sentence being written into the stream
        # Written ahead at most this much: the splitter never cuts a piece shorter (SentenceSplitter.pending).
        self._write_limit = settings.VOICE_SENTENCE_MAX_CHARS // 3
        if settings.VOICE_TTS_STREAM:
            self._stream = jobs.SynthesisStream(speaker_id=speaker_id, language=self._language)
            self._stream.open()

    @property
    def _language(self):
        return getattr(self.session, "spoken_language", None)

    def write(self, pending: str) -> None:
        """The next sentence, as written so far (the splitter's `pending`): into the stream now if its
        engine reads text as it is written. Its end comes with `add`. Text in or after a code fence, or
        with a fence mark, waits for its whole sentence (EarText reads fences per reply)."""
        stream, sentence = self._stream, self._writing
        if stream is None or self.failed or not settings.VOICE_TTS_TEXT_AS_WRITTEN or _FENCE_MARKS & set(pending):
            return
        text = pending[: self._write_limit]
        if sentence is None:
            if not stream.takes_text or self._ear.in_fence or not speakable(text):
                return
            sentence = self._writing = SentenceAudio(self._count, "", "")
            sentence.text_known.clear()
            sentence.written = stream.begin(text, speaker_id=self.speaker_id, language=self._language)
            sentence.written_text = text
            sentence.prepared = sentence.written.messages
            self._queue(sentence)
        elif len(text) > len(sentence.written_text) and text.startswith(sentence.written_text):
            assert sentence.written is not None
            sentence.written.write(text[len(sentence.written_text) :])
            sentence.written_text = text

    def _end_written(self, text: str | None) -> bool:
        """The sentence being written is complete: `text` (None: it ends with what was written). False
        when `text` does not continue what was written: that ends as written, `text` is another sentence."""
        sentence, self._writing = self._writing, None
        assert sentence is not None and sentence.written is not None
        written = sentence.written_text
        rest = None
        if text is not None:
            ear = self._ear.feed(text)  # keeps the reply's code-fence state, as for any sentence
            for start in (written, written.rstrip()):
                if text.startswith(start):
                    rest = text[len(start) :]
                    break
            if rest is not None:
                sentence.written.end(rest)
                sentence.text, sentence.ear = text, ear
        if rest is None:
            sentence.written.end("")
            sentence.text = sentence.ear = written.strip()
        sentence.text_known.set()
        return rest is not None

    def add(self, text: str, audio=None) -> None:
        """The next sentence; `audio`: its synthesis messages, already under way (preemptive)."""
        if self._writing is not None and audio is None and self._end_written(text):
            return
        sentence = SentenceAudio(self._count, text, self._ear.feed(text), prepared=audio)
        if audio is None and self._stream is not None and sentence.ear and not self.failed:
            # Into the stream now, in order; read below like a job's messages.
            sentence.prepared = self._stream.speak(sentence.ear, speaker_id=self.speaker_id, language=self._language)
        self._queue(sentence)

    def _queue(self, sentence: SentenceAudio) -> None:
        self._count += 1
        sentence.task = asyncio.create_task(self._synthesize(sentence))
        self._jobs.append(sentence)
        self.sentences.put_nowait(sentence)

    @property
    def heard_all(self) -> bool:
        """Every sentence given so far has been played to its end (or skipped, for want of audio)."""
        return self._played == self._count

    async def finish(self) -> None:
        """No more sentences: returns when the last one has been sent."""
        if self._writing is not None:
            self._end_written(None)
        self.sentences.put_nowait(None)
        if self._stream is not None:
            self._stream.close()  # the worker ends the stream once it has spoken what it has
        await self._player

    def pause(self) -> None:
        """Send no more audio until resume(); the client pauses what it has (barge-in)."""
        if self._paused_at is None:
            self._paused_at = time.monotonic()
            self._playing.clear()

    def resume(self) -> None:
        """Go on where it paused; the pacing clock skips the pause."""
        if self._paused_at is not None:
            if self._clock_start is not None:
                self._clock_start += time.monotonic() - self._paused_at
            self._paused_at = None
            self._playing.set()

    def hush(self) -> None:
        """Send nothing more from now on (synchronous: `spoken` is final once this returns)."""
        self._player.cancel()

    async def cancel(self) -> None:
        """Stop everything (the one way out: an interruption, a failed turn, its end)."""
        tasks = [self._player, *(s.task for s in self._jobs if s.task)]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._stream is not None:
            await self._stream.cancel()

    async def _synthesize(self, sentence: SentenceAudio) -> None:
        async with self._prefetch:
            if sentence.written is None and (
                self.failed or not sentence.ear
            ):  # nothing to say (only an emoji, a URL, code): no job
                sentence.queue.put_nowait(None)
                return
            source = sentence.prepared or jobs.synthesize(
                text=sentence.ear, speaker_id=self.speaker_id, language=self._language
            )
            try:
                async for message in source:
                    sentence.queue.put_nowait(message)
            finally:
                sentence.queue.put_nowait(None)

    async def _play(self) -> None:
        session = self.session
        while (sentence := await self.sentences.get()) is not None:
            started = False
            while (message := await sentence.queue.get()) is not None:
                kind = message["type"]
                if kind == messages.TTS_CHUNK:
                    await self._playing.wait()
                    if not started:
                        await sentence.text_known.wait()  # written as it was spoken: all of it first
                        started = True
                        self.spoken.append(sentence.text)
                        await session.emit(self._sentence_event(sentence, message))
                        await session.set_state("speaking")
                    await self._pace()
                    if self.input_ended_at is not None:
                        metrics.observe_ttfa(time.monotonic() - self.input_ended_at, self.source)
                        self.input_ended_at = None  # the first audio of the turn only
                        if self.on_first_audio is not None:
                            self.on_first_audio()
                    await session.send_audio(audio_frame(self.turn_id, sentence.id, message["seq"], message["pcm"]))
                    self._audio_seconds += len(message["pcm"]) / 2 / message["sample_rate"]
                elif kind == messages.TTS_DONE and message.get("unspoken"):
                    await self._notice_unspoken(message["unspoken"])
                elif kind == messages.TTS_ERROR and not self.failed:
                    self.failed = True  # a dead worker fails every later sentence too: say it once
                    await session.emit(
                        {
                            "type": "error",
                            "code": message["code"],
                            "message": message["message"],
                            "turn_id": self.turn_id,
                        }
                    )
            self._played += 1
            if started:
                await session.emit({"type": "sentence_end", "turn_id": self.turn_id, "sentence_id": sentence.id})

    async def _notice_unspoken(self, unspoken: list[dict]) -> None:
        """A sentence no engine speaks is shown, not spoken: say so once per session and language."""
        noticed = self.session.__dict__.setdefault("unspoken_languages", set())
        for language in dict.fromkeys(u["language"] for u in unspoken):
            if language in noticed:
                continue
            noticed.add(language)
            await self.session.emit(
                {
                    "type": "notice",
                    "code": "tts_language_unsupported",
                    "language": language,
                    "turn_id": self.turn_id,
                    "message": f"No voice here speaks this language ({language}): such sentences are shown, "
                    "not spoken.",
                }
            )

    def _sentence_event(self, sentence: SentenceAudio, first_chunk: dict) -> dict:
        event = {
            "type": "sentence",
            "turn_id": self.turn_id,
            "sentence_id": sentence.id,
            "text": sentence.text,
            "sample_rate": first_chunk["sample_rate"],
        }
        # The first chunk of a job names the engine and voice that speak.
        event.update({k: first_chunk[k] for k in ("engine", "voice", "clones", "language") if k in first_chunk})
        return event

    async def _pace(self) -> None:
        """Stay at most `audio_lead_s` ahead of real time (bounded buffering, fast barge-in)."""
        now = time.monotonic()
        if self._clock_start is None:
            self._clock_start = now
        ahead = self._audio_seconds - (now - self._clock_start) - self.session.limits.audio_lead_s
        if ahead > 0:
            await asyncio.sleep(ahead)
