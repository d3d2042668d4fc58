import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { displayState, initialState, present, reduce, settle, voiceErrorMessage } from "../voice/state.js";

// No strings are loaded in node: t(key) is the key itself, so messages read as their keys.

const PLAYING = { playing: true, hasPlayer: true };
const SILENT = { playing: false, hasPlayer: true };

function deepFreeze(value) {
  if (value && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const inner of Object.values(value)) deepFreeze(inner);
  }
  return value;
}

// Run actions from `state` (frozen, so a reducer that mutated its input would throw); returns the
// final state and all effects in order. An action may carry its `facts` (default: a silent player).
function run(state, ...actions) {
  const effects = [];
  for (const { facts = SILENT, ...action } of actions) {
    const result = reduce(deepFreeze(state), action, facts);
    state = result.state;
    effects.push(...result.effects);
  }
  return { state, effects };
}

const event = (type, fields = {}) => ({ type: "event", event: { type, ...fields } });
const ready = (mode = "ptt") => run(initialState({ mode }), { type: "connection", connection: "ready" }).state;
const types = (effects) => effects.map((effect) => effect.type);

// A turn started and streaming some text.
function streaming(text = "Hello") {
  const events = [event("turn", { turn_id: 1 })];
  if (text) events.push(event("delta", { turn_id: 1, text }));
  return run(ready(), ...events).state;
}

describe("connection", () => {
  test("starts offline, connecting, in the preferred mode", () => {
    const state = initialState({ mode: "handsfree" });
    assert.equal(state.mode, "handsfree");
    assert.equal(initialState({ mode: "bogus" }).mode, "ptt");
    assert.equal(initialState().mode, "ptt");
    const view = present(state);
    assert.equal(view.display, "offline");
    assert.deepEqual(view.status, { text: "voice.connecting", tone: "info" });
    assert.equal(view.micDisabled, true);
    assert.equal(view.stopDisabled, true);
  });

  test("ready: idle, the mic enabled, the status per mode", () => {
    assert.deepEqual(present(ready()).status, { text: "voice.idle", tone: "info" });
    assert.deepEqual(present(ready("handsfree")).status, { text: "voice.idleHandsfree", tone: "info" });
    const view = present(ready());
    assert.equal(view.display, "idle");
    assert.equal(view.micDisabled, false);
    assert.equal(view.micLabel, "voice.micHold");
    assert.equal(view.orbSource, null);
  });

  test("closed by the server: 4401 is an authentication error", () => {
    const { state } = run(ready(), { type: "connection", connection: "closed", code: 4401 });
    assert.equal(displayState(state), "offline");
    assert.deepEqual(present(state).status, { text: "error.not_authenticated", tone: "error" });
    const crowded = run(ready(), { type: "connection", connection: "closed", code: 4429 }).state;
    assert.deepEqual(present(crowded).status, { text: "error.too_many_sessions", tone: "error" });
    const other = run(ready(), { type: "connection", connection: "closed", code: 1000 }).state;
    assert.deepEqual(present(other).status, { text: "voice.closed", tone: "info" });
  });

  test("going offline stops talking (no audio_end) and ends the running reply as interrupted", () => {
    const talking = run(streaming("Hi"), { type: "press" }).state;
    const { state, effects } = run(talking, { type: "connection", connection: "offline", code: 1006 });
    assert.equal(state.talking, false);
    assert.equal(state.turn.done, true);
    assert.deepEqual(effects, [
      { type: "closeMic", send: false },
      { type: "turnEnd", turnId: 1, remove: false },
      { type: "turnNote", turnId: 1, note: "interrupted" },
    ]);
    assert.equal(present(state).display, "offline");
  });

  test("ready again resets the server's state to idle", () => {
    const thinking = run(ready(), event("state", { state: "thinking" }), { type: "connection", connection: "offline" }).state;
    assert.equal(thinking.serverState, "thinking");
    assert.equal(run(thinking, { type: "connection", connection: "ready" }).state.serverState, "idle");
  });
});

