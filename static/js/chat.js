// The chat page: conversations sidebar, message list, streamed replies, voice picker.

import { api, request } from "./api.js";
import { h, statusLine } from "./dom.js";
import { errorMessage, loadStrings, t } from "./i18n.js";
import { setMarkdown } from "./markdown.js";
import { initReminders } from "./reminders.js";
import { readEvents } from "./sse.js";
import { initVoice } from "./voice/ui.js";

loadStrings();

const $ = (id) => document.getElementById(id);
const app = $("chat-app");
const ui = {
  list: $("conversation-list"),
  listEmpty: $("conversation-empty"),
  newChat: $("new-chat"),
  sidebarToggle: $("sidebar-toggle"),
  title: $("chat-title"),
  messages: $("messages"),
  emptyState: $("empty-state"),
  form: $("composer"),
  input: $("message-input"),
  send: $("send-button"),
  clear: $("clear-history"),
  speaker: $("speaker-select"),
};
const status = statusLine($("status"));

const state = {
  conversationId: null, // null: a new conversation, created by its first message
  view: 0, // bumped on every switch, so late answers for an old view are dropped
  stream: null, // AbortController of the reply being streamed
};

// --- Sidebar ---------------------------------------------------------------------------------

function itemOf(id) {
  return ui.list.querySelector(`li[data-id="${Number(id)}"]`);
}

function conversationItem({ id, title }) {
  return h(
    "li",
    { class: "conversation", dataset: { id } },
    h("a", { class: "conversation-link", href: `?c=${id}`, text: title || t("untitled") }),
    h(
      "span",
      { class: "conversation-actions" },
      h("button", { type: "button", class: "icon-button", "data-action": "rename", title: t("rename"), "aria-label": t("rename"), text: "✎" }),
      h("button", { type: "button", class: "icon-button icon-danger", "data-action": "delete", title: t("delete"), "aria-label": t("delete"), text: "✕" }),
    ),
  );
}

// Add or update a conversation in the sidebar; `toTop` moves it first (newest activity).
function upsertConversation(conversation, { toTop = false } = {}) {
  let item = itemOf(conversation.id);
  if (!item) {
    item = conversationItem(conversation);
    ui.list.prepend(item);
  } else {
    if (conversation.title !== undefined) item.querySelector(".conversation-link").textContent = conversation.title || t("untitled");
    if (toTop && item !== ui.list.firstElementChild) ui.list.prepend(item);
  }
  ui.listEmpty.hidden = true;
  if (Number(conversation.id) === state.conversationId && conversation.title !== undefined) showTitle(conversation.title);
  return item;
}

function markSelected() {
  for (const item of ui.list.children) {
    const selected = Number(item.dataset.id) === state.conversationId;
    item.classList.toggle("is-selected", selected);
    const link = item.querySelector(".conversation-link");
    if (selected) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showTitle(title) {
  ui.title.textContent = title || t("untitled");
  document.title = `${ui.title.textContent} · MagicMirror`;
}

function startRename(item) {
  const link = item.querySelector(".conversation-link");
  const id = Number(item.dataset.id);
  const before = link.textContent;
  const input = h("input", { class: "rename-input", type: "text", maxlength: 100, value: before, "aria-label": t("renamePrompt") });
  let done = false;

  const finish = async (save) => {
    if (done) return;
    done = true;
    input.replaceWith(link);
    const title = input.value.trim();
    if (!save || title === before) return link.focus();
    try {
      const conversation = await api(`/api/conversations/${id}`, { method: "PATCH", json: { title } });
      upsertConversation(conversation);
      status(t("renamed"), { clearAfter: 3000 });
    } catch (error) {
      status(errorMessage(error), { tone: "error" });
    }
    link.focus();
  };

  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.isComposing) {
      event.preventDefault();
      finish(true);
    } else if (event.key === "Escape") {
      finish(false);
    }
  });
  input.addEventListener("blur", () => finish(true));
  link.replaceWith(input);
  input.focus();
  input.select();
}

