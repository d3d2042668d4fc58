import assert from "node:assert/strict";
import { test } from "node:test";

import { describeVoice, voiceInfo } from "../admin/voice_text.js";

const STRINGS = {
  silent: "nothing",
  cloned: "{engine}/{voice} cloned",
  notCloned: "{engine}/{voice} own voice",
  "engine.piper": "Piper",
};
const t = (key, vars = {}) =>
  (STRINGS[key] ?? key).replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));

test("a voice that is the engine's own says so, with the engine's display name", () => {
  assert.equal(describeVoice({ engine: "piper", voice: "en_US-joe-medium", clones: false, duration: 2 }, t),
    "Piper/en_US-joe-medium own voice");
});

test("a cloned voice says it cloned; an unknown engine keeps its code", () => {
  assert.equal(describeVoice({ engine: "cosyvoice2", voice: "Anna", clones: true, duration: 1.5 }, t),
    "cosyvoice2/Anna cloned");
});

test("no audio (no engine speaks the language) is said plainly", () => {
  assert.equal(describeVoice({ engine: "piper", voice: "x", clones: false, duration: 0 }, t), "nothing");
  assert.equal(describeVoice({ engine: "", voice: "", clones: false, duration: 1 }, t), "nothing");
});

test("voiceInfo reads the X-TTS-* headers, the voice percent-decoded", () => {
  const headers = new Headers({
    "X-TTS-Engine": "cosyvoice2",
    "X-TTS-Voice": encodeURIComponent("安娜"),
    "X-TTS-Clones": "true",
    "X-Duration": "2.500",
  });
  assert.deepEqual(voiceInfo(headers), { engine: "cosyvoice2", voice: "安娜", clones: true, duration: 2.5 });
  assert.deepEqual(voiceInfo(new Headers({ "X-TTS-Voice": "100%" })), { engine: "", voice: "100%", clones: false, duration: 0 });
});
