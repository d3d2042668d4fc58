import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { firedSince, firedUrl, formatDue, knownZone, pageLocale, touchesReminders } from "../reminders.js";
import { initialState, reduce } from "../voice/state.js";

const fired = (id, firedAt) => ({ id, text: `r${id}`, state: "fired", fired_at: firedAt, conversation_id: 1, message_id: 10 + id });

describe("what is new since the last poll", () => {
  test("the latest fired_at becomes the next poll's moment; unseen ones are announced", () => {
    const rows = [fired(1, "2026-12-02T22:30:05.120000+08:00"), fired(2, "2026-12-02T14:31:00Z"), fired(3, "2026-12-02T14:29:59Z")];
    const { fresh, since } = firedSince(rows, { since: "2026-12-02T14:00:00Z", seen: new Set() });
    assert.deepEqual(
      fresh.map((r) => r.id),
      [1, 2, 3],
    );
    assert.equal(since, "2026-12-02T14:31:00Z"); // compared as moments, not as text (+08:00 is earlier)
  });

  test("a reminder announced already (by the voice socket) is not announced again", () => {
    const seen = new Set([2]);
    const { fresh } = firedSince([fired(1, "2026-12-02T14:30:00Z"), fired(2, "2026-12-02T14:31:00Z")], { seen });
    assert.deepEqual(
      fresh.map((r) => r.id),
      [1],
    );
    assert.deepEqual([...seen], [2]); // left as it was
  });

  test("nothing new keeps the moment; no moment yet takes the first one seen", () => {
    assert.deepEqual(firedSince([], { since: "2026-12-02T14:00:00+00:00" }), { fresh: [], since: "2026-12-02T14:00:00+00:00" });
    assert.equal(firedSince([fired(4, "2026-12-02T14:00:00Z")]).since, "2026-12-02T14:00:00Z");
    assert.equal(firedSince([fired(4, "2026-12-02T13:00:00Z")], { since: "2026-12-02T14:00:00Z" }).since, "2026-12-02T14:00:00Z");
  });

  test("the poll's URL encodes the moment (a + offset is not a space)", () => {
    const url = new URL(firedUrl("2026-12-02T22:30:05.120000+08:00"), "http://x");
    assert.equal(url.pathname, "/api/reminders");
    assert.equal(url.searchParams.get("state"), "fired");
    assert.equal(url.searchParams.get("fired_after"), "2026-12-02T22:30:05.120000+08:00");
    assert.equal(firedUrl(null), "/api/reminders?state=fired");
  });

  test("only the reminder tools refresh the panel", () => {
    assert.equal(touchesReminders({ type: "tool_result", name: "set_reminder" }), true);
    assert.equal(touchesReminders({ type: "tool_result", name: "cancel_reminder" }), true);
    assert.equal(touchesReminders({ type: "tool_result", name: "get_time" }), false);
    assert.equal(touchesReminders(undefined), false);
  });
});

describe("a due time in the user's time zone", () => {
  const now = new Date("2026-12-02T14:30:00Z"); // 22:30 in Shanghai, 14:30 in London

  test("today there: the time alone", () => {
    assert.equal(formatDue("2026-12-02T15:05:00Z", { timeZone: "Asia/Shanghai", locale: "zh-Hans", now }), "23:05");
    assert.equal(formatDue("2026-12-02T15:05:00Z", { timeZone: "Europe/London", locale: "en", now }), "15:05");
  });

  test("another day there: with the weekday and the date, in the page's language", () => {
    // 23:30 UTC on the 2nd is 07:30 on Thursday the 3rd in Shanghai, but still the 2nd in London.
    const zh = formatDue("2026-12-02T23:30:00Z", { timeZone: "Asia/Shanghai", locale: "zh-Hans", now });
    assert.match(zh, /12月3日/);
    assert.match(zh, /周四/);
    assert.match(zh, /07:30/);
    assert.equal(formatDue("2026-12-02T23:30:00Z", { timeZone: "Europe/London", locale: "en", now }), "23:30");
    const en = formatDue("2026-12-05T09:00:00Z", { timeZone: "Europe/London", locale: "en", now });
    assert.match(en, /Sat/);
    assert.match(en, /Dec 5/);
    assert.match(en, /09:00/);
    assert.doesNotMatch(en, /2026/);
  });

  test("next year: with the year", () => {
    assert.match(formatDue("2027-01-02T09:00:00Z", { timeZone: "Europe/London", locale: "en", now }), /2027/);
  });

  test("an unknown zone falls back to the browser's; a bad moment reads as nothing", () => {
    assert.equal(knownZone("Mars/Olympus"), undefined);
    assert.equal(knownZone("Asia/Shanghai"), "Asia/Shanghai");
    assert.equal(knownZone(""), undefined);
    assert.match(formatDue("2026-12-02T15:05:00Z", { timeZone: "Mars/Olympus", locale: "en", now }), /\d\d:\d\d/);
    assert.equal(formatDue("not a time", { timeZone: "Asia/Shanghai", now }), "");
  });

  test("the page's language tag is one Intl takes", () => {
    assert.equal(pageLocale("zh-hans"), "zh-Hans");
    assert.equal(pageLocale("en"), "en");
    assert.equal(pageLocale("not a tag!"), undefined);
  });
});

describe("the voice socket's reminder events", () => {
  const ready = { ...initialState(), connection: "ready" };

  test("a fired reminder becomes a notice effect and changes nothing else", () => {
    const event = { type: "reminder", id: 7, text: "关火", message_id: 41 };
    const { state, effects } = reduce(ready, { type: "event", event });
    assert.deepEqual(effects, [{ type: "reminder", event }]);
    assert.deepEqual(state, ready);
  });

  test("a tool's result is passed on (the panel refreshes after a reminder tool)", () => {
    const event = { type: "tool_result", turn_id: 2, id: "c1", name: "set_reminder", outcome: "ok", result: "{}" };
    const { effects } = reduce(ready, { type: "event", event });
    assert.deepEqual(effects, [{ type: "toolResult", event }]);
  });
});