async function deleteConversation(item) {
  const id = Number(item.dataset.id);
  const title = item.querySelector(".conversation-link")?.textContent || t("untitled");
  if (!window.confirm(t("confirmDelete", { title }))) return;
  try {
    await api(`/api/conversations/${id}`, { method: "DELETE" });
  } catch (error) {
    if (error.code !== "conversation_not_found") return status(errorMessage(error), { tone: "error" });
  }
  item.remove();
  ui.listEmpty.hidden = ui.list.children.length > 0;
  if (id === state.conversationId) newConversation();
  status(t("deleted"), { clearAfter: 3000 });
}

function setSidebarOpen(open) {
  app.dataset.sidebarOpen = String(open);
  ui.sidebarToggle.setAttribute("aria-expanded", String(open));
  ui.sidebarToggle.querySelector(".visually-hidden").textContent = open ? t("hideConversations") : t("showConversations");
}

ui.list.addEventListener("click", (event) => {
  const item = event.target.closest("li.conversation");
  if (!item) return;
  const action = event.target.closest("[data-action]")?.dataset.action;
  if (action === "rename") return startRename(item);
  if (action === "delete") return deleteConversation(item);
  if (event.target.closest(".conversation-link")) {
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.button !== 0) return; // new tab
    event.preventDefault();
    openConversation(Number(item.dataset.id), { push: true });
    setSidebarOpen(false);
  }
});
ui.newChat.addEventListener("click", () => {
  newConversation({ push: true });
  setSidebarOpen(false);
  ui.input.focus();
});
ui.sidebarToggle.addEventListener("click", () => setSidebarOpen(app.dataset.sidebarOpen !== "true"));
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape" && app.dataset.sidebarOpen === "true") setSidebarOpen(false);
});

// --- Messages --------------------------------------------------------------------------------

function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function scrollToBottom(force = false) {
  if (force || nearBottom()) ui.messages.scrollTop = ui.messages.scrollHeight;
}

// One message bubble. Text goes in as textContent (never HTML); CSS keeps the line breaks.
// "🔧 name → short result": the tools a reply called, collapsed (what the LLM was told is never read aloud).
function shortResult(result) {
  let value;
  try {
    value = JSON.parse(result);
  } catch {
    value = result;
  }
  if (value && typeof value === "object" && !Array.isArray(value) && "error" in value) return `⚠ ${value.error}`;
  const text = typeof value === "string" ? value : JSON.stringify(value);
  return text.length > 80 ? `${text.slice(0, 79)}…` : text;
}

function toolsNode(calls) {
  const names = [...new Set(calls.map((c) => c.name))].join(", ");
  return h(
    "details",
    { class: "msg-tools" },
    h("summary", { text: `🔧 ${names}` }),
    ...calls.map((c) => h("div", { class: `msg-tool msg-tool-${c.outcome}`, text: `🔧 ${c.name} → ${shortResult(c.result)}` })),
  );
}

function showTools(node, calls) {
  node.querySelector(".msg-tools")?.remove();
  if (calls.length) node.querySelector(".msg-text").before(toolsNode(calls));
}

function messageNode({ id, role, content = "", interrupted = false, error_code: errorCode = "", tool_calls: toolCalls = [], reminder_id: reminderId = null }) {
  const who = role === "user" ? t("you") : t("assistant");
  const node = h(
    "article",
    { class: `msg msg-${role}`, dataset: id ? { id } : {} },
    h("span", { class: "visually-hidden", text: `${who}: ` }),
    h("div", { class: "msg-text", text: content }),
  );
  if (reminderId) {
    // A reminder that fired: marked, so it does not read as an answer to the message before it.
    node.classList.add("msg-reminder");
    node.dataset.reminderId = reminderId;
    node.querySelector(".msg-text").before(
      h("span", { class: "msg-reminder-mark", title: t("reminders.mark") }, h("span", { "aria-hidden": "true", text: "⏰ " }), h("span", { class: "visually-hidden", text: `${t("reminders.mark")}: ` })),
    );
  }
  if (toolCalls.length) showTools(node, toolCalls);
  if (role === "assistant") setMarkdown(node.querySelector(".msg-text"), content);
  if (errorCode) markNote(node, errorMessage({ code: errorCode, message: t("replyFailed") }), content ? "warning" : "error");
  else if (interrupted) markNote(node, t("interrupted"));
  return node;
}

