// Voice on the chat page: the socket, microphone, playback and orb wired to the controls
// (push-to-talk mic button, hands-free toggle, stop), captions, subtitles and the status line.
// What the controls are in is decided by state.js; this file carries out its effects and paints it.

import { statusLine } from "../dom.js";
import { setMarkdown } from "../markdown.js";
import { CAPTURE_RATE, Capture } from "./capture.js";
import { Orb } from "./orb.js";
import { Playback } from "./playback.js";
import { VoiceSocket } from "./socket.js";
import { FLASH_MS, initialState, present, reduce, settle } from "./state.js";

const EMPTY_STATS = Object.freeze({ chunksReceived: 0, chunksScheduled: 0, chunksPlayed: 0, chunksDropped: 0, secondsScheduled: 0 });

// chat: hooks into the chat page (see chat.js).
export function initVoice(chat) {
  const $ = (id) => document.getElementById(id);
  const ui = {
    app: $("chat-app"),
    stage: $("voice-stage"),
    canvas: $("orb"),
    status: $("voice-state"),
    caption: $("voice-caption"),
    subtitle: $("voice-subtitle"),
    mic: $("mic-button"),
    micLabel: $("mic-label"),
    handsfree: $("handsfree-toggle"),
    stop: $("voice-stop"),
  };
  if (!ui.stage) return null;
  const showStatus = statusLine(ui.status);
  const prefs = ui.app.dataset;

  let state = initialState({ mode: prefs.inputMode });
  const media = { context: null, player: null, capture: null, pendingSentences: [] };
  let bubble = null; // the latest reply's message: {node, textNode, turnId, tools}
  let flashTimer = 0;
  const orb = new Orb(ui.canvas);

  // What the audio says now, for state.js.
  function facts() {
    return { playing: Boolean(media.player?.playing), hasPlayer: Boolean(media.player) };
  }

  // Run one action through the state machine, carry out its effects, repaint. Resolves when the
  // effects that take time (the microphone) are done.
  function dispatch(action) {
    const { state: next, effects } = reduce(state, action, facts());
    state = next;
    const pending = effects.map(run);
    render();
    return Promise.all(pending);
  }

  // --- Audio graph (created on the first gesture: browsers start audio only after one) --------

  function audio() {
    if (!media.context) {
      const Context = window.AudioContext || window.webkitAudioContext;
      media.context = new Context({ latencyHint: "interactive" });
      media.player = new Playback(media.context, { onStart: render, onIdle: render });
      if (state.outputRate) media.player.defaultRate = state.outputRate;
      media.capture = new Capture(media.context, { onFrame: (frame) => socket.sendAudio(frame) });
    }
    if (media.context.state === "suspended") media.context.resume().catch(() => {});
    return media.context;
  }

  async function openMic() {
    try {
      await media.capture.start();
    } catch (error) {
      dispatch({ type: "micFailed", code: error.code });
      return;
    }
    dispatch({ type: "micOpened" });
  }

  async function closeMic(send) {
    const wasOpen = media.capture?.active;
    await media.capture?.stop();
    dispatch({ type: "micClosed", wasOpen, send });
  }

  // --- Socket ----------------------------------------------------------------------------------

  const socket = new VoiceSocket({
    config: {
      conversation_id: chat.conversationId(),
      mode: state.mode,
      sample_rate: CAPTURE_RATE,
      ...(prefs.speakerId ? { speaker_id: Number(prefs.speakerId) } : {}),
    },
    onEvent: (event) => dispatch({ type: "event", event }),
    onAudio(buffer) {
      audio();
      media.player.push(buffer);
    },
    onConnection: (connection, code) => dispatch({ type: "connection", connection, code }),
  });

  // --- Effects ---------------------------------------------------------------------------------

  function run(effect) {
    switch (effect.type) {
      case "audio":
        audio();
        break;
      case "outputRate":
        if (media.player) media.player.defaultRate = effect.rate;
        break;
      case "sentence":
        if (media.player) media.player.sentence(effect.event);
        else media.pendingSentences.push(effect.event); // told to the player once it exists
        break;
      case "audioTurn":
        for (const sentence of media.pendingSentences) media.player.sentence(sentence);
        media.pendingSentences = [];
        media.player.beginTurn(effect.turnId);
        break;
      case "dropAudio":
        media.player?.drop(effect.turnId);
        break;
      case "stopAudio":
        media.player?.stop();
        break;
      case "pauseAudio":
        media.player?.pause();
        break;
      case "resumeAudio":
        media.player?.resume();
        break;
      case "openMic":
        return openMic();
      case "closeMic":
        return closeMic(effect.send);
      case "send":
        socket.send(effect.message);
        break;
      case "configure":
        socket.configure(effect.fields);
        break;
      case "userMessage":
        chat.appendUserMessage(effect.text, effect.messageId);
        break;
      case "conversationStarted":
        chat.conversationStarted({ id: effect.id, title: effect.title });
        break;
      case "conversationTitle":
        chat.upsertConversation({ id: effect.id, title: effect.title });
        break;
      case "notice":
        showStatus(effect.text, { tone: "info" });
        break;
      case "flashTimer":
        clearTimeout(flashTimer);
        flashTimer = setTimeout(() => dispatch({ type: "flashExpired" }), FLASH_MS);
        break;
      case "turnStart": {
        const node = chat.messageNode({ role: "assistant" });
        node.classList.add("is-streaming");
        node.setAttribute("aria-busy", "true");
        bubble = { node, textNode: node.querySelector(".msg-text"), turnId: effect.turnId, tools: [] };
        chat.appendMessage(node);
        break;
      }
      case "turnText": {
        const follow = chat.nearBottom();
        setMarkdown(bubble.textNode, effect.text);
        if (follow) chat.scrollToBottom(true);
        break;
      }
      case "turnSaved":
        bubble.node.dataset.id = effect.messageId;
        break;
      case "turnNote":
        chat.markNote(bubble.node, effect.note, effect.tone);
        break;
      case "toolResult":
        if (bubble && effect.event.turn_id === bubble.turnId) {
          bubble.tools.push(effect.event); // shown as in a typed turn: "🔧 name → short result"
          chat.showTools?.(bubble.node, bubble.tools);
        }
        chat.toolResult?.(effect.event);
        break;
      case "reminder":
        chat.reminder?.(effect.event);
        break;
      case "turnEnd":
        bubble.node.classList.remove("is-streaming");
        bubble.node.removeAttribute("aria-busy");
        if (effect.remove) bubble.node.remove();
        break;
      default:
        throw new Error(`unknown voice effect: ${effect.type}`);
    }
    return undefined;
  }

  // --- What the user sees ----------------------------------------------------------------------

  function render() {
    const now = facts();
    state = settle(state, now);
    const view = present(state, now);
    ui.stage.dataset.state = view.display;
    orb.setState(view.display);
    orb.setSource(view.orbSource === "playback" ? media.player?.analyser : view.orbSource === "capture" ? media.capture?.analyser : null);
    const { text, tone } = view.status;
    if (ui.status.textContent !== text || ui.status.dataset.tone !== tone) showStatus(text, { tone });
    if (ui.caption.textContent !== view.caption) ui.caption.textContent = view.caption;
    ui.caption.hidden = !view.caption;
    if (ui.subtitle.textContent !== view.subtitle) ui.subtitle.textContent = view.subtitle;

    ui.handsfree.setAttribute("aria-pressed", String(view.handsfree));
    ui.mic.setAttribute("aria-pressed", String(view.micPressed));
    ui.mic.disabled = view.micDisabled;
    ui.micLabel.textContent = view.micLabel;
    ui.mic.title = view.micLabel;
    ui.stop.disabled = view.stopDisabled;
  }

  // --- Controls --------------------------------------------------------------------------------

  // Push-to-talk: press and hold (pointer or Space/Enter); hands-free: a click toggles listening.
  ui.mic.addEventListener("pointerdown", (event) => {
    if (state.mode !== "ptt" || event.button !== 0) return;
    event.preventDefault();
    ui.mic.setPointerCapture?.(event.pointerId);
    dispatch({ type: "press" });
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    ui.mic.addEventListener(type, () => dispatch({ type: "release" }));
  }
  ui.mic.addEventListener("click", () => dispatch({ type: "click" }));
  ui.mic.addEventListener("keydown", (event) => {
    if (event.key !== " " && event.key !== "Enter") return;
    event.preventDefault(); // no click: holding the key is the gesture
    if (event.repeat) return;
    dispatch({ type: "key" });
  });
  ui.mic.addEventListener("keyup", (event) => {
    if (event.key !== " " && event.key !== "Enter") return;
    event.preventDefault();
    dispatch({ type: "release" });
  });
  ui.mic.addEventListener("contextmenu", (event) => event.preventDefault()); // long-press on phones
  ui.mic.addEventListener("blur", () => dispatch({ type: "release" }));

  ui.handsfree.addEventListener("click", async () => {
    const mode = state.mode === "handsfree" ? "ptt" : "handsfree";
    if (state.talking) await dispatch({ type: "stopListening", send: false });
    dispatch({ type: "setMode", mode });
  });
  ui.stop.addEventListener("click", () => dispatch({ type: "interrupt" }));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !ui.stop.disabled && !event.defaultPrevented) dispatch({ type: "interrupt" });
  });

  socket.connect();
  render();

  const api = {
    get connected() {
      return socket.isReady;
    },
    get stats() {
      return media.player?.stats || EMPTY_STATS;
    },
    get state() {
      return state.display;
    },
    get mode() {
      return state.mode;
    },
    // A typed message over the socket; false when it is not connected (use the HTTP API then).
    sendText(text) {
      if (!socket.isReady) return false;
      dispatch({ type: "textPending" }); // a gesture: let the reply's audio play
      if (!socket.send({ type: "text", text })) return false;
      dispatch({ type: "textSent", text });
      return true;
    },
    setConversation(id) {
      dispatch({ type: "setConversation", id });
    },
    setSpeaker(id) {
      socket.configure({ speaker_id: id });
    },
    socket,
  };
  window.mmVoice = api;
  return api;
}