describe("push-to-talk", () => {
  test("press: listening, the reply's audio stopped, the mic opened", () => {
    const { state, effects } = run(ready(), { type: "press" });
    assert.equal(state.talking, true);
    assert.deepEqual(effects, [{ type: "audio" }, { type: "stopAudio" }, { type: "openMic" }]);
    const view = present(state);
    assert.equal(view.display, "listening");
    assert.equal(view.micPressed, true);
    assert.equal(view.orbSource, "capture");
    assert.deepEqual(view.status, { text: "voice.listening", tone: "info" });
  });

  test("press over a running reply drops that turn's audio", () => {
    assert.deepEqual(run(streaming(), { type: "press" }).effects[1], { type: "dropAudio", turnId: 1 });
  });

  test("press does nothing while offline, already talking, or in hands-free mode", () => {
    const offline = initialState();
    assert.deepEqual(run(offline, { type: "press" }), { state: offline, effects: [] });
    const talking = run(ready(), { type: "press" }).state;
    assert.deepEqual(run(talking, { type: "press" }).effects, []);
    assert.deepEqual(run(ready("handsfree"), { type: "press" }).effects, []);
    assert.deepEqual(run(ready(), { type: "click" }).effects, [], "a click is not a press in push-to-talk");
  });

  test("release closes the mic; audio_end goes out only if it was open and still push-to-talk", () => {
    const talking = run(ready(), { type: "press" }).state;
    const released = run(talking, { type: "release" });
    assert.equal(released.state.talking, false);
    assert.deepEqual(released.effects, [{ type: "closeMic", send: true }]);
    assert.deepEqual(run(released.state, { type: "micClosed", wasOpen: true, send: true }).effects, [
      { type: "send", message: { type: "audio_end" } },
    ]);
    assert.deepEqual(run(released.state, { type: "micClosed", wasOpen: false, send: true }).effects, []);
    assert.deepEqual(run(released.state, { type: "micClosed", wasOpen: true, send: false }).effects, []);
    const switched = run(released.state, { type: "setMode", mode: "handsfree" }).state;
    assert.ok(!run(switched, { type: "micClosed", wasOpen: true, send: true }).effects.some((effect) => effect.type === "send"));
    assert.deepEqual(run(ready(), { type: "release" }).effects, [], "nothing to release");
  });

  test("Space/Enter is a press in push-to-talk", () => {
    assert.equal(run(ready(), { type: "key" }).state.talking, true);
  });

  test("released before the microphone opened: it is closed again", () => {
    const { state } = run(ready(), { type: "press" }, { type: "release" });
    assert.deepEqual(run(state, { type: "micOpened" }).effects, [{ type: "closeMic", send: false }]);
    const talking = run(ready(), { type: "press" }).state;
    assert.deepEqual(run(talking, { type: "micOpened" }).effects, []);
  });

  test("a microphone that fails: not talking, its error shown", () => {
    const talking = run(ready(), { type: "press" }).state;
    const blocked = run(talking, { type: "micFailed", code: "mic_blocked" }).state;
    assert.equal(blocked.talking, false);
    assert.deepEqual(present(blocked).status, { text: "error.mic_blocked", tone: "error" });
    assert.equal(run(talking, { type: "micFailed" }).state.error, "error.mic_failed");
    assert.equal(run(blocked, { type: "press" }).state.error, "", "talking again clears it");
  });
});

