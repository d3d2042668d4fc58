// Streamed reply audio: PCM16 chunks (12-byte header turn/sentence/seq) scheduled back to back on
// one AudioContext timeline, so consecutive chunks play without gaps. Audio of an interrupted or
// older turn is dropped; stop() silences everything at once. pause() (a barge-in the server is not
// yet sure of: `reply_paused`) silences it too but keeps what had not been heard, and what arrives
// meanwhile; resume() (`reply_resumed`) plays it on from where it paused.

import { decodeSamples, parseAudioHeader } from "./frames.js";

const START_LEAD = 0.08; // seconds of headroom when (re)starting the timeline
const FADE = 0.004; // seconds: fade-in after an underrun, fade-out on stop (no clicks)

export class Playback {
  constructor(context, { onStart = () => {}, onIdle = () => {} } = {}) {
    this.context = context;
    this.output = context.createGain();
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 1024;
    this.output.connect(this.analyser);
    this.analyser.connect(context.destination);
    this.onStart = onStart;
    this.onIdle = onIdle;
    this.rates = new Map(); // "turn:sentence" -> sample rate (from `sentence` events)
    this.defaultRate = 24000; // ready.output.sample_rate
    this.sources = new Set();
    this.paused = false;
    this.held = []; // while paused: [{audio, offset, turn}] to play on resume, in order
    this.nextTime = 0;
    this.turn = 0; // the turn being played
    this.dropUpTo = 0; // audio of turns <= this is discarded
    this.stats = { chunksReceived: 0, chunksScheduled: 0, chunksPlayed: 0, chunksDropped: 0, secondsScheduled: 0 };
  }

  get playing() {
    return this.sources.size > 0 || this.held.length > 0;
  }

  sentence({ turn_id: turn, sentence_id: sentence, sample_rate: rate }) {
    if (rate) this.rates.set(`${turn}:${sentence}`, rate);
  }

  // A new turn started: anything older still queued is cut.
  beginTurn(turn) {
    if (turn > this.turn && this.turn) this.drop(this.turn);
    this.turn = Math.max(this.turn, turn);
  }

  // Discard audio of `turn` and older, now and when late frames arrive.
  drop(turn) {
    this.dropUpTo = Math.max(this.dropUpTo, turn ?? this.turn);
    this.stop();
  }

  push(buffer) {
    this.stats.chunksReceived += 1;
    const frame = parseAudioHeader(buffer);
    if (!frame) return;
    const { turn, sentence } = frame;
    if (turn <= this.dropUpTo || turn < this.turn) {
      this.stats.chunksDropped += 1;
      return;
    }
    this.beginTurn(turn);
    const rate = this.rates.get(`${turn}:${sentence}`) || this.defaultRate;
    const samples = decodeSamples(buffer); // decoded only for audio that will play
    const audio = this.context.createBuffer(1, frame.sampleCount, rate);
    audio.copyToChannel(samples, 0);
    if (this.paused) this.held.push({ audio, offset: 0, turn });
    else this.schedule(audio, turn);
  }

  schedule(audio, turn, offset = 0) {
    const now = this.context.currentTime;
    const gain = this.context.createGain();
    let start = this.nextTime;
    if (start < now + 0.01) {
      // Underrun or first chunk: restart the timeline a little ahead, fading in.
      start = now + START_LEAD;
      gain.gain.setValueAtTime(0, start);
      gain.gain.linearRampToValueAtTime(1, start + FADE);
    }
    const source = this.context.createBufferSource();
    source.buffer = audio;
    source.connect(gain).connect(this.output);
    source.turn = turn;
    source.startAt = start - offset; // where the buffer's beginning falls on the timeline
    source.addEventListener("ended", () => {
      this.sources.delete(source);
      gain.disconnect();
      if (source.cancelled) return;
      this.stats.chunksPlayed += 1;
      if (!this.sources.size) this.onIdle();
    });
    const wasIdle = !this.sources.size;
    this.sources.add(source);
    source.start(start, offset);
    this.nextTime = start + audio.duration - offset;
    this.stats.chunksScheduled += 1;
    this.stats.secondsScheduled += audio.duration;
    if (wasIdle) this.onStart();
  }

  // Silence at once, keeping the unheard rest of what was scheduled (and what comes) for resume().
  pause() {
    if (this.paused) return;
    const now = this.context.currentTime;
    const pending = [...this.sources].sort((a, b) => a.startAt - b.startAt);
    this.held = pending
      .map((source) => ({ audio: source.buffer, offset: Math.max(0, now - source.startAt), turn: source.turn }))
      .filter((item) => item.offset < item.audio.duration);
    this.silence(pending, now);
    this.paused = true;
  }

  // Play on what pause() kept, from where it stopped.
  resume() {
    if (!this.paused) return;
    this.paused = false;
    const held = this.held;
    this.held = [];
    this.nextTime = 0;
    for (const { audio, offset, turn } of held) {
      if (turn > this.dropUpTo) this.schedule(audio, turn, offset);
    }
    if (!this.sources.size) this.onIdle();
  }

  // Silence at once (a few ms fade to avoid a click) and forget the queue.
  stop() {
    const hadHeld = this.held.length > 0;
    this.paused = false;
    this.held = [];
    const sources = [...this.sources];
    this.silence(sources, this.context.currentTime);
    if (sources.length || hadHeld) this.onIdle();
  }

  silence(sources, now) {
    this.sources.clear();
    this.nextTime = 0;
    for (const source of sources) {
      source.cancelled = true;
      try {
        source.stop(now + FADE);
      } catch {
        // not started yet
      }
    }
    this.output.gain.cancelScheduledValues(now);
    this.output.gain.setValueAtTime(1, now);
  }
}
