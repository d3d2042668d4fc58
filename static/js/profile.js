// The profile page: voices (list, preview, make current, delete, upload, their own persona),
// preferences, the companion's persona and memory.

import { api } from "./api.js";
import { h, statusLine } from "./dom.js";
import { errorMessage, loadStrings, t } from "./i18n.js";
import { PERSONA_FIELDS, PERSONA_MAX_CHARS, personaBody, personaOver } from "./persona.js";
import { ClipRecorder, recordingSupported } from "./voice/recorder.js";

loadStrings();

const $ = (id) => document.getElementById(id);
const ui = {
  list: $("speaker-list"),
  empty: $("speaker-empty"),
  count: $("speaker-count"),
  form: $("speaker-form"),
  fieldset: $("speaker-fieldset"),
  limitNote: $("speaker-limit-note"),
  submit: $("speaker-submit"),
  settingsForm: $("settings-form"),
};
const speakerStatus = statusLine($("speaker-status"));
const settingsStatus = statusLine($("settings-status"));

// --- Voices ----------------------------------------------------------------------------------

function speakerItem(speaker) {
  const current = speaker.is_current;
  return h(
    "li",
    { class: `speaker${current ? " is-current" : ""}`, dataset: { id: speaker.id, name: speaker.name } },
    h(
      "div",
      { class: "speaker-head" },
      h("strong", { class: "speaker-name", text: speaker.name }),
      current && h("span", { class: "badge badge-accent", text: t("current") }),
      h("span", { class: "muted speaker-duration", text: t("seconds", { seconds: speaker.audio_duration.toFixed(1) }) }),
    ),
    h("p", { class: "speaker-text", text: speaker.prompt_text }),
    h("audio", { controls: true, preload: "none", src: speaker.audio_url, "aria-label": t("recordingOf", { name: speaker.name }) }),
    speakerPersona(speaker.id),
    h(
      "div",
      { class: "speaker-actions" },
      h("button", { type: "button", class: "button button-small", "data-action": "switch", disabled: current, text: t("makeCurrent") }),
      h("button", { type: "button", class: "button button-small button-danger-outline", "data-action": "delete", text: t("delete") }),
    ),
  );
}

function showSpeakers({ speakers, limit }) {
  ui.list.replaceChildren(...speakers.map(speakerItem));
  ui.empty.hidden = speakers.length > 0;
  ui.count.textContent = t("count", { n: speakers.length, limit });
  const full = speakers.length >= limit;
  ui.fieldset.disabled = full;
  ui.limitNote.hidden = !full;
}

async function refreshSpeakers() {
  showSpeakers(await api("/api/speakers"));
}

ui.list.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  const item = button?.closest("li.speaker");
  if (!item) return;
  const { id, name } = item.dataset;
  try {
    if (button.dataset.action === "switch") {
      button.disabled = true;
      await api(`/api/speakers/${Number(id)}/switch`, { method: "POST" });
      await refreshSpeakers();
      speakerStatus(t("switched", { name }), { tone: "success", clearAfter: 4000 });
    } else if (button.dataset.action === "delete") {
      if (!window.confirm(t("confirmDelete", { name }))) return;
      button.disabled = true;
      await api(`/api/speakers/${Number(id)}`, { method: "DELETE" });
      await refreshSpeakers();
      speakerStatus(t("deleted"), { tone: "success", clearAfter: 4000 });
    }
  } catch (error) {
    button.disabled = false;
    speakerStatus(errorMessage(error), { tone: "error" });
  }
});

// --- Upload ----------------------------------------------------------------------------------

// Which input an API error belongs to, so the message can sit next to it.
const ERROR_FIELDS = {
  invalid_name: "name",
  duplicate_name: "name",
  invalid_prompt_text: "prompt_text",
  audio_too_large: "audio",
  audio_too_short: "audio",
  audio_too_long: "audio",
  audio_silent: "audio",
  audio_rate_too_low: "audio",
  empty_audio: "audio",
  undecodable_audio: "audio",
  invalid_audio: "audio",
};

function fieldError(name, message) {
  const input = ui.form.elements[name];
  const slot = input && document.getElementById(`${input.id}_error`);
  if (!slot) return false;
  slot.textContent = message || "";
  slot.hidden = !message;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
  return true;
}

function clearFieldErrors() {
  for (const name of ["name", "prompt_text", "audio"]) fieldError(name, "");
}

