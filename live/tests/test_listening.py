"""live.listening on its own: the token bucket, the hands-free gate, utterances and the audio checks.

The session is a small fake (the few attributes and callbacks Listening uses). Recognition jobs are
either fakes (voice.jobs.asr_start/audio_put/audio_end/job_messages monkeypatched, driven by the
test) or, where the real job is the point, real in-process jobs with the real Vosk engine.
"""

import asyncio
import functools
import itertools
import struct
import wave

import pytest

from devtools import samples
from live import listening as listening_module
from live.listening import HandsFreeGate, Listening, TokenBucket
from live.protocol import Limits, SessionError
from voice import jobs
from voice.jobs import messages

TIMEOUT = 10


# -- fakes ------------------------------------------------------------------------------------------
class FakeSession:
    """What Listening and Utterance use of VoiceSession; everything lands in one ordered `log`."""

    def __init__(self, log, *, limits=None, phrases=None):
        self.log = log
        self.limits = limits or Limits(max_audio_rate=1e6)
        self.phrases = phrases
        self.state = "idle"
        self.outcomes: asyncio.Queue = asyncio.Queue()  # finals and utterance errors

    async def emit(self, event):
        self.log.append(("emit", event))

    async def set_state(self, state):
        if state != self.state:
            self.state = state
            self.log.append(("state", state))

    async def on_speech_started(self):
        self.log.append(("speech_started",))

    async def on_partial(self, utterance, text):
        pass

    async def on_utterance_speech(self, utterance, speech_ms):
        pass

    async def on_pause(self, utterance):
        self.log.append(("pause", utterance.id))

    async def on_speech_resumed(self, utterance):
        self.log.append(("speech_resumed", utterance.id))

    async def on_final(self, utterance, text):
        self.log.append(("final", utterance.id, text))
        self.outcomes.put_nowait(("final", utterance, text))

    async def on_utterance_error(self, utterance, code, message):
        self.log.append(("utterance_error", utterance.id, code))
        self.outcomes.put_nowait(("error", utterance, code, message))

    def events(self, kind=None):
        return [e[1] for e in self.log if e[0] == "emit" and (kind is None or e[1]["type"] == kind)]

    def states(self):
        return [e[1] for e in self.log if e[0] == "state"]


class FakeJobs:
    """voice.jobs' recognition calls, recorded; each job's messages come from a queue the test fills."""

    def __init__(self, log):
        self.log = log
        self.started: list[dict] = []
        self.puts: dict[str, list[bytes]] = {}
        self.ended: list[str] = []
        self.streams: dict[str, asyncio.Queue] = {}
        self.listeners: list[asyncio.Task] = []
        self._ids = itertools.count(1)
        self.fail_end = False

    async def asr_start(self, *, reply_to, phrases=None, trace_id=None, language=None):
        job_id = f"job{next(self._ids)}"
        self.started.append({"job_id": job_id, "reply_to": reply_to, "phrases": phrases, "trace_id": trace_id})
        self.puts[job_id] = []
        self.streams[job_id] = asyncio.Queue()
        self.log.append(("asr_start", job_id))
        return job_id

    async def audio_put(self, job_id, pcm):
        self.puts[job_id].append(pcm)

    async def audio_end(self, job_id):
        self.log.append(("audio_end", job_id))
        self.ended.append(job_id)
        if self.fail_end:
            raise ConnectionError("redis went away")

    async def job_messages(self, channel, job_id, *, may_be_quiet=None):
        self.listeners.append(asyncio.current_task())
        queue = self.streams[job_id]
        while True:
            message = await queue.get()
            if isinstance(message, BaseException):
                raise message
            yield message
            if message["type"] in jobs.TERMINAL_TYPES:
                return

    def send(self, job_id, kind, **fields):
        self.streams[job_id].put_nowait({"type": kind, "job_id": job_id, "t": 0.0, **fields})

    def fed(self, job_id) -> bytes:
        return b"".join(self.puts[job_id])


