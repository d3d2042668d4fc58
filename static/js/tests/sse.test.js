import assert from "node:assert/strict";
import { test } from "node:test";

import { parseBlock, readEvents } from "../sse.js";

// A fetch() Response whose body arrives in the given pieces (strings or bytes).
function streamed(...pieces) {
  const encoder = new TextEncoder();
  const body = new ReadableStream({
    start(controller) {
      for (const piece of pieces) controller.enqueue(typeof piece === "string" ? encoder.encode(piece) : piece);
      controller.close();
    },
  });
  return new Response(body);
}

async function collect(response) {
  const events = [];
  for await (const event of readEvents(response)) events.push(event);
  return events;
}

test("parseBlock reads the event name and data", () => {
  assert.deepEqual(parseBlock('event: delta\ndata: {"text":"hi"}'), { event: "delta", data: '{"text":"hi"}' });
});

test("parseBlock defaults the event name to message", () => {
  assert.deepEqual(parseBlock("data: hello"), { event: "message", data: "hello" });
});

test("parseBlock joins data lines with newlines, CRLF or LF", () => {
  assert.deepEqual(parseBlock("data: one\r\ndata: two\ndata: three"), { event: "message", data: "one\ntwo\nthree" });
});

test("parseBlock strips one space after the colon, no more", () => {
  assert.equal(parseBlock("data:  two spaces").data, " two spaces");
  assert.equal(parseBlock("data:none").data, "none");
  assert.equal(parseBlock("data: a: b").data, "a: b");
});

test("parseBlock takes a field with no colon as an empty value", () => {
  assert.deepEqual(parseBlock("data\ndata"), { event: "message", data: "\n" });
});

test("parseBlock ignores comments, blank lines and unknown fields", () => {
  assert.deepEqual(parseBlock(": keep-alive\n\nid: 7\nretry: 100\nevent: done\ndata: {}"), { event: "done", data: "{}" });
});

test("parseBlock returns null for a block without data", () => {
  assert.equal(parseBlock(""), null);
  assert.equal(parseBlock(": ping"), null);
  assert.equal(parseBlock("event: delta"), null);
  assert.equal(parseBlock("garbage without any field"), null);
});

test("the last event line wins", () => {
  assert.equal(parseBlock("event: a\nevent: b\ndata: x").event, "b");
});

test("readEvents yields each event as its block completes, across chunk boundaries", async () => {
  const response = streamed("event: delta\nda", "ta: Hel", "lo\n", "\nevent: delta\ndata: world\n\n", ": ping\n\n", "event: done\ndata: {}\n\n");
  assert.deepEqual(await collect(response), [
    { event: "delta", data: "Hello" },
    { event: "delta", data: "world" },
    { event: "done", data: "{}" },
  ]);
});

test("readEvents handles CRLF separators split between chunks", async () => {
  const response = streamed("data: a\r\n\r", "\ndata: b\r\n", "\r\n");
  assert.deepEqual(await collect(response), [
    { event: "message", data: "a" },
    { event: "message", data: "b" },
  ]);
});

test("readEvents yields a final block that has no blank line after it", async () => {
  assert.deepEqual(await collect(streamed("data: first\n\ndata: last")), [
    { event: "message", data: "first" },
    { event: "message", data: "last" },
  ]);
});

test("readEvents decodes UTF-8 split inside a character", async () => {
  const bytes = new TextEncoder().encode("data: 你好\n\n");
  const response = streamed(bytes.slice(0, 8), bytes.slice(8)); // "你" is bytes 6-8
  assert.deepEqual(await collect(response), [{ event: "message", data: "你好" }]);
});

test("readEvents yields nothing for an empty or comment-only body", async () => {
  assert.deepEqual(await collect(streamed()), []);
  assert.deepEqual(await collect(streamed(": ping\n\n: ping\n\n")), []);
});

// A response body read by hand: the pieces, and whether the reader was released.
function fakeResponse(pieces, { failAfter = Infinity } = {}) {
  const log = { released: false, reads: 0 };
  const reader = {
    async read() {
      log.reads += 1;
      if (log.reads > failAfter) throw new Error("connection reset");
      return pieces.length ? { value: pieces.shift(), done: false } : { value: undefined, done: true };
    },
    releaseLock() {
      log.released = true;
    },
  };
  return { response: { body: { pipeThrough: () => ({ getReader: () => reader }) } }, log };
}

test("readEvents releases its reader when the loop stops early, without reading further", async () => {
  const { response, log } = fakeResponse(["data: 1\n\n", "data: 2\n\n"]);
  for await (const event of readEvents(response)) {
    assert.equal(event.data, "1");
    break;
  }
  assert.equal(log.released, true);
  assert.equal(log.reads, 1);
});

test("readEvents releases its reader when the stream fails, and the error comes through", async () => {
  const { response, log } = fakeResponse(["data: 1\n\n", "data: 2\n\n"], { failAfter: 1 });
  const seen = [];
  await assert.rejects(async () => {
    for await (const event of readEvents(response)) seen.push(event.data);
  }, /connection reset/);
  assert.deepEqual(seen, ["1"]);
  assert.equal(log.released, true);
});