function showUploadError(error) {
  const message = errorMessage(error);
  let placed = false;
  if (error.fields && typeof error.fields === "object") {
    for (const [name, messages] of Object.entries(error.fields)) {
      placed = fieldError(name, [].concat(messages).join(" ")) || placed;
    }
  } else if (ERROR_FIELDS[error.code]) {
    placed = fieldError(ERROR_FIELDS[error.code], message);
  }
  speakerStatus(message, { tone: "error" });
  if (placed) ui.form.querySelector("[aria-invalid=true]")?.focus();
}

ui.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  clearFieldErrors();
  const data = new FormData(ui.form);
  if (recorded) data.set("audio", recorded, recorded.name);
  const file = data.get("audio");
  const maxBytes = Number(ui.form.dataset.maxBytes) || Infinity;
  if (file && file.size > maxBytes) return showUploadError({ code: "audio_too_large" });
  if (!data.get("make_current")) data.delete("make_current"); // unset: the server decides

  ui.submit.disabled = true;
  ui.form.setAttribute("aria-busy", "true");
  speakerStatus(t("uploading"));
  try {
    const speaker = await api("/api/speakers", { method: "POST", body: data });
    ui.form.reset();
    setRecording(null);
    await refreshSpeakers();
    speakerStatus(t("added", { name: speaker.name }), { tone: "success", clearAfter: 5000 });
  } catch (error) {
    showUploadError(error);
    if (error.code === "speaker_limit") refreshSpeakers().catch(() => {});
  } finally {
    ui.submit.disabled = false;
    ui.form.removeAttribute("aria-busy");
  }
});

// --- Recording in the browser and auto-filled transcripts -----------------------------------

const rec = {
  button: $("record-button"),
  label: $("record-label"),
  time: $("record-time"),
  preview: $("record-preview"),
  discard: $("record-discard"),
  file: $("speaker-audio"),
  prompt: $("speaker-prompt"),
  autofill: $("autofill-button"),
};
const recorder = new ClipRecorder();
let recorded = null; // the File recorded here, uploaded instead of the file input's
let recordTimer = 0;

function setRecording(file) {
  recorded = file;
  if (rec.preview.src) URL.revokeObjectURL(rec.preview.src);
  rec.preview.hidden = !file;
  rec.discard.hidden = !file;
  if (file) rec.preview.src = URL.createObjectURL(file);
  else rec.preview.removeAttribute("src");
  rec.file.required = !file; // a recording replaces the file
  rec.time.textContent = "";
}

if (!recordingSupported()) rec.button.hidden = true;

rec.button.addEventListener("click", async () => {
  clearFieldErrors();
  if (recorder.recording) {
    clearInterval(recordTimer);
    const file = await recorder.stop();
    rec.button.setAttribute("aria-pressed", "false");
    rec.label.textContent = t("record");
    setRecording(file);
    rec.file.value = "";
    speakerStatus(t("recorded"), { tone: "success", clearAfter: 5000 });
    return;
  }
  try {
    await recorder.start();
  } catch (error) {
    speakerStatus(errorMessage(error), { tone: "error" });
    return;
  }
  setRecording(null);
  const started = Date.now();
  rec.button.setAttribute("aria-pressed", "true");
  rec.label.textContent = t("stopRecording");
  speakerStatus(t("recording"));
  const tick = () => {
    rec.time.textContent = t("seconds", { seconds: ((Date.now() - started) / 1000).toFixed(1) });
  };
  tick();
  recordTimer = setInterval(tick, 200);
});
rec.discard.addEventListener("click", () => {
  setRecording(null);
  rec.button.focus();
});
rec.file.addEventListener("change", () => {
  if (rec.file.files.length) setRecording(null);
});

rec.autofill.addEventListener("click", async () => {
  const clip = recorded || rec.file.files[0];
  if (!clip) {
    speakerStatus(t("noClip"), { tone: "error" });
    return;
  }
  const body = new FormData();
  body.append("audio", clip, clip.name || "recording.webm");
  rec.autofill.disabled = true;
  rec.autofill.setAttribute("aria-busy", "true");
  speakerStatus(t("recognizing"));
  try {
    const { text } = await api("/api/recognize", { method: "POST", body });
    if (text) {
      rec.prompt.value = text;
      fieldError("prompt_text", "");
      speakerStatus(t("recognized"), { tone: "success", clearAfter: 6000 });
      rec.prompt.focus();
    } else {
      speakerStatus(t("nothingRecognized"), { tone: "error" });
    }
  } catch (error) {
    speakerStatus(errorMessage(error), { tone: "error" });
  } finally {
    rec.autofill.disabled = false;
    rec.autofill.removeAttribute("aria-busy");
  }
});