function markNote(node, text, tone = "warning") {
  node.querySelector(".msg-note")?.remove();
  node.classList.toggle("msg-error", tone === "error");
  node.append(h("p", { class: `msg-note msg-note-${tone}`, text }));
}

function showMessages(messages) {
  ui.messages.replaceChildren(...messages.filter((m) => m.role !== "system").map(messageNode));
  if (!messages.length) ui.messages.append(ui.emptyState);
  scrollToBottom(true);
}

function appendMessage(node) {
  ui.emptyState.remove();
  ui.messages.append(node);
  scrollToBottom(true);
  return node;
}

async function openConversation(id, { push = false } = {}) {
  const view = ++state.view;
  state.conversationId = id;
  voice?.setConversation(id);
  markSelected();
  ui.clear.disabled = false;
  const item = itemOf(id);
  showTitle(item ? item.querySelector(".conversation-link").textContent : "");
  setUrl(id, push);
  ui.messages.setAttribute("aria-busy", "true");
  status(t("loading"));
  try {
    const conversation = await api(`/api/conversations/${id}`);
    if (view !== state.view) return;
    upsertConversation(conversation);
    showTitle(conversation.title);
    showMessages(conversation.messages);
    status("");
  } catch (error) {
    if (view !== state.view) return;
    if (error.code === "conversation_not_found") {
      itemOf(id)?.remove();
      newConversation();
    }
    status(`${t("loadFailed")} ${errorMessage(error)}`, { tone: "error" });
  } finally {
    if (view === state.view) ui.messages.removeAttribute("aria-busy");
  }
}

function newConversation({ push = false } = {}) {
  state.view += 1;
  state.conversationId = null;
  voice?.setConversation(null);
  markSelected();
  ui.clear.disabled = true;
  showTitle("");
  showMessages([]);
  setUrl(null, push);
}

function setUrl(id, push) {
  const url = new URL(window.location.href);
  if (id) url.searchParams.set("c", id);
  else url.searchParams.delete("c");
  if (url.href === window.location.href) return;
  window.history[push ? "pushState" : "replaceState"]({ conversationId: id }, "", url);
}

window.addEventListener("popstate", () => routeFromUrl());

function routeFromUrl() {
  const id = Number(new URLSearchParams(window.location.search).get("c")) || null;
  if (id) openConversation(id);
  else newConversation();
}

ui.clear.addEventListener("click", async () => {
  const id = state.conversationId;
  if (!id || !window.confirm(t("confirmClear"))) return;
  try {
    await api("/api/clear_history", { method: "POST", json: { conversation_id: id } });
    if (id === state.conversationId) showMessages([]);
    status(t("cleared"), { clearAfter: 4000 });
  } catch (error) {
    status(errorMessage(error), { tone: "error" });
  }
});

// --- Sending and streaming -------------------------------------------------------------------

function setStreaming(controller) {
  state.stream = controller;
  const busy = Boolean(controller);
  ui.send.textContent = busy ? t("stop") : t("send");
  ui.send.classList.toggle("button-danger", busy);
  ui.send.type = busy ? "button" : "submit";
}