describe("hands-free", () => {
  test("a click (or Space/Enter) toggles listening", () => {
    const on = run(ready("handsfree"), { type: "click" });
    assert.equal(on.state.talking, true);
    assert.deepEqual(types(on.effects), ["audio", "stopAudio", "openMic"]);
    assert.equal(present(on.state).micLabel, "voice.micStop");
    const off = run(on.state, { type: "key" });
    assert.equal(off.state.talking, false);
    assert.deepEqual(off.effects, [{ type: "closeMic", send: true }]);
    assert.equal(present(off.state).micLabel, "voice.micStart");
    assert.deepEqual(run(on.state, { type: "release" }).effects, [], "letting go does not stop hands-free listening");
  });

  test("switching to hands-free configures the session and starts listening; back to push-to-talk does not", () => {
    const on = run(ready(), { type: "setMode", mode: "handsfree" });
    assert.equal(on.state.mode, "handsfree");
    assert.deepEqual(on.effects, [{ type: "configure", fields: { mode: "handsfree" } }, { type: "audio" }, { type: "stopAudio" }, { type: "openMic" }]);
    const stopped = run(on.state, { type: "stopListening", send: false });
    assert.deepEqual(stopped.effects, [{ type: "closeMic", send: false }]);
    const off = run(stopped.state, { type: "setMode", mode: "ptt" });
    assert.deepEqual(off.effects, [{ type: "configure", fields: { mode: "ptt" } }]);
    assert.equal(off.state.talking, false);
  });

  test("listening over a reply that is playing shows speaking (the server decides on barge-in)", () => {
    const { state } = run(ready("handsfree"), { type: "click" });
    assert.equal(displayState(state, PLAYING), "speaking");
    assert.equal(displayState(state, SILENT), "listening");
    const ptt = run(ready(), { type: "press" }).state;
    assert.equal(displayState(ptt, PLAYING), "listening");
  });
});

describe("a spoken turn", () => {
  test("from the transcript to the end of the reply", () => {
    let { state } = run(ready(), { type: "press" }, event("state", { state: "listening" }), event("partial", { utterance_id: 1, text: "你" }));
    assert.equal(present(state).caption, "你");
    let effects;
    ({ state, effects } = run(state, { type: "release" }, event("state", { state: "thinking" })));
    assert.deepEqual(effects, [{ type: "closeMic", send: true }]);
    assert.equal(present(state).display, "thinking");

    ({ state, effects } = run(
      state,
      event("conversation", { turn_id: 1, id: 12, title: "你好" }),
      event("final", { utterance_id: 1, text: "你好", message_id: 81 }),
      event("turn", { turn_id: 1, user_message_id: 81, source: "voice" }),
    ));
    assert.equal(state.caption, "");
    assert.deepEqual(effects, [
      { type: "conversationStarted", id: 12, title: "你好" },
      { type: "userMessage", text: "你好", messageId: 81 },
      { type: "audio" },
      { type: "audioTurn", turnId: 1 },
      { type: "turnStart", turnId: 1 },
    ]);
    assert.equal(present(state).stopDisabled, false);

    ({ state, effects } = run(
      state,
      event("delta", { turn_id: 1, text: "你" }),
      event("delta", { turn_id: 9, text: "other turn" }),
      event("delta", { turn_id: 1, text: "好！" }),
      event("sentence", { turn_id: 1, sentence_id: 0, text: "你好！", sample_rate: 24000 }),
      event("state", { state: "speaking" }),
    ));
    assert.deepEqual(types(effects), ["turnText", "turnText", "sentence"]);
    assert.deepEqual(effects[1], { type: "turnText", turnId: 1, text: "你好！" });
    assert.equal(state.turn.text, "你好！");
    assert.equal(displayState(state, SILENT), "speaking", "audio on its way");
    const view = present(settle(state, PLAYING), PLAYING);
    assert.equal(view.display, "speaking");
    assert.equal(view.orbSource, "playback");
    assert.equal(view.subtitle, "你好！");

    ({ state, effects } = run(state, event("reply_done", { turn_id: 1, message_id: 82 }), event("title", { conversation_id: 12, title: "打招呼" })));
    assert.deepEqual(effects, [
      { type: "turnSaved", turnId: 1, messageId: 82 },
      { type: "turnEnd", turnId: 1, remove: false },
      { type: "conversationTitle", id: 12, title: "打招呼" },
    ]);
    assert.equal(settle(state, PLAYING).subtitle, "你好！", "the subtitle stays while the audio plays");

    ({ state, effects } = run(state, event("audio_done", { turn_id: 1 }), event("state", { state: "idle" })));
    assert.deepEqual(effects, []);
    const settled = settle(state, SILENT);
    assert.equal(settled.display, "idle");
    assert.equal(settled.subtitle, "", "cleared once nothing is spoken");
    assert.equal(present(settled, SILENT).stopDisabled, true);
  });

  test("the output rate from ready goes to the player; ready may change the mode", () => {
    const { state, effects } = run(ready(), event("ready", { mode: "handsfree", output: { sample_rate: 22050 } }));
    assert.deepEqual(effects, [{ type: "outputRate", rate: 22050 }]);
    assert.equal(state.outputRate, 22050);
    assert.equal(state.mode, "handsfree");
    const unset = run(ready(), event("ready", { output: { sample_rate: null } }));
    assert.deepEqual(unset.effects, []);
    assert.equal(unset.state.mode, "ptt");
  });

  test("silence (an empty final): a passing notice while idle, no message", () => {
    const { state, effects } = run(ready(), event("partial", { text: "x" }), event("final", { utterance_id: 2, text: "", message_id: null }));
    assert.deepEqual(effects, [{ type: "flashTimer" }]);
    assert.equal(state.caption, "");
    assert.deepEqual(present(state).status, { text: "noSpeech", tone: "info" });
    const busy = run(state, event("state", { state: "thinking" })).state;
    assert.equal(present(busy).status.text, "voice.thinking", "the notice shows only while idle");
    assert.deepEqual(present(run(state, { type: "flashExpired" }).state).status.text, "voice.idle");
  });

  test("a new turn while one is running ends it as interrupted (or removes it when empty)", () => {
    assert.deepEqual(run(streaming("Half"), event("turn", { turn_id: 2 })).effects.slice(0, 2), [
      { type: "turnEnd", turnId: 1, remove: false },
      { type: "turnNote", turnId: 1, note: "interrupted" },
    ]);
    const { state, effects } = run(streaming(""), event("turn", { turn_id: 2 }));
    assert.deepEqual(effects[0], { type: "turnEnd", turnId: 1, remove: true });
    assert.deepEqual(state.turn, { id: 2, text: "", done: false, interrupted: false });
  });

  test("a reply that ends without text is removed", () => {
    assert.deepEqual(run(streaming(""), event("reply_done", { turn_id: 1, message_id: null })).effects, [{ type: "turnEnd", turnId: 1, remove: true }]);
  });

  test("events of another turn, or with no turn at all, change nothing", () => {
    const state = streaming();
    for (const name of ["delta", "reply_done"]) {
      assert.deepEqual(run(state, event(name, { turn_id: 2, text: "x" })).effects, []);
      assert.deepEqual(run(ready(), event(name, { text: "x" })).effects, [], `${name} without a turn`);
    }
    const unknown = run(state, event("something_new", { turn_id: 1 }));
    assert.deepEqual(unknown, { state, effects: [] });
  });
});

