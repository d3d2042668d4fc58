import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { PERSONA_FIELDS, PERSONA_MAX_CHARS, personaBody, personaOver } from "../persona.js";

const DEFAULTS = { name: "魔镜", personality: "温暖、耐心", address: "你" };

describe("personaOver: what an empty field stands for", () => {
  test("blank and whitespace-only fields take what is beneath, the others stay (trimmed)", () => {
    const own = { name: "  小月 ", personality: "   ", address: "" };
    assert.deepEqual(personaOver(own, DEFAULTS), { name: "小月", personality: "温暖、耐心", address: "你" });
  });

  test("a voice's persona over the user's over the defaults", () => {
    const user = personaOver({ name: "", personality: "爱开玩笑", address: "" }, DEFAULTS);
    const voice = personaOver({ name: "Ada", personality: "", address: "" }, user);
    assert.deepEqual(voice, { name: "Ada", personality: "爱开玩笑", address: "你" });
  });

  test("nothing saved yet (an empty object or null) gives the defaults; missing defaults give blanks", () => {
    assert.deepEqual(personaOver({}, DEFAULTS), DEFAULTS);
    assert.deepEqual(personaOver(null, DEFAULTS), DEFAULTS);
    assert.deepEqual(personaOver({ name: "x" }, undefined), { name: "x", personality: "", address: "" });
  });

  test("values that are not text are ignored", () => {
    assert.deepEqual(personaOver({ name: 5, personality: null, address: ["a"] }, DEFAULTS), DEFAULTS);
  });
});

describe("personaBody: the PATCH body", () => {
  test("every field, trimmed; a blank one is sent blank (back to the default)", () => {
    assert.deepEqual(personaBody({ name: " 小月 ", personality: "\n", address: "叫我小明" }), {
      name: "小月",
      personality: "",
      address: "叫我小明",
    });
  });

  test("only the three persona fields, even when the form has others", () => {
    assert.deepEqual(Object.keys(personaBody({ name: "a", extra: "b" })), PERSONA_FIELDS);
  });

  test("the limits mirror the server's (memory/services.py PERSONA_LIMITS)", () => {
    assert.deepEqual(PERSONA_MAX_CHARS, { name: 40, personality: 300, address: 100 });
  });
});