@pytest.fixture
def log():
    return []


@pytest.fixture
async def fake_jobs(monkeypatch, log):
    fake = FakeJobs(log)
    for name in ("asr_start", "audio_put", "audio_end", "job_messages"):
        monkeypatch.setattr(listening_module.jobs, name, getattr(fake, name))
    yield fake
    for task in fake.listeners:
        task.cancel()
    await asyncio.gather(*fake.listeners, return_exceptions=True)


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    """Listening's token buckets on a clock the test moves."""
    clock = Clock()
    monkeypatch.setattr(listening_module, "TokenBucket", functools.partial(TokenBucket, clock=clock))
    return clock


class FakeVAD:
    """Speech is a frame that starts with SPEECH's first sample; `silence_to_end` quiet frames after
    speech end the utterance."""

    def __init__(self, silence_to_end=3):
        self.silence_to_end = silence_to_end
        self.fed: list[bytes] = []
        self.resets = 0
        self.speech_started = False
        self.ended = False
        self._quiet = 0

    def feed(self, pcm16k):
        self.fed.append(pcm16k)
        if pcm16k[:2] == SPEECH[:2]:
            self.speech_started, self._quiet = True, 0
        elif self.speech_started:
            self._quiet += 1
            self.ended = self._quiet >= self.silence_to_end

    def reset(self):
        self.resets += 1
        self.speech_started = self.ended = False
        self._quiet = 0


SPEECH = b"\x7f\x7f" * 480  # 30 ms at 16 kHz
SILENCE = b"\0\0" * 480


def numbered(i, samples_=480) -> bytes:
    """A distinct (quiet, not speech) 30 ms frame."""
    return struct.pack("<h", i + 1) * samples_


def seconds(s, rate=16000) -> bytes:
    return b"\x01\x00" * int(s * rate)


def sample_pcm(name="hello.wav") -> bytes:
    with wave.open(str(samples.path(name))) as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 1
        return w.readframes(w.getnframes())


async def next_outcome(session):
    return await asyncio.wait_for(session.outcomes.get(), TIMEOUT)


# -- TokenBucket ------------------------------------------------------------------------------------
def test_token_bucket_burst_then_refusal():
    clock = Clock()
    bucket = TokenBucket(rate_bytes=100, burst_bytes=300, clock=clock)
    assert bucket.take(200)
    assert bucket.take(100)  # the whole burst at one instant
    assert not bucket.take(1)
    assert bucket.take(0)


def test_token_bucket_refills_with_time_up_to_the_burst():
    clock = Clock()
    bucket = TokenBucket(rate_bytes=100, burst_bytes=300, clock=clock)
    assert bucket.take(300)
    clock.t += 0.5
    assert not bucket.take(51)  # a refused take costs nothing...
    assert bucket.take(50)  # ...so the 50 bytes that came back are still there
    assert not bucket.take(1)
    clock.t += 1000  # a long pause refills only up to the burst
    assert bucket.take(300)
    assert not bucket.take(1)


def test_token_bucket_steady_rate():
    clock = Clock()
    bucket = TokenBucket(rate_bytes=1000, burst_bytes=1000, clock=clock)
    assert bucket.take(1000)
    for _ in range(50):  # real time, exactly: always allowed
        clock.t += 0.1
        assert bucket.take(100)
    clock.t += 0.1
    assert not bucket.take(101)  # a little faster: refused


def test_token_bucket_reads_its_clock():
    ticks = iter([0.0, 0.0, 10.0])
    bucket = TokenBucket(rate_bytes=1, burst_bytes=5, clock=lambda: next(ticks))
    assert bucket.take(5)
    assert bucket.take(5)  # 10 s later: refilled (capped at 5)