// --- Preferences -----------------------------------------------------------------------------

ui.settingsForm.addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = ui.settingsForm;
  const button = form.querySelector("button[type=submit]");
  const json = { voice_output: form.elements.voice_output.checked };
  const mode = form.elements.input_mode.value;
  if (mode) json.input_mode = mode;
  if (form.elements.spoken_language) json.spoken_language = form.elements.spoken_language.value;
  if (form.elements.time_zone) json.time_zone = form.elements.time_zone.value.trim();
  button.disabled = true;
  try {
    await api("/api/settings", { method: "PATCH", json });
    settingsStatus(t("saved"), { tone: "success", clearAfter: 4000 });
  } catch (error) {
    settingsStatus(errorMessage(error), { tone: "error" });
  } finally {
    button.disabled = false;
  }
});

// --- The companion's persona, and a voice's own ---------------------------------------------

const persona = { form: $("persona-form"), saved: {}, defaults: {} };
const personaStatus = statusLine($("persona-status"));

function formValues(form) {
  return Object.fromEntries(PERSONA_FIELDS.map((field) => [field, form.elements[field].value]));
}

// `values` null: only the placeholders (what an empty field stands for) change.
function fillPersonaForm(form, values, placeholders) {
  for (const field of PERSONA_FIELDS) {
    const input = form.elements[field];
    if (values) input.value = values[field] || "";
    input.placeholder = placeholders[field] || "";
  }
}

// Under a voice, an empty field stands for the companion's own (or its default).
function voicePlaceholders() {
  return personaOver(persona.saved, persona.defaults);
}

function showPersona() {
  fillPersonaForm(persona.form, persona.saved, persona.defaults);
  for (const form of ui.list.querySelectorAll(".speaker-persona form")) fillPersonaForm(form, null, voicePlaceholders());
}

function personaField(field, rows = 0) {
  const attrs = { name: field, maxlength: PERSONA_MAX_CHARS[field] };
  const input = rows ? h("textarea", { ...attrs, rows }) : h("input", { ...attrs, type: "text", autocomplete: "off" });
  return h("label", { class: "field" }, h("span", {}, h("strong", { text: t(`persona.${field}`) })), input);
}

// A voice's own persona: a disclosure in its list item, read from the server when first opened.
function speakerPersona(id) {
  const url = `/api/speakers/${Number(id)}/persona`;
  const status = h("p", { class: "status", role: "status", "aria-live": "polite" });
  const show = statusLine(status);
  // Disabled until the voice's persona is read (saving the empty form would clear it).
  const button = h("button", { type: "submit", class: "button button-small", disabled: true, text: t("persona.save") });
  const form = h(
    "form",
    { class: "stack persona-form" },
    h("p", { class: "help", text: t("persona.ownHelp") }),
    personaField("name"),
    personaField("personality", 2),
    personaField("address"),
    h("div", { class: "form-footer" }, button, status),
  );
  const details = h("details", { class: "speaker-persona" }, h("summary", { text: t("persona.own") }), form);
  fillPersonaForm(form, null, voicePlaceholders());
  let loaded = false;
  details.addEventListener("toggle", async () => {
    if (!details.open || loaded) return;
    try {
      fillPersonaForm(form, await api(url), voicePlaceholders());
      loaded = true;
      button.disabled = false;
    } catch (error) {
      show(errorMessage(error), { tone: "error" }); // opened again, it tries again
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      fillPersonaForm(form, await api(url, { method: "PATCH", json: personaBody(formValues(form)) }), voicePlaceholders());
      loaded = true;
      show(t("persona.ownSaved"), { tone: "success", clearAfter: 4000 });
    } catch (error) {
      show(errorMessage(error), { tone: "error" });
    } finally {
      button.disabled = false;
    }
  });
  return details;
}

// The voices the page was rendered with get theirs too (speakerItem adds it to re-rendered ones).
for (const item of ui.list.querySelectorAll("li.speaker")) {
  item.querySelector(".speaker-actions").before(speakerPersona(item.dataset.id));
}