describe("interrupting", () => {
  test("the stop button: interrupt sent, the reply ended and marked, its audio dropped", () => {
    const { state, effects } = run(streaming("Half a rep"), event("sentence", { turn_id: 1, sentence_id: 0, text: "Half" }), { type: "interrupt", facts: PLAYING });
    assert.deepEqual(effects.slice(1), [
      { type: "send", message: { type: "interrupt" } },
      { type: "turnEnd", turnId: 1, remove: false },
      { type: "turnNote", turnId: 1, note: "interrupted" },
      { type: "dropAudio", turnId: 1 },
    ]);
    assert.equal(state.subtitle, "");
    assert.equal(state.turn.interrupted, true);
    // Once is enough: a second interrupt (or the server's answer) adds no second note.
    const again = run(state, event("interrupted", { turn_id: 1, message_id: 82 }), { type: "interrupt", facts: PLAYING });
    assert.ok(!again.effects.some((effect) => effect.type.startsWith("turn")));
  });

  test("a finished reply whose audio still plays gets the note; a finished, silent one does not", () => {
    const done = run(streaming("All of it"), event("reply_done", { turn_id: 1 })).state;
    assert.deepEqual(run(done, { type: "interrupt", facts: PLAYING }).effects, [
      { type: "send", message: { type: "interrupt" } },
      { type: "turnNote", turnId: 1, note: "interrupted" },
      { type: "dropAudio", turnId: 1 },
    ]);
    assert.deepEqual(run(done, { type: "interrupt", facts: SILENT }).effects, [
      { type: "send", message: { type: "interrupt" } },
      { type: "dropAudio", turnId: 1 },
    ]);
  });

  test("nothing running: the interrupt still goes out, for the server to answer", () => {
    assert.deepEqual(run(ready(), { type: "interrupt" }).effects, [
      { type: "send", message: { type: "interrupt" } },
      { type: "dropAudio", turnId: undefined },
    ]);
  });

  test("the server's interrupted event (barge-in) marks its turn only", () => {
    const state = streaming("Some");
    const own = run(state, event("interrupted", { turn_id: 1, message_id: 5 }));
    assert.deepEqual(types(own.effects), ["turnEnd", "turnNote", "dropAudio"]);
    const none = run(state, event("interrupted", { turn_id: null, message_id: null }));
    assert.deepEqual(none.effects, [{ type: "dropAudio", turnId: undefined }]);
    assert.equal(none.state.turn.done, false);
    const other = run(state, event("interrupted", { turn_id: 7 }));
    assert.deepEqual(other.effects, [{ type: "dropAudio", turnId: 7 }]);
  });

  test("opening another conversation interrupts a running reply", () => {
    assert.deepEqual(types(run(streaming(), { type: "setConversation", id: 5 }).effects), ["send", "turnEnd", "turnNote", "dropAudio", "configure"]);
    assert.deepEqual(run(ready(), { type: "setConversation", id: null }).effects, [{ type: "configure", fields: { conversation_id: null } }]);
  });
});

