// The voice WebSocket (docs/protocol.md): hello -> start -> ready, JSON events, binary audio,
// and reconnection with backoff after a dropped socket, re-sending `start` for the same conversation.

import { parseEventFrame } from "./frames.js";

export const FINAL_CLOSE_CODES = new Set([4401, 4429]);

const PROTOCOL = 1;
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];

// Milliseconds to wait before reconnect attempt number `attempt` (from 0): the backoff step, +-20%
// jitter (random in [0, 1)) so that clients dropped together do not all come back at once.
export function reconnectDelay(attempt, random = Math.random()) {
  const step = BACKOFF_MS[Math.min(Math.max(0, attempt), BACKOFF_MS.length - 1)];
  return step * (0.8 + random * 0.4);
}

export function voiceUrl(location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/voice/`;
}

export class VoiceSocket {
  // config: the `start` fields (conversation_id, speaker_id, mode, sample_rate, voice_output);
  // handlers: onEvent(event), onAudio(ArrayBuffer), onConnection(state: "connecting"|"ready"|"closed"|"offline").
  constructor({ url = voiceUrl(), config = {}, onEvent = () => {}, onAudio = () => {}, onConnection = () => {} } = {}) {
    this.url = url;
    this.config = { ...config };
    this.handlers = { onEvent, onAudio, onConnection };
    this.ws = null;
    this.ready = false;
    this.attempt = 0;
    this.timer = null;
    this.closedByUs = false;
  }

  get isReady() {
    return this.ready && this.ws?.readyState === WebSocket.OPEN;
  }

  connect() {
    clearTimeout(this.timer);
    this.closedByUs = false;
    this.ready = false;
    this.handlers.onConnection("connecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.addEventListener("message", (message) => {
      if (ws !== this.ws) return;
      if (typeof message.data !== "string") {
        this.handlers.onAudio(message.data);
        return;
      }
      const event = parseEventFrame(message.data);
      if (event) this.handle(event);
    });
    ws.addEventListener("close", (close) => {
      if (ws !== this.ws) return;
      const wasReady = this.ready;
      this.ready = false;
      this.ws = null;
      // 4401: not logged in; 4429: the user has too many voice sockets open. Retrying would not help.
      if (this.closedByUs || FINAL_CLOSE_CODES.has(close.code)) {
        this.handlers.onConnection("closed", close.code);
        return;
      }
      this.handlers.onConnection("offline", close.code, wasReady);
      this.scheduleReconnect();
    });
  }

  handle(event) {
    switch (event.type) {
      case "hello":
        this.sendJson({ type: "start", protocol: PROTOCOL, ...this.config });
        break;
      case "ready":
        this.ready = true;
        this.attempt = 0;
        // What the server now uses (a tool may switch the voice or start a new conversation): a reconnect keeps it.
        if ("conversation" in event) this.config.conversation_id = event.conversation ? event.conversation.id : null;
        if ("speaker" in event && "speaker_id" in this.config) this.config.speaker_id = event.speaker ? event.speaker.id : null;
        this.handlers.onConnection("ready");
        break;
      case "conversation":
        // A new conversation was created by the first turn: a reconnect must continue it.
        this.config.conversation_id = event.id;
        break;
      default:
        break;
    }
    this.handlers.onEvent(event);
  }

  scheduleReconnect() {
    const delay = reconnectDelay(this.attempt);
    this.attempt += 1;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  sendJson(message) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  // A command once the session has started (text, audio_end, interrupt, configure, ping).
  send(message) {
    return this.isReady && this.sendJson(message);
  }

  sendAudio(buffer) {
    if (!this.isReady) return false;
    this.ws.send(buffer);
    return true;
  }

  // Change session fields; remembered for reconnects, sent at once when connected.
  configure(fields) {
    Object.assign(this.config, fields);
    return this.send({ type: "configure", ...fields });
  }

  close() {
    this.closedByUs = true;
    clearTimeout(this.timer);
    this.ws?.close(1000);
  }
}