async function send(text) {
  const view = state.view;
  const conversationId = state.conversationId;
  const controller = new AbortController();
  setStreaming(controller);
  status(t("thinking"));

  const userNode = appendMessage(messageNode({ role: "user", content: text }));
  const replyNode = messageNode({ role: "assistant" });
  replyNode.classList.add("is-streaming");
  replyNode.setAttribute("aria-busy", "true"); // announced once complete, not per fragment
  const replyText = replyNode.querySelector(".msg-text");
  let replyRaw = "";
  let started = false; // the server accepted the message (it is saved)
  let failed = false;
  let freshConversation = false; // a tool started a new conversation: the next message goes there
  const toolCalls = [];

  try {
    const response = await request("/api/chat", {
      method: "POST",
      json: { message: text, conversation_id: conversationId },
      signal: controller.signal,
      accept: "text/event-stream, application/json", // errors before the stream are JSON
    });
    if (state.view === view) appendMessage(replyNode);
    for await (const { data } of readEvents(response)) {
      const event = JSON.parse(data);
      switch (event.type) {
        case "conversation":
          started = true;
          if (conversationId === null && state.view === view && state.conversationId === null) {
            state.conversationId = event.conversation.id;
            ui.clear.disabled = false;
            setUrl(event.conversation.id, false);
          }
          upsertConversation(event.conversation, { toTop: true });
          markSelected();
          break;
        case "user_message":
          userNode.dataset.id = event.message.id;
          break;
        case "delta": {
          const follow = nearBottom();
          replyRaw += event.text;
          setMarkdown(replyText, replyRaw);
          if (follow) scrollToBottom(true);
          break;
        }
        case "tool_result":
          toolCalls.push(event);
          showTools(replyNode, toolCalls);
          reminders?.toolResult(event);
          break;
        case "effect":
          if (event.effect === "speaker" && event.speaker && ui.speaker.querySelector(`option[value="${Number(event.speaker.id)}"]`)) {
            ui.speaker.value = String(event.speaker.id);
            ui.speaker.dataset.current = ui.speaker.value;
          } else if (event.effect === "new_conversation") {
            freshConversation = true;
          }
          break;
        case "done":
          if (event.message) replyNode.dataset.id = event.message.id;
          status("");
          break;
        case "error":
          failed = true;
          markNote(replyNode, errorMessage(event), replyText.textContent ? "warning" : "error");
          status(errorMessage(event), { tone: "error" });
          break;
        case "title":
          upsertConversation({ id: event.conversation_id, title: event.title });
          break;
        default:
          break; // unknown events are ignored: newer servers may send more
      }
    }
  } catch (error) {
    failed = true;
    if (error.name === "AbortError") {
      if (started) markNote(replyNode, t("interrupted"));
      else replyNode.remove();
      status(t("stopped"), { clearAfter: 4000 });
    } else if (!started) {
      // Refused before anything was saved: give the text back so nothing is lost.
      userNode.remove();
      replyNode.remove();
      if (!ui.input.value) ui.input.value = text;
      autoGrow();
      status(errorMessage(error), { tone: "error" });
    } else {
      markNote(replyNode, t("interrupted"));
      status(errorMessage(error), { tone: "error" });
    }
  } finally {
    replyNode.classList.remove("is-streaming");
    replyNode.removeAttribute("aria-busy");
    if (!replyText.textContent && !failed) replyNode.remove();
    if (state.view === view && !ui.messages.querySelector(".msg")) showMessages([]);
    setStreaming(null);
    if (freshConversation && state.view === view) newConversation({ push: true });
  }
}