# -- HandsFreeGate ----------------------------------------------------------------------------------
def test_gate_keeps_the_pre_roll_and_opens_with_it(settings):
    vad = FakeVAD()
    gate = HandsFreeGate(vad, preroll_s=settings.VOICE_PREROLL_SECONDS)
    budget = int(16000 * 2 * settings.VOICE_PREROLL_SECONDS)
    frames = [numbered(i) for i in range(40)]  # 1.2 s of quiet, longer than the pre-roll
    for frame in frames:
        assert gate.listen(frame) is None
    opening = gate.listen(SPEECH)
    assert opening is not None and opening.endswith(SPEECH)
    assert vad.fed == [*frames, SPEECH]
    # The pre-roll is the latest audio, in order, and about VOICE_PREROLL_SECONDS of it.
    before = opening[: -len(SPEECH)]
    assert len(before) % len(frames[0]) == 0
    kept = len(before) // len(frames[0])
    assert before == b"".join(frames[-kept:])
    assert budget <= len(opening) <= budget + len(SPEECH)
    assert len(before) <= budget


def test_gate_with_speech_right_away(settings):
    gate = HandsFreeGate(FakeVAD(), preroll_s=settings.VOICE_PREROLL_SECONDS)
    assert gate.listen(numbered(0)) is None
    assert gate.listen(numbered(1)) is None
    assert gate.listen(SPEECH) == numbered(0) + numbered(1) + SPEECH


def test_gate_starts_a_fresh_pre_roll_for_the_next_utterance():
    vad = FakeVAD(silence_to_end=2)
    gate = HandsFreeGate(vad, preroll_s=0.3)
    gate.listen(numbered(0))
    assert gate.listen(SPEECH) == numbered(0) + SPEECH
    gate.hear(numbered(1))
    assert not gate.speech_ended
    gate.hear(numbered(2))
    assert gate.speech_ended
    gate.reset()
    assert vad.resets == 1 and not gate.speech_ended
    assert gate.listen(numbered(3)) is None
    # Nothing of the last utterance (nor what it heard) opens the next one.
    assert gate.listen(SPEECH) == numbered(3) + SPEECH


def test_gate_never_drops_the_speech_frame(settings):
    gate = HandsFreeGate(FakeVAD(), preroll_s=settings.VOICE_PREROLL_SECONDS)
    assert gate.listen(numbered(0)) is None
    speech = SPEECH * 17  # 0.51 s
    opening = gate.listen(speech)
    assert opening is not None and opening.endswith(speech)


# -- Listening with fake jobs -----------------------------------------------------------------------
async def test_push_to_talk_utterance(fake_jobs, log):
    session = FakeSession(log, phrases=["안녕하세요", "오늘"])
    listening = Listening(session)
    listening.configure(sample_rate=16000, gate=None)
    await listening.audio(numbered(0))
    assert [e for e in log if e[0] != "emit"] == [("asr_start", "job1"), ("state", "listening")]
    assert listening.utterance is not None and listening.utterance.id == 1
    started = fake_jobs.started[0]
    assert started["phrases"] == ["안녕하세요", "오늘"] and started["trace_id"]
    await listening.audio(numbered(1))
    assert fake_jobs.puts["job1"] == [numbered(0), numbered(1)]  # 16 kHz in: passed through as is
    assert listening.utterance.seconds == pytest.approx(0.06)
    utterance = listening.utterance
    await listening.end()
    assert fake_jobs.ended == ["job1"] and listening.utterance is None
    assert utterance.ended and utterance.ended_at is not None
    assert session.states() == ["listening", "thinking"]
    await listening.end()  # nothing open: nothing happens
    assert fake_jobs.ended == ["job1"]