describe("errors", () => {
  test("error codes of a family share one message; others use the server's text", () => {
    assert.equal(voiceErrorMessage({ code: "voice_worker_timeout" }), "error.voice_unavailable");
    assert.equal(voiceErrorMessage({ code: "voice_unavailable" }), "error.voice_unavailable");
    assert.equal(voiceErrorMessage({ code: "asr_failed" }), "error.asr_failed");
    assert.equal(voiceErrorMessage({ code: "asr_model_missing" }), "error.asr_failed");
    assert.equal(voiceErrorMessage({ code: "tts_timeout" }), "error.tts_failed");
    assert.equal(voiceErrorMessage({ code: "mic_missing" }), "error.mic_missing");
    assert.equal(voiceErrorMessage({ code: "bad_json", message: "The frame is not JSON." }), "The frame is not JSON.");
    assert.equal(voiceErrorMessage({}), "network");
  });

  test("an error before any reply text keeps the bubble with the error under it", () => {
    const { state, effects } = run(streaming(""), event("error", { code: "tts_failed", message: "x", turn_id: 1 }));
    assert.deepEqual(effects, [
      { type: "turnNote", turnId: 1, note: "error.tts_failed", tone: "error" },
      { type: "turnEnd", turnId: 1, remove: false },
    ]);
    assert.equal(state.turn.done, true);
    assert.deepEqual(present(state).status, { text: "error.tts_failed", tone: "error" });
  });

  test("an error after some text is a warning; the reply goes on", () => {
    const { state, effects } = run(streaming("Some"), event("error", { code: "tts_failed", turn_id: 1 }));
    assert.deepEqual(effects, [{ type: "turnNote", turnId: 1, note: "error.tts_failed", tone: "warning" }]);
    assert.equal(state.turn.done, false);
  });

  test("an error of no turn only shows; listening or a new turn clears it", () => {
    const { state, effects } = run(ready(), event("error", { code: "utterance_too_long", message: "Too long" }));
    assert.deepEqual(effects, []);
    assert.equal(present(state).status.text, "Too long");
    assert.equal(run(state, event("state", { state: "listening" })).state.error, "");
    assert.equal(run(state, event("turn", { turn_id: 3 })).state.error, "");
    assert.equal(run(state, event("state", { state: "thinking" })).state.error, "Too long");
  });
});