function autoGrow() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${ui.input.scrollHeight}px`;
}

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  if (state.stream) return;
  const text = ui.input.value;
  if (!text.trim()) return ui.input.focus();
  ui.input.value = "";
  autoGrow();
  if (voice?.sendText(text)) return; // over the voice socket when connected (the reply is spoken)
  send(text);
});
ui.send.addEventListener("click", (event) => {
  if (!state.stream) return;
  event.preventDefault();
  state.stream.abort();
});
ui.input.addEventListener("input", autoGrow);
ui.input.addEventListener("keydown", (event) => {
  // Enter sends; Shift+Enter is a new line; Enter that confirms an IME composition is neither.
  if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
  event.preventDefault();
  ui.form.requestSubmit();
});

// --- Voice picker ----------------------------------------------------------------------------

function showSpeakers({ speakers, current_speaker_id: current }) {
  const options = speakers.map((s) => h("option", { value: s.id, text: s.name, selected: s.id === current }));
  if (current === null) options.unshift(h("option", { value: "", text: t("defaultVoice"), selected: true, disabled: true }));
  ui.speaker.replaceChildren(...options);
  ui.speaker.value = current === null ? "" : String(current);
  ui.speaker.disabled = speakers.length === 0;
  ui.speaker.dataset.current = ui.speaker.value;
}

async function refreshSpeakers() {
  try {
    showSpeakers(await api("/api/speakers"));
  } catch {
    // keep what the server rendered
  }
}

ui.speaker.dataset.current = ui.speaker.value;
ui.speaker.disabled = ui.speaker.querySelectorAll("option:not([disabled])").length === 0;
ui.speaker.addEventListener("change", async () => {
  const id = ui.speaker.value;
  const name = ui.speaker.selectedOptions[0]?.textContent || "";
  try {
    await api(`/api/speakers/${Number(id)}/switch`, { method: "POST" });
    ui.speaker.dataset.current = id;
    voice?.setSpeaker(Number(id));
    ui.speaker.querySelector('option[value=""]')?.remove();
    status(t("voiceSwitched", { name }), { clearAfter: 3000 });
  } catch (error) {
    ui.speaker.value = ui.speaker.dataset.current;
    status(errorMessage(error), { tone: "error" });
  }
});
// Back from the profile page (bfcache): the voices may have changed there.
window.addEventListener("pageshow", (event) => {
  if (event.persisted) refreshSpeakers();
});

// --- Voice -----------------------------------------------------------------------------------

// A conversation created by a voice turn (or a typed message sent over the socket).
function conversationStarted(conversation) {
  if (state.conversationId === null) {
    state.conversationId = conversation.id;
    ui.clear.disabled = false;
    setUrl(conversation.id, false);
  }
  upsertConversation(conversation, { toTop: true });
  markSelected();
}

// A reminder fired (announced by reminders.js): its message joins the conversation if that is the
// open one, and the conversation moves to the top of the sidebar.
const remindersShown = new Set(); // message ids of reminders shown (or being fetched) here

async function reminderFired({ conversation_id: id, message_id: messageId }) {
  if (!id || !messageId || remindersShown.has(messageId)) return;
  if (id !== state.conversationId && itemOf(id)) {
    upsertConversation({ id }, { toTop: true });
    markSelected();
    return;
  }
  remindersShown.add(messageId);
  const view = state.view;
  let conversation;
  try {
    conversation = await api(`/api/conversations/${Number(id)}`);
  } catch {
    remindersShown.delete(messageId); // the next poll brings it again
    return;
  }
  upsertConversation({ id, title: conversation.title }, { toTop: true });
  markSelected();
  if (id !== state.conversationId || view !== state.view) return;
  if (ui.messages.querySelector(`.msg[data-id="${Number(messageId)}"]`)) return;
  const message = conversation.messages.find((m) => m.id === messageId);
  if (message) appendMessage(messageNode(message));
}

const reminders = initReminders({ status, onFired: reminderFired });

const voice = initVoice({
  appendMessage,
  appendUserMessage: (content, id) => appendMessage(messageNode({ role: "user", content, id })),
  conversationId: () => state.conversationId,
  conversationStarted,
  markNote,
  messageNode,
  nearBottom,
  reminder: (event) => reminders?.fromVoice(event),
  scrollToBottom,
  showTools,
  toolResult: (event) => reminders?.toolResult(event),
  upsertConversation,
});

// --- Start -----------------------------------------------------------------------------------

(function start() {
  const requested = Number(new URLSearchParams(window.location.search).get("c")) || null;
  const newest = ui.list.firstElementChild ? Number(ui.list.firstElementChild.dataset.id) : null;
  if (requested || newest) openConversation(requested || newest);
  else newConversation();
  ui.input.focus({ preventScroll: true });
})();