async def test_job_messages_reach_the_session(fake_jobs, log):
    session = FakeSession(log)
    listening = Listening(session)
    listening.configure(sample_rate=16000, gate=None)
    await listening.audio(numbered(0))
    utterance = listening.utterance
    fake_jobs.send("job1", messages.ASR_PARTIAL, text="안녕")
    fake_jobs.send("job1", messages.ASR_PARTIAL, text="안녕하세요")
    await listening.end()
    fake_jobs.send("job1", messages.ASR_FINAL, text="안녕하세요 오늘")
    kind, final_utterance, text = await next_outcome(session)
    assert (kind, final_utterance, text) == ("final", utterance, "안녕하세요 오늘")
    assert session.events("partial") == [
        {"type": "partial", "utterance_id": 1, "text": "안녕"},
        {"type": "partial", "utterance_id": 1, "text": "안녕하세요"},
    ]
    await asyncio.wait_for(utterance.listener, TIMEOUT)  # the final is the last message


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (messages.error("asr", "job1", "asr_engine_missing", "No Vosk model."), "asr_engine_missing"),
        (jobs.JobTimeout("silent"), "voice_worker_timeout"),
    ],
)
async def test_job_failures_reach_the_session(fake_jobs, log, failure, code):
    session = FakeSession(log)
    listening = Listening(session)
    listening.configure(sample_rate=16000, gate=None)
    await listening.audio(numbered(0))
    utterance = listening.utterance
    fake_jobs.streams["job1"].put_nowait(failure)
    kind, failed, got_code, message = await next_outcome(session)
    assert (kind, failed, got_code) == ("error", utterance, code) and message
    listening.forget(utterance)
    assert listening.utterance is None
    await listening.audio(numbered(1))  # the next frame opens a new utterance
    assert listening.utterance.id == 2 and fake_jobs.puts["job2"] == [numbered(1)]


async def test_forget_leaves_a_newer_utterance_alone(fake_jobs, log):
    listening = Listening(FakeSession(log))
    listening.configure(sample_rate=16000, gate=None)
    await listening.audio(numbered(0))
    first = listening.utterance
    await listening.end()
    await listening.audio(numbered(1))
    listening.forget(first)
    assert listening.utterance is not None and listening.utterance.id == 2


@pytest.mark.parametrize("size", [1, 3, 961])
async def test_odd_length_frames_are_refused(fake_jobs, log, size):
    listening = Listening(FakeSession(log))
    listening.configure(sample_rate=16000, gate=None)
    with pytest.raises(SessionError) as caught:
        await listening.audio(b"\1" * size)
    assert caught.value.code == "bad_audio_frame"
    assert fake_jobs.started == [] and listening.utterance is None
    await listening.audio(numbered(0))
    with pytest.raises(SessionError):
        await listening.audio(b"\1" * size)
    assert fake_jobs.puts["job1"] == [numbered(0)]  # the bad frame never reached the job


async def test_audio_faster_than_real_time_is_refused(fake_jobs, log, clock):
    session = FakeSession(log, limits=Limits(max_audio_rate=1.5))
    listening = Listening(session)
    listening.configure(sample_rate=16000, gate=None)
    one_second = seconds(1.0)
    await listening.audio(one_second)
    await listening.audio(one_second)  # a 2 s burst is allowed
    with pytest.raises(SessionError) as caught:
        await listening.audio(one_second)
    assert caught.value.code == "audio_rate_exceeded"
    assert len(fake_jobs.fed("job1")) == 2 * len(one_second)  # the refused frame was dropped
    clock.t += 1.0  # 1 s later, 1.5 s worth of audio is allowed again
    await listening.audio(seconds(1.5))
    with pytest.raises(SessionError):
        await listening.audio(seconds(0.01))
    assert len(fake_jobs.fed("job1")) == len(seconds(3.5))


async def test_the_rate_is_counted_at_the_clients_sample_rate(fake_jobs, log, clock):
    listening = Listening(FakeSession(log, limits=Limits(max_audio_rate=1.5)))
    listening.configure(sample_rate=48000, gate=None)
    for _ in range(4):
        await listening.audio(seconds(0.5, rate=48000))  # 2 s at 48 kHz: the burst
    with pytest.raises(SessionError) as caught:
        await listening.audio(seconds(0.1, rate=48000))
    assert caught.value.code == "audio_rate_exceeded"