describe("typed messages over the socket", () => {
  test("pending: audio allowed and a running reply's audio dropped; sent: shown, thinking", () => {
    assert.deepEqual(run(ready(), { type: "textPending" }).effects, [{ type: "audio" }]);
    assert.deepEqual(run(streaming(), { type: "textPending" }).effects, [{ type: "audio" }, { type: "dropAudio", turnId: 1 }]);
    const errored = run(ready(), event("error", { code: "x", message: "old error" })).state;
    const { state, effects } = run(errored, { type: "textSent", text: "讲个笑话" });
    assert.deepEqual(effects, [{ type: "userMessage", text: "讲个笑话" }]);
    assert.equal(state.error, "");
    assert.equal(present(state).display, "thinking");
    assert.equal(present(state).stopDisabled, false);
  });
});

describe("display", () => {
  test("the display state, case by case", () => {
    const base = ready();
    const turn = (fields) => ({ id: 1, text: "", done: false, interrupted: false, ...fields });
    const cases = [
      [{ connection: "connecting" }, PLAYING, "offline"],
      [{}, SILENT, "idle"],
      [{}, PLAYING, "speaking"],
      [{ serverState: "thinking" }, SILENT, "thinking"],
      [{ turn: turn({}) }, SILENT, "thinking"],
      [{ turn: turn({ text: "x" }) }, SILENT, "idle"],
      [{ turn: turn({ text: "x" }), serverState: "speaking" }, SILENT, "speaking"],
      [{ turn: turn({ text: "x" }), serverState: "speaking" }, { playing: false, hasPlayer: false }, "idle"],
      [{ turn: turn({ text: "x", done: true }), serverState: "speaking" }, SILENT, "idle"],
      [{ talking: true }, PLAYING, "listening"],
      [{ talking: true, mode: "handsfree" }, SILENT, "listening"],
      [{ talking: true, mode: "handsfree", serverState: "thinking" }, SILENT, "listening"],
    ];
    for (const [fields, facts, expected] of cases) {
      assert.equal(displayState({ ...base, ...fields }, facts), expected, JSON.stringify({ fields, facts }));
    }
  });

  test("settle records what is shown and returns the same state when nothing changed", () => {
    const state = settle(ready(), SILENT);
    assert.equal(state.display, "idle");
    assert.equal(settle(state, SILENT), state);
    assert.notEqual(settle(state, PLAYING), state);
    assert.equal(settle(state, PLAYING).display, "speaking");
  });

  test("reduce leaves its input alone and refuses unknown actions", () => {
    const state = deepFreeze(streaming("abc"));
    const { state: next } = reduce(state, event("delta", { turn_id: 1, text: "d" }));
    assert.equal(state.turn.text, "abc");
    assert.equal(next.turn.text, "abcd");
    assert.throws(() => reduce(state, { type: "nope" }), /unknown voice action/);
    assert.throws(() => reduce(state, { type: "toString" }), /unknown voice action/);
    assert.throws(() => reduce(state, {}), /unknown voice action/);
  });
});

describe("barge-in: reply_paused and reply_resumed", () => {
  test("a paused reply holds its audio and plays on when resumed", () => {
    const paused = run(streaming(), event("reply_paused", { turn_id: 1 }));
    assert.deepEqual(paused.effects, [{ type: "pauseAudio" }]);
    assert.equal(paused.state.replyPaused, true);
    const resumed = run(paused.state, event("reply_resumed", { turn_id: 1 }));
    assert.deepEqual(resumed.effects, [{ type: "resumeAudio" }]);
    assert.equal(resumed.state.replyPaused, false);
  });

  test("an interruption after the pause drops the held audio; other turns' events do nothing", () => {
    const paused = run(streaming(), event("reply_paused", { turn_id: 1 })).state;
    const cut = run(paused, event("interrupted", { turn_id: 1, message_id: 3 }));
    assert.ok(types(cut.effects).includes("dropAudio"));
    assert.equal(cut.state.replyPaused, false);
    assert.deepEqual(run(cut.state, event("reply_resumed", { turn_id: 1 })).effects, []);
    assert.deepEqual(run(streaming(), event("reply_paused", { turn_id: 9 })).effects, []);
  });
});
