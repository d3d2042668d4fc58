// The persona editor's logic, kept free of the DOM (tested in static/js/tests/persona.test.js).
//
// A persona has three text fields; a blank one means "what lies beneath": a voice's own persona
// over the user's, the user's over the defaults (GET /api/settings `persona_defaults`).

export const PERSONA_FIELDS = ["name", "personality", "address"];
// The longest each field may be (memory/services.py PERSONA_LIMITS).
export const PERSONA_MAX_CHARS = { name: 40, personality: 300, address: 100 };

function text(value) {
  return typeof value === "string" ? value.trim() : "";
}

// What each field of `persona` stands for once its blanks are filled from `beneath`.
export function personaOver(persona, beneath) {
  return Object.fromEntries(PERSONA_FIELDS.map((field) => [field, text(persona?.[field]) || text(beneath?.[field])]));
}

// The PATCH body of a persona form: every field, trimmed (a blank one goes back to what is beneath).
export function personaBody(values) {
  return Object.fromEntries(PERSONA_FIELDS.map((field) => [field, text(values?.[field])]));
}
