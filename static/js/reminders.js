// Reminders on the chat page: a notice when one fires (from the voice socket's `reminder` event, or
// found by polling GET /api/reminders?state=fired&fired_after=... while the page is visible), and the
// panel of pending reminders with their time in the user's time zone and a cancel button.
//
// The pure part (what is new since the last poll, the URL of a poll, how a due time reads) is
// exported for the unit tests; initReminders() wires it to the page.

import { api } from "./api.js";
import { h } from "./dom.js";
import { errorMessage, t } from "./i18n.js";

export const POLL_MS = 20_000; // while the page is visible; at once when it becomes visible again
export const PAGE_SIZE = 200; // the most reminders GET /api/reminders answers at once
export const REMINDER_TOOLS = new Set(["set_reminder", "list_reminders", "cancel_reminder"]);

// A `tool_result` event (chat stream or voice socket) of a tool that reads or changes reminders.
export function touchesReminders(event) {
  return Boolean(event && REMINDER_TOOLS.has(event.name));
}

// The poll for reminders fired after `since` (an ISO 8601 moment as the server wrote it).
export function firedUrl(since) {
  const query = new URLSearchParams({ state: "fired" });
  if (since) query.set("fired_after", since);
  return `/api/reminders?${query}`;
}

// The answer of a poll: the reminders to announce (those not `seen` yet, by id) and the next poll's
// `since` (the latest fired_at among them, or `since` as it was). `seen` is left as it was.
export function firedSince(rows, { since = null, seen = new Set() } = {}) {
  let latest = since;
  let latestMs = since ? Date.parse(since) : Number.NEGATIVE_INFINITY;
  const fresh = [];
  for (const row of rows) {
    const at = row.fired_at ? Date.parse(row.fired_at) : Number.NaN;
    if (at > latestMs) {
      latestMs = at;
      latest = row.fired_at;
    }
    if (!seen.has(row.id)) fresh.push(row);
  }
  return { fresh, since: latest };
}

// A time zone Intl knows, else undefined (the browser's own).
export function knownZone(timeZone) {
  if (!timeZone) return undefined;
  try {
    new Intl.DateTimeFormat("en", { timeZone });
    return timeZone;
  } catch {
    return undefined;
  }
}

function dayOf(date, timeZone) {
  return new Intl.DateTimeFormat("en-CA", { timeZone, year: "numeric", month: "2-digit", day: "2-digit" }).format(date);
}

// When a reminder is due, in `timeZone`, in `locale`: the time alone when it is today there, else
// with the weekday and date (and the year when it is not this year's).
export function formatDue(iso, { timeZone, locale, now = new Date() } = {}) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const zone = knownZone(timeZone);
  const time = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
  const options = { timeZone: zone, ...time };
  if (dayOf(date, zone) !== dayOf(now, zone)) {
    Object.assign(options, { weekday: "short", month: "short", day: "numeric" });
    if (dayOf(date, zone).slice(0, 4) !== dayOf(now, zone).slice(0, 4)) options.year = "numeric";
  }
  return new Intl.DateTimeFormat(locale || undefined, options).format(date);
}

// The page's language as a BCP 47 tag Intl takes ("zh-hans" -> "zh-Hans").
export function pageLocale(lang) {
  try {
    return Intl.getCanonicalLocales(lang || [])[0];
  } catch {
    return undefined;
  }
}

