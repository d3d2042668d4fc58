import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { VoiceSocket, reconnectDelay, voiceUrl } from "../voice/socket.js";

// A stand-in for the browser's WebSocket: records what the client sends; the test plays the server.
class FakeWebSocket {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 3;
  static all = [];

  constructor(url) {
    this.url = url;
    this.readyState = FakeWebSocket.CONNECTING;
    this.sent = [];
    this.listeners = { message: [], close: [] };
    FakeWebSocket.all.push(this);
  }
  addEventListener(type, listener) {
    this.listeners[type].push(listener);
  }
  send(data) {
    this.sent.push(data);
  }
  close(code = 1005) {
    this.drop(code);
  }
  // --- the server's side
  open() {
    this.readyState = FakeWebSocket.OPEN;
  }
  receive(data) {
    for (const listener of this.listeners.message) listener({ data });
  }
  event(event) {
    this.receive(JSON.stringify(event));
  }
  drop(code) {
    this.readyState = FakeWebSocket.CLOSED;
    for (const listener of this.listeners.close) listener({ code });
  }
  get json() {
    return this.sent.filter((data) => typeof data === "string").map((data) => JSON.parse(data));
  }
}

globalThis.WebSocket = FakeWebSocket;
const WS_URL = "ws://test/ws/voice/";

beforeEach(() => {
  FakeWebSocket.all = [];
});

function client(config = { mode: "ptt", sample_rate: 16000 }) {
  const log = { events: [], audio: [], connection: [] };
  const socket = new VoiceSocket({
    url: WS_URL,
    config,
    onEvent: (event) => log.events.push(event),
    onAudio: (buffer) => log.audio.push(buffer),
    onConnection: (...args) => log.connection.push(args),
  });
  return { socket, log };
}

// Connect and go through hello -> start -> ready; returns the fake socket.
function handshake(socket, ready = { type: "ready", protocol: 1, conversation: null }) {
  socket.connect();
  const ws = FakeWebSocket.all.at(-1);
  ws.open();
  ws.event({ type: "hello", protocol: 1 });
  ws.event(ready);
  return ws;
}

test("voiceUrl follows the page's scheme and host", () => {
  assert.equal(voiceUrl({ protocol: "https:", host: "mirror.example.com" }), "wss://mirror.example.com/ws/voice/");
  assert.equal(voiceUrl({ protocol: "http:", host: "127.0.0.1:8000" }), "ws://127.0.0.1:8000/ws/voice/");
});

test("reconnectDelay backs off, with +-20% jitter, up to 15 s", () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 50].map((attempt) => reconnectDelay(attempt, 0.5)), [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
  assert.equal(reconnectDelay(0, 0), 400);
  assert.ok(Math.abs(reconnectDelay(5, 0.999999) - 18000) < 0.01);
  assert.equal(reconnectDelay(-1, 0.5), 500);
});

test("hello is answered with start (protocol 1 and the config), ready makes the socket ready", () => {
  const { socket, log } = client({ conversation_id: null, mode: "handsfree", sample_rate: 16000, speaker_id: 3 });
  socket.connect();
  assert.deepEqual(log.connection, [["connecting"]]);
  const ws = FakeWebSocket.all[0];
  assert.equal(ws.url, WS_URL);
  ws.open();
  assert.equal(socket.isReady, false);
  ws.event({ type: "hello", protocol: 1 });
  assert.deepEqual(ws.json, [{ type: "start", protocol: 1, conversation_id: null, mode: "handsfree", sample_rate: 16000, speaker_id: 3 }]);
  ws.event({ type: "ready", protocol: 1, conversation: { id: 12, title: "t" } });
  assert.equal(socket.isReady, true);
  assert.equal(socket.config.conversation_id, 12);
  assert.deepEqual(log.connection.at(-1), ["ready"]);
  assert.deepEqual(log.events.map((event) => event.type), ["hello", "ready"]);
});

