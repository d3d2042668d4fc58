import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { initialState, noticeMessage, reduce } from "../voice/state.js";

// No strings are loaded in node: t(key) is the key itself, so an untranslated notice falls back to the
// server's own sentence.

describe("notice events", () => {
  const event = {
    type: "notice",
    code: "tts_language_unsupported",
    language: "ja",
    turn_id: 3,
    message: "No voice here speaks this language (ja): such sentences are shown, not spoken.",
  };

  test("a notice becomes a status-line effect and changes nothing else", () => {
    const state = { ...initialState(), connection: "ready" };
    const { state: next, effects } = reduce(state, { type: "event", event });
    assert.deepEqual(effects, [{ type: "notice", code: "tts_language_unsupported", text: event.message }]);
    assert.deepEqual({ ...next, display: null }, { ...state, display: null });
  });

  test("without a translated string the server's message is shown", () => {
    assert.equal(noticeMessage(event), event.message);
    assert.equal(noticeMessage({ type: "notice", code: "other" }), "");
  });
});