persona.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = persona.form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const answer = await api("/api/settings", { method: "PATCH", json: { persona: personaBody(formValues(persona.form)) } });
    persona.saved = answer.persona;
    persona.defaults = answer.persona_defaults;
    showPersona();
    personaStatus(t("persona.saved"), { tone: "success", clearAfter: 4000 });
  } catch (error) {
    personaStatus(errorMessage(error), { tone: "error" });
  } finally {
    button.disabled = false;
  }
});

// The page renders the save button disabled: saving is possible once the saved persona is shown
// (else the empty form would clear it).
async function loadPersona() {
  const button = persona.form.querySelector("button[type=submit]");
  const answer = await api("/api/settings");
  persona.saved = answer.persona;
  persona.defaults = answer.persona_defaults;
  showPersona();
  button.disabled = false;
}

loadPersona().catch((error) => personaStatus(errorMessage(error), { tone: "error" }));

// --- Memory ----------------------------------------------------------------------------------

const mem = {
  list: $("memory-list"),
  empty: $("memory-empty"),
  form: $("memory-form"),
  text: $("memory-text"),
  enabled: $("memory-enabled"),
  forgetAll: $("memory-forget-all"),
};
const memoryStatus = statusLine($("memory-status"));

function memoryItem(memory) {
  return h(
    "li",
    { class: "memory", dataset: { id: memory.id } },
    h("span", { class: "memory-text", text: memory.text }),
    h(
      "span",
      { class: "memory-actions" },
      h("button", { type: "button", class: "button button-small", "data-action": "edit", text: t("memory.edit") }),
      h("button", { type: "button", class: "button button-small button-danger-outline", "data-action": "delete", text: t("memory.delete") }),
    ),
  );
}

async function refreshMemories() {
  const { memories, enabled } = await api("/api/memories");
  mem.list.replaceChildren(...memories.map(memoryItem));
  mem.empty.hidden = memories.length > 0;
  mem.enabled.checked = enabled;
}

mem.list.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  const item = button?.closest("li.memory");
  if (!item) return;
  const id = Number(item.dataset.id);
  try {
    if (button.dataset.action === "edit") {
      const input = h("input", { type: "text", maxlength: 200, class: "memory-input", value: item.querySelector(".memory-text").textContent });
      item.querySelector(".memory-text").replaceWith(input);
      button.dataset.action = "save";
      button.textContent = t("memory.save");
      input.focus();
    } else if (button.dataset.action === "save") {
      await api(`/api/memories/${id}`, { method: "PATCH", json: { text: item.querySelector(".memory-input").value } });
      await refreshMemories();
      memoryStatus(t("memory.saved"), { tone: "success", clearAfter: 4000 });
    } else if (button.dataset.action === "delete") {
      button.disabled = true;
      await api(`/api/memories/${id}`, { method: "DELETE" });
      await refreshMemories();
    }
  } catch (error) {
    button.disabled = false;
    memoryStatus(errorMessage(error), { tone: "error" });
  }
});

mem.form.addEventListener("submit", async (event) => {
  event.preventDefault();
  try {
    await api("/api/memories", { method: "POST", json: { text: mem.text.value } });
    mem.form.reset();
    await refreshMemories();
    memoryStatus(t("memory.saved"), { tone: "success", clearAfter: 4000 });
  } catch (error) {
    memoryStatus(errorMessage(error), { tone: "error" });
  }
});

mem.forgetAll.addEventListener("click", async () => {
  if (!window.confirm(t("memory.confirmForgetAll"))) return;
  try {
    await api("/api/memories/forget_all", { method: "POST" });
    await refreshMemories();
    memoryStatus(t("memory.forgotten"), { tone: "success", clearAfter: 4000 });
  } catch (error) {
    memoryStatus(errorMessage(error), { tone: "error" });
  }
});

mem.enabled.addEventListener("change", async () => {
  try {
    await api("/api/settings", { method: "PATCH", json: { memory_enabled: mem.enabled.checked } });
  } catch (error) {
    mem.enabled.checked = !mem.enabled.checked;
    memoryStatus(errorMessage(error), { tone: "error" });
  }
});

refreshMemories().catch((error) => memoryStatus(errorMessage(error), { tone: "error" }));