async def test_a_refused_first_frame_opens_no_utterance(fake_jobs, log, clock):
    listening = Listening(FakeSession(log, limits=Limits(max_audio_rate=1.0)))
    listening.configure(sample_rate=16000, gate=None)
    with pytest.raises(SessionError):
        await listening.audio(seconds(2.5))
    assert fake_jobs.started == [] and listening.utterance is None


async def test_resampled_to_16k(fake_jobs, log):
    listening = Listening(FakeSession(log))
    listening.configure(sample_rate=48000, gate=None)
    assert listening.sample_rate == 48000
    for _ in range(10):
        await listening.audio(seconds(0.1, rate=48000))
    fed = fake_jobs.fed("job1")
    assert 0.99 * 32000 < len(fed) <= 32000  # 1 s at 16 kHz (less the resampler's delay)
    assert listening.utterance.seconds == pytest.approx(len(fed) / 32000)


async def test_an_utterance_that_is_too_long_is_ended(fake_jobs, log):
    session = FakeSession(log, limits=Limits(max_audio_rate=1e6, max_utterance_s=1.0))
    listening = Listening(session)
    listening.configure(sample_rate=16000, gate=None)
    await listening.audio(seconds(0.5))
    await listening.audio(seconds(0.5))  # exactly the limit: fine
    with pytest.raises(SessionError) as caught:
        await listening.audio(seconds(0.1))
    assert caught.value.code == "utterance_too_long"
    assert caught.value.message == "Utterances are limited to 1 seconds; this one was ended there."
    assert fake_jobs.ended == ["job1"] and listening.utterance is None
    assert len(fake_jobs.fed("job1")) == len(seconds(1.0))  # the frame over the limit was not fed
    assert session.state == "thinking"
    await listening.audio(seconds(0.1))  # the next frame: a new utterance
    assert fake_jobs.fed("job2") == seconds(0.1)


async def test_the_sample_rate_cannot_change_during_an_utterance(fake_jobs, log):
    listening = Listening(FakeSession(log))
    listening.configure(sample_rate=16000, gate=None)
    await listening.audio(numbered(0))
    with pytest.raises(SessionError) as caught:
        listening.configure(sample_rate=48000, gate=None)
    assert caught.value.code == "invalid_config" and "sample rate" in caught.value.message
    assert listening.sample_rate == 16000
    await listening.audio(numbered(1))
    assert fake_jobs.puts["job1"] == [numbered(0), numbered(1)]  # still 16 kHz, not resampled
    listening.configure(sample_rate=16000, gate=None)  # the same rate: allowed
    await listening.end()
    listening.configure(sample_rate=48000, gate=None)  # between utterances: allowed
    assert listening.sample_rate == 48000


async def test_hands_free_opens_on_speech_with_the_pre_roll(fake_jobs, log, settings):
    session = FakeSession(log)
    listening = Listening(session)
    vad = FakeVAD(silence_to_end=3)
    listening.configure(sample_rate=16000, gate=HandsFreeGate(vad, preroll_s=settings.VOICE_PREROLL_SECONDS))
    for i in range(3):
        await listening.audio(numbered(i))
    assert fake_jobs.started == [] and listening.utterance is None and log == []
    await listening.audio(SPEECH)
    # Barge-in first (the session interrupts a playing reply), then the utterance opens.
    assert log == [("speech_started",), ("asr_start", "job1"), ("state", "listening")]
    assert fake_jobs.puts["job1"] == [numbered(0) + numbered(1) + numbered(2) + SPEECH]
    await listening.audio(SPEECH)
    await listening.audio(numbered(10))
    await listening.audio(numbered(11))
    assert fake_jobs.ended == [] and log.count(("speech_started",)) == 1
    await listening.audio(numbered(12))  # the VAD hears the end of speech
    assert fake_jobs.ended == ["job1"] and listening.utterance is None
    assert fake_jobs.puts["job1"][1:] == [SPEECH, numbered(10), numbered(11), numbered(12)]
    assert vad.resets == 1 and session.states() == ["listening", "thinking"]
    # The next speech opens the next utterance, with a fresh pre-roll.
    await listening.audio(numbered(20))
    await listening.audio(SPEECH)
    assert fake_jobs.puts["job2"] == [numbered(20) + SPEECH]
    assert log.count(("speech_started",)) == 2


