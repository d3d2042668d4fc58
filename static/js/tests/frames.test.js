import assert from "node:assert/strict";
import { test } from "node:test";

import { AUDIO_HEADER_BYTES, decodeSamples, parseAudioFrame, parseAudioHeader, parseEventFrame } from "../voice/frames.js";
import { Playback } from "../voice/playback.js";

// A server audio frame: turn_id, sentence_id, seq (uint32 LE), then PCM16 LE samples.
function audioFrame(turn, sentence, seq, samples = [0], { extraBytes = 0 } = {}) {
  const buffer = new ArrayBuffer(AUDIO_HEADER_BYTES + 2 * samples.length + extraBytes);
  const view = new DataView(buffer);
  view.setUint32(0, turn, true);
  view.setUint32(4, sentence, true);
  view.setUint32(8, seq, true);
  samples.forEach((sample, i) => view.setInt16(AUDIO_HEADER_BYTES + 2 * i, sample, true));
  return buffer;
}

// --- text frames ----------------------------------------------------------------------------------

test("a text frame is parsed into its event", () => {
  assert.deepEqual(parseEventFrame('{"type":"delta","turn_id":3,"text":"你"}'), { type: "delta", turn_id: 3, text: "你" });
});

test("text frames that are not JSON objects with a string type are refused", () => {
  for (const text of ["", "not json", "{", "null", "42", '"hello"', "[]", '[{"type":"x"}]', "{}", '{"type":7}', '{"type":null}']) {
    assert.equal(parseEventFrame(text), null, text);
  }
});

// --- binary frames --------------------------------------------------------------------------------

test("the header is three little-endian uint32: turn, sentence, seq", () => {
  const frame = parseAudioHeader(audioFrame(1, 2, 3, [0, 0]));
  assert.deepEqual(frame, { turn: 1, sentence: 2, seq: 3, sampleCount: 2 });
});

test("the header is read little-endian and unsigned", () => {
  const bytes = new Uint8Array(audioFrame(0, 0, 0));
  bytes.set([0x01, 0x02, 0x00, 0x00], 0); // 0x0201
  bytes.set([0xff, 0xff, 0xff, 0xff], 4); // 2**32 - 1, not -1
  bytes.set([0x00, 0x00, 0x00, 0x80], 8); // 2**31
  const frame = parseAudioHeader(bytes.buffer);
  assert.equal(frame.turn, 0x0201);
  assert.equal(frame.sentence, 2 ** 32 - 1);
  assert.equal(frame.seq, 2 ** 31);
});

test("samples are PCM16 little-endian, scaled to [-1, 1)", () => {
  const buffer = audioFrame(7, 0, 0, [0, 16384, -16384, 32767, -32768, 1]);
  assert.deepEqual([...decodeSamples(buffer)], [0, 0.5, -0.5, 32767 / 32768, -1, 1 / 32768]);
  const bytes = new Uint8Array(audioFrame(7, 0, 0, [0]));
  bytes.set([0x00, 0x01], AUDIO_HEADER_BYTES); // 0x0100 = 256 little-endian (1 if it were read big-endian)
  assert.equal(decodeSamples(bytes.buffer)[0], 256 / 32768);
});

test("parseAudioFrame gives the header and the samples together", () => {
  const frame = parseAudioFrame(audioFrame(4, 5, 6, [-32768, 16384]));
  assert.equal(frame.turn, 4);
  assert.equal(frame.sentence, 5);
  assert.equal(frame.seq, 6);
  assert.equal(frame.sampleCount, 2);
  assert.ok(frame.samples instanceof Float32Array);
  assert.deepEqual([...frame.samples], [-1, 0.5]);
});

test("frames without a whole sample after the header are refused", () => {
  for (const length of [0, 1, 4, 11, 12, 13]) {
    assert.equal(parseAudioHeader(new ArrayBuffer(length)), null, `${length} bytes`);
    assert.equal(parseAudioFrame(new ArrayBuffer(length)), null, `${length} bytes`);
  }
  assert.equal(decodeSamples(new ArrayBuffer(5)).length, 0);
});