// hooks: {status(text, options): the page's status line, onFired(reminder): a fired reminder (an
// API row: id, text, conversation_id, message_id) for the conversation to show its message}.
export function initReminders(hooks) {
  const $ = (id) => document.getElementById(id);
  const ui = {
    list: $("reminder-list"),
    empty: $("reminder-empty"),
    zone: $("reminder-zone"),
    notices: $("reminder-notices"),
  };
  if (!ui.list) return null;
  const locale = pageLocale(document.documentElement.lang);
  const browserZone = new Intl.DateTimeFormat().resolvedOptions().timeZone;
  const seen = new Set(); // ids of the reminders announced on this page
  let since = $("chat-app")?.dataset.remindersSince || null; // the moment the server rendered the page
  let timeZone = "";
  let polls = Promise.resolve();
  let refreshes = 0;
  let timer = 0;

  // --- The notice --------------------------------------------------------------------------

  function announce({ id, text }) {
    if (seen.has(id)) return;
    seen.add(id);
    const message = t("reminders.notice", { text });
    const notice = h(
      "div",
      { class: "reminder-notice", role: "alert", dataset: { id } },
      h("span", { class: "reminder-notice-icon", "aria-hidden": "true", text: "⏰" }),
      h("span", { class: "reminder-notice-text", text: message }),
    );
    notice.append(
      h("button", {
        type: "button",
        class: "icon-button reminder-notice-close",
        title: t("reminders.dismiss"),
        "aria-label": t("reminders.dismiss"),
        text: "✕",
        onclick: () => notice.remove(),
      }),
    );
    ui.notices.append(notice);
    systemNotification(id, message);
  }

  // Only where the user allowed notifications already (this page never asks), and only when the
  // page is not in front of them.
  function systemNotification(id, message) {
    if (!("Notification" in window) || window.Notification.permission !== "granted") return;
    if (document.visibilityState === "visible" && document.hasFocus()) return;
    try {
      new window.Notification(t("reminders.title"), { body: message, tag: `reminder-${id}` });
    } catch {
      // some browsers show notifications only from a service worker: the notice on the page is enough
    }
  }

  // --- Polling for fired reminders ---------------------------------------------------------

  async function pollOnce() {
    for (;;) {
      let body;
      try {
        body = await api(firedUrl(since));
      } catch {
        return; // the next poll asks again from the same moment
      }
      const rows = body.reminders || [];
      const { fresh, since: next } = firedSince(rows, { since, seen });
      since = next;
      for (const row of fresh) announce(row);
      for (const row of rows) hooks.onFired?.(row);
      if (rows.length) refresh();
      if (rows.length < PAGE_SIZE) return;
    }
  }

  // One poll at a time, in order.
  function poll() {
    polls = polls.then(pollOnce);
    return polls;
  }

  function schedule() {
    clearTimeout(timer);
    if (document.visibilityState === "visible") timer = setTimeout(tick, POLL_MS);
  }

  async function tick() {
    clearTimeout(timer);
    await poll();
    schedule();
  }

  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") {
      clearTimeout(timer); // no polling while nobody looks
      return;
    }
    refresh(); // changed meanwhile, maybe in another tab
    tick();
  });

  // --- The panel of pending reminders ------------------------------------------------------

  function reminderItem(reminder) {
    const due = h("time", {
      class: "reminder-due",
      datetime: reminder.due_at,
      text: formatDue(reminder.due_at, { timeZone, locale }),
    });
    const cancel = h("button", {
      type: "button",
      class: "icon-button icon-danger reminder-cancel",
      title: t("reminders.cancel"),
      "aria-label": t("reminders.cancelOne", { text: reminder.text }),
      text: "✕",
    });
    cancel.addEventListener("click", () => cancelReminder(reminder, cancel));
    return h(
      "li",
      { class: "reminder", dataset: { id: reminder.id } },
      due,
      h("span", { class: "reminder-text", text: reminder.text }),
      cancel,
    );
  }

  function showPending(reminders) {
    ui.list.replaceChildren(...reminders.map(reminderItem));
    ui.empty.hidden = reminders.length > 0;
    const zone = knownZone(timeZone);
    ui.zone.textContent = zone && zone !== browserZone ? t("reminders.zone", { zone }) : "";
    ui.zone.hidden = !ui.zone.textContent;
  }

  // The pending reminders, again; an answer older than the latest asked for is dropped.
  async function refresh() {
    const mine = ++refreshes;
    try {
      const body = await api("/api/reminders?state=pending");
      if (mine !== refreshes) return;
      timeZone = body.time_zone || "";
      showPending(body.reminders || []);
    } catch {
      // keep what is shown; the next refresh tries again
    }
  }

  async function cancelReminder(reminder, button) {
    button.disabled = true;
    try {
      await api(`/api/reminders/${Number(reminder.id)}`, { method: "DELETE" });
      hooks.status?.(t("reminders.cancelled"), { clearAfter: 4000 });
    } catch (error) {
      hooks.status?.(errorMessage(error), { tone: "error" });
    }
    await refresh();
  }

  refresh();
  schedule();

  return {
    // The voice socket's `reminder` event ({id, text, message_id}): announced at once; the poll
    // that follows brings its conversation (for the message) and the pending list.
    fromVoice(event) {
      announce(event);
      tick();
    },
    // A `tool_result` of the chat stream or the voice socket.
    toolResult(event) {
      if (touchesReminders(event)) refresh();
    },
    refresh,
    poll,
  };
}