async def test_push_to_talk_never_calls_barge_in(fake_jobs, log):
    listening = Listening(FakeSession(log))
    listening.configure(sample_rate=16000, gate=None)
    await listening.audio(SPEECH)
    await listening.audio(SILENCE)
    assert ("speech_started",) not in log


@pytest.mark.parametrize("case", ["empty_frame", "one_sample_at_48k", "long_hands_free_frame"])
async def test_no_empty_chunk_reaches_the_job(fake_jobs, log, settings, case):
    listening = Listening(FakeSession(log))
    if case == "empty_frame":
        listening.configure(sample_rate=16000, gate=None)
        await listening.audio(numbered(0))
        await listening.audio(b"")
    elif case == "one_sample_at_48k":
        listening.configure(sample_rate=48000, gate=None)
        await listening.audio(b"\1\0")
    else:
        gate = HandsFreeGate(FakeVAD(), preroll_s=settings.VOICE_PREROLL_SECONDS)
        listening.configure(sample_rate=16000, gate=gate)
        await listening.audio(SPEECH * 17)
    await listening.audio(numbered(1))
    assert fake_jobs.started
    assert b"" not in fake_jobs.puts["job1"]


async def test_close_ends_the_open_utterance_and_stops_listening(fake_jobs, log):
    listening = Listening(FakeSession(log))
    listening.configure(sample_rate=16000, gate=None)
    await listening.audio(numbered(0))
    utterance = listening.utterance
    fake_jobs.fail_end = True  # the session is closing: a failing audio_end is not raised
    await listening.close()
    assert fake_jobs.ended == ["job1"] and listening.utterance is None
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(utterance.listener, TIMEOUT)
    await listening.close()  # nothing open: nothing to do


async def test_audio_before_configure_is_a_programming_error(fake_jobs, log):
    with pytest.raises(AssertionError):
        await Listening(FakeSession(log)).audio(numbered(0))


# -- Listening with real in-process recognition jobs (the real Vosk engine) -----------------------
@pytest.fixture
def real_jobs(settings):
    settings.VOICE_JOBS_IN_PROCESS = True  # both backends: a thread of this process, real Vosk


async def feed(listening, pcm, step=3200):
    for start in range(0, len(pcm), step):
        await listening.audio(pcm[start : start + step])


async def test_real_recognition_of_an_utterance(real_jobs, log):
    phrases = ["안녕하세요", "오늘", "좋네요"]
    session = FakeSession(log, phrases=phrases)
    listening = Listening(session)
    listening.configure(sample_rate=16000, gate=None)
    await feed(listening, sample_pcm("hello.wav"))
    utterance = listening.utterance
    await listening.end()
    kind, final_utterance, text = await next_outcome(session)
    assert (kind, final_utterance) == ("final", utterance)
    assert "안녕하세요" in text and set(text.split()) <= set(phrases)
    partials = session.events("partial")
    assert partials and all(p["utterance_id"] == 1 for p in partials)
    assert log.index(("emit", partials[0])) < log.index(("final", 1, text))
    assert session.states() == ["listening", "thinking"]


async def test_real_recognition_of_an_utterance_cut_at_the_limit(real_jobs, log):
    session = FakeSession(log, limits=Limits(max_audio_rate=1e6, max_utterance_s=1.0), phrases=["안녕하세요"])
    listening = Listening(session)
    listening.configure(sample_rate=16000, gate=None)
    with pytest.raises(SessionError) as caught:
        await feed(listening, sample_pcm("hello.wav"))
    assert caught.value.code == "utterance_too_long"
    # Ended there and recognised: the final comes with no audio_end from the client.
    kind, utterance, text = await next_outcome(session)
    assert kind == "final" and utterance.id == 1 and utterance.seconds == pytest.approx(1.0)
    assert isinstance(text, str)