test("commands and audio are refused before ready, sent after", () => {
  const { socket } = client();
  socket.connect();
  const ws = FakeWebSocket.all[0];
  ws.open();
  assert.equal(socket.send({ type: "text", text: "hi" }), false);
  assert.equal(socket.sendAudio(new ArrayBuffer(4)), false);
  assert.deepEqual(ws.sent, []);
  ws.event({ type: "hello", protocol: 1 });
  ws.event({ type: "ready", protocol: 1, conversation: null });
  assert.equal(socket.send({ type: "text", text: "hi" }), true);
  const audio = new ArrayBuffer(4);
  assert.equal(socket.sendAudio(audio), true);
  assert.deepEqual(ws.json.at(-1), { type: "text", text: "hi" });
  assert.equal(ws.sent.at(-1), audio);
});

test("binary frames go to onAudio; JSON events to onEvent; malformed text frames are ignored", () => {
  const { socket, log } = client();
  const ws = handshake(socket);
  const before = log.events.length;
  const frame = new ArrayBuffer(14);
  ws.receive(frame);
  for (const junk of ["not json", "null", "[1]", "{}", '{"type":1}']) ws.receive(junk);
  ws.event({ type: "state", state: "listening" });
  assert.deepEqual(log.audio, [frame]);
  assert.deepEqual(log.events.slice(before), [{ type: "state", state: "listening" }]);
});

test("configure is remembered, and sent at once when ready", () => {
  const { socket } = client();
  assert.equal(socket.configure({ speaker_id: 5 }), false); // not connected yet
  const ws = handshake(socket);
  assert.equal(ws.json[0].speaker_id, 5);
  assert.equal(socket.configure({ mode: "handsfree" }), true);
  assert.deepEqual(ws.json.at(-1), { type: "configure", mode: "handsfree" });
});

test("a dropped socket reconnects with backoff and continues the conversation it created", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { socket, log } = client({ conversation_id: null, mode: "ptt", sample_rate: 16000 });
  const first = handshake(socket);
  first.event({ type: "conversation", turn_id: 1, id: 44, title: "hi" });
  first.drop(1006);
  assert.equal(socket.isReady, false);
  assert.deepEqual(log.connection.at(-1), ["offline", 1006, true]);
  assert.equal(FakeWebSocket.all.length, 1);
  t.mock.timers.tick(399);
  assert.equal(FakeWebSocket.all.length, 1); // not before 80% of 500 ms
  t.mock.timers.tick(201);
  assert.equal(FakeWebSocket.all.length, 2);
  const second = FakeWebSocket.all[1];
  second.open();
  second.event({ type: "hello", protocol: 1 });
  assert.equal(second.json[0].conversation_id, 44);

  // Late messages of the old socket are ignored.
  const before = log.events.length;
  first.event({ type: "state", state: "idle" });
  assert.equal(log.events.length, before);

  // Dropped again before ready: the next wait is longer (1 s step).
  second.drop(1006);
  assert.deepEqual(log.connection.at(-1), ["offline", 1006, false]);
  t.mock.timers.tick(799);
  assert.equal(FakeWebSocket.all.length, 2);
  t.mock.timers.tick(401);
  assert.equal(FakeWebSocket.all.length, 3);
});

test("4401 (not authenticated) and our own close do not reconnect", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { socket, log } = client();
  const ws = handshake(socket);
  ws.drop(4401);
  assert.deepEqual(log.connection.at(-1), ["closed", 4401]);
  t.mock.timers.tick(60_000);
  assert.equal(FakeWebSocket.all.length, 1);

  const other = client();
  const ws2 = handshake(other.socket);
  other.socket.close();
  assert.deepEqual(other.log.connection.at(-1), ["closed", 1000]);
  t.mock.timers.tick(60_000);
  assert.equal(FakeWebSocket.all.at(-1), ws2);
});

test("4429 (too many voice sockets for this user) does not reconnect", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { socket, log } = client();
  const ws = handshake(socket);
  ws.drop(4429);
  assert.deepEqual(log.connection.at(-1), ["closed", 4429]);
  t.mock.timers.tick(60_000);
  assert.equal(FakeWebSocket.all.at(-1), ws);
});