test("a trailing odd byte is ignored", () => {
  const frame = parseAudioFrame(audioFrame(1, 0, 0, [16384, -16384], { extraBytes: 1 }));
  assert.equal(frame.sampleCount, 2);
  assert.deepEqual([...frame.samples], [0.5, -0.5]);
});

test("typed-array views are read at their own offset", () => {
  const whole = new Uint8Array(8 + AUDIO_HEADER_BYTES + 2);
  whole.fill(0xee, 0, 8); // junk before the frame
  whole.set(new Uint8Array(audioFrame(9, 8, 7, [16384])), 8);
  const frame = parseAudioFrame(whole.subarray(8));
  assert.deepEqual({ turn: frame.turn, sentence: frame.sentence, seq: frame.seq }, { turn: 9, sentence: 8, seq: 7 });
  assert.deepEqual([...frame.samples], [0.5]);
});

test("anything that is not binary is refused", () => {
  for (const data of [null, undefined, "text", 12, {}, [1, 2, 3]]) assert.equal(parseAudioHeader(data), null);
});

// --- Playback.push on the parsed frames (a stand-in AudioContext) ---------------------------------

class FakeParam {
  setValueAtTime() {}
  linearRampToValueAtTime() {}
  cancelScheduledValues() {}
}

class FakeNode {
  constructor() {
    this.gain = new FakeParam();
  }
  connect(node) {
    return node;
  }
  disconnect() {}
}

class FakeSource extends FakeNode {
  constructor(context) {
    super();
    this.context = context;
    this.listeners = {};
  }
  addEventListener(type, listener) {
    this.listeners[type] = listener;
  }
  start(when) {
    this.startedAt = when;
    this.context.started.push(this);
  }
  stop() {
    this.stopped = true;
  }
}

class FakeContext {
  constructor() {
    this.currentTime = 0;
    this.destination = new FakeNode();
    this.buffers = [];
    this.started = [];
  }
  createGain() {
    return new FakeNode();
  }
  createAnalyser() {
    return new FakeNode();
  }
  createBufferSource() {
    return new FakeSource(this);
  }
  createBuffer(channels, length, rate) {
    const buffer = {
      channels,
      length,
      rate,
      duration: length / rate,
      copyToChannel(samples, channel) {
        this.samples = [...samples];
        this.channel = channel;
      },
    };
    this.buffers.push(buffer);
    return buffer;
  }
}

test("Playback schedules a frame's samples at its sentence's rate", () => {
  const context = new FakeContext();
  const playback = new Playback(context);
  playback.sentence({ turn_id: 2, sentence_id: 1, sample_rate: 22050 });
  playback.push(audioFrame(2, 1, 0, [16384, -32768]));
  playback.push(audioFrame(2, 0, 0, [0])); // no sentence event: the default rate
  assert.deepEqual(
    context.buffers.map(({ length, rate, samples }) => ({ length, rate, samples })),
    [
      { length: 2, rate: 22050, samples: [0.5, -1] },
      { length: 1, rate: 24000, samples: [0] },
    ],
  );
  assert.equal(playback.playing, true);
  assert.equal(playback.stats.chunksScheduled, 2);
});

test("Playback drops empty frames and audio of interrupted or older turns", () => {
  const context = new FakeContext();
  const playback = new Playback(context);
  playback.push(new ArrayBuffer(12)); // header only
  playback.push(audioFrame(3, 0, 0, [1]));
  playback.drop(3); // interrupted
  playback.push(audioFrame(3, 0, 1, [1])); // late frame of the interrupted turn
  playback.push(audioFrame(2, 0, 0, [1])); // an older turn
  playback.push(audioFrame(4, 0, 0, [1])); // the next turn plays
  assert.deepEqual(playback.stats, { chunksReceived: 5, chunksScheduled: 2, chunksPlayed: 0, chunksDropped: 2, secondsScheduled: 2 / 24000 });
  assert.equal(context.started.length, 2);
  assert.equal(context.started[0].stopped, true);
  assert.equal(playback.turn, 4);
});
