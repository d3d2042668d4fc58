// Voice on the chat page: the socket, microphone, playback and orb wired to the controls
// (push-to-talk mic button, hands-free toggle, stop), captions, subtitles and the status line.

import { statusLine } from "../dom.js";
import { errorMessage, t } from "../i18n.js";
import { setMarkdown } from "../markdown.js";
import { CAPTURE_RATE, Capture } from "./capture.js";
import { Orb } from "./orb.js";
import { Playback } from "./playback.js";
import { VoiceSocket } from "./socket.js";

const EMPTY_STATS = Object.freeze({ chunksReceived: 0, chunksScheduled: 0, chunksPlayed: 0, chunksDropped: 0, secondsScheduled: 0 });

// Error codes with one shared message.
function voiceErrorMessage(event) {
  const code = event.code || "";
  if (code === "voice_worker_timeout" || code === "voice_unavailable") return t("error.voice_unavailable");
  if (code.startsWith("asr_")) return t("error.asr_failed");
  if (code.startsWith("tts_")) return t("error.tts_failed");
  if (code.startsWith("mic_")) return t(`error.${code}`);
  return errorMessage(event);
}

// chat: hooks into the chat page (see chat.js).
export function initVoice(chat) {
  const $ = (id) => document.getElementById(id);
  const ui = {
    app: $("chat-app"),
    stage: $("voice-stage"),
    canvas: $("orb"),
    state: $("voice-state"),
    caption: $("voice-caption"),
    subtitle: $("voice-subtitle"),
    mic: $("mic-button"),
    micLabel: $("mic-label"),
    handsfree: $("handsfree-toggle"),
    stop: $("voice-stop"),
  };
  if (!ui.stage) return null;
  const showState = statusLine(ui.state);
  const prefs = ui.app.dataset;

  const v = {
    mode: prefs.inputMode === "handsfree" ? "handsfree" : "ptt",
    connection: "connecting",
    serverState: "idle",
    talking: false, // push-to-talk held, or hands-free listening on
    turn: null, // {id, node, text, view, done}
    error: "",
    context: null,
    capture: null,
    player: null,
  };
  const orb = new Orb(ui.canvas);

  // --- Audio graph (created on the first gesture: browsers start audio only after one) --------

  function audio() {
    if (!v.context) {
      const Context = window.AudioContext || window.webkitAudioContext;
      v.context = new Context({ latencyHint: "interactive" });
      v.player = new Playback(v.context, { onStart: render, onIdle: render });
      if (v.outputRate) v.player.defaultRate = v.outputRate;
      v.capture = new Capture(v.context, { onFrame: (frame) => socket.sendAudio(frame) });
    }
    if (v.context.state === "suspended") v.context.resume().catch(() => {});
    return v.context;
  }

  // --- Socket ----------------------------------------------------------------------------------

  const socket = new VoiceSocket({
    config: {
      conversation_id: chat.conversationId(),
      mode: v.mode,
      sample_rate: CAPTURE_RATE,
      ...(prefs.speakerId ? { speaker_id: Number(prefs.speakerId) } : {}),
    },
    onEvent,
    onAudio(buffer) {
      audio();
      v.player.push(buffer);
    },
    onConnection(connection, code) {
      v.connection = connection;
      if (connection === "closed" && code === 4401) setError(t("error.not_authenticated"));
      if (connection === "offline" && v.talking) stopTalking({ send: false });
      if (connection === "offline" && v.turn && !v.turn.done) finishTurn(t("interrupted"));
      if (connection === "ready") v.serverState = "idle";
      render();
    },
  });

  function onEvent(event) {
    switch (event.type) {
      case "ready":
        v.mode = event.mode || v.mode;
        v.outputRate = event.output?.sample_rate;
        if (v.player && v.outputRate) v.player.defaultRate = v.outputRate;
        break;
      case "state":
        v.serverState = event.state;
        if (event.state === "listening") v.error = "";
        break;
      case "partial":
        ui.caption.textContent = event.text;
        ui.caption.hidden = !event.text;
        break;
      case "final":
        ui.caption.textContent = "";
        ui.caption.hidden = true;
        if (event.text) chat.appendUserMessage(event.text, event.message_id);
        else flash(t("noSpeech"));
        break;
      case "conversation":
        chat.conversationStarted({ id: event.id, title: event.title });
        break;
      case "turn":
        startTurn(event);
        break;
      case "delta":
        if (v.turn?.id === event.turn_id) {
          v.turn.text += event.text;
          const follow = chat.nearBottom();
          setMarkdown(v.turn.textNode, v.turn.text);
          if (follow) chat.scrollToBottom(true);
        }
        break;
      case "sentence":
        v.player?.sentence(event);
        if (!v.player) v.pendingSentences = [...(v.pendingSentences || []), event];
        ui.subtitle.textContent = event.text;
        break;
      case "reply_done":
        if (v.turn?.id === event.turn_id) {
          if (event.message_id) v.turn.node.dataset.id = event.message_id;
          finishTurn();
        }
        break;
      case "audio_done":
        break;
      case "title":
        chat.upsertConversation({ id: event.conversation_id, title: event.title });
        break;
      case "interrupted":
        if (v.turn && event.turn_id !== null && v.turn.id === event.turn_id) markInterrupted(v.turn);
        v.player?.drop(event.turn_id ?? undefined);
        ui.subtitle.textContent = "";
        break;
      case "error":
        showError(event);
        break;
      default:
        break; // newer servers may send more
    }
    render();
  }

  function startTurn(event) {
    if (v.turn && !v.turn.done) finishTurn(t("interrupted"));
    audio();
    for (const s of v.pendingSentences || []) v.player.sentence(s);
    v.pendingSentences = [];
    v.player.beginTurn(event.turn_id);
    const node = chat.messageNode({ role: "assistant" });
    node.classList.add("is-streaming");
    node.setAttribute("aria-busy", "true");
    v.turn = { id: event.turn_id, node, textNode: node.querySelector(".msg-text"), text: "", view: chat.view(), done: false };
    if (v.turn.view === chat.view()) chat.appendMessage(node);
    v.error = "";
  }

  function finishTurn(note) {
    const turn = v.turn;
    if (!turn || turn.done) return;
    turn.done = true;
    turn.node.classList.remove("is-streaming");
    turn.node.removeAttribute("aria-busy");
    if (note && turn.text) chat.markNote(turn.node, note);
    else if (note || !turn.text) turn.node.remove();
  }

  function showError(event) {
    const message = voiceErrorMessage(event);
    if (event.turn_id && v.turn?.id === event.turn_id && !v.turn.done) {
      chat.markNote(v.turn.node, message, v.turn.text ? "warning" : "error");
      if (!v.turn.text) {
        // keep the bubble so the error shows where the reply would have been
        v.turn.done = true;
        v.turn.node.classList.remove("is-streaming");
        v.turn.node.removeAttribute("aria-busy");
      }
    }
    setError(message);
  }

  function setError(message) {
    v.error = message;
    render();
  }

  let flashTimer = 0;
  function flash(message) {
    v.flash = message;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => {
      v.flash = "";
      render();
    }, 4000);
  }

  // --- What the user sees ----------------------------------------------------------------------

  function displayState() {
    if (v.connection !== "ready") return "offline";
    if (v.talking && (v.mode === "ptt" || !v.player?.playing)) return "listening";
    if (v.player?.playing) return "speaking";
    if (v.serverState === "thinking" || (v.turn && !v.turn.done && !v.turn.text)) return "thinking";
    if (v.serverState === "speaking" && v.player && !v.player.playing && v.turn && !v.turn.done) return "speaking";
    if (v.mode === "handsfree" && v.talking) return "listening";
    return "idle";
  }

  function render() {
    const state = displayState();
    v.displayState = state;
    ui.stage.dataset.state = state;
    orb.setState(state);
    orb.setSource(state === "speaking" ? v.player?.analyser : state === "listening" ? v.capture?.analyser : null);
    let text;
    let tone = "info";
    if (v.error) {
      text = v.error;
      tone = "error";
    } else if (v.flash && state === "idle") {
      text = v.flash;
    } else if (state === "offline") {
      text = v.connection === "closed" ? t("voice.closed") : t("voice.connecting");
    } else if (state === "idle") {
      text = v.mode === "handsfree" ? t("voice.idleHandsfree") : t("voice.idle");
    } else {
      text = t(`voice.${state}`);
    }
    if (ui.state.textContent !== text || ui.state.dataset.tone !== tone) showState(text, { tone });
    if (state === "idle" || state === "listening" || state === "offline") ui.subtitle.textContent = "";

    const handsfree = v.mode === "handsfree";
    ui.handsfree.setAttribute("aria-pressed", String(handsfree));
    ui.mic.setAttribute("aria-pressed", String(v.talking));
    ui.mic.disabled = v.connection !== "ready";
    const label = handsfree ? (v.talking ? t("voice.micStop") : t("voice.micStart")) : t("voice.micHold");
    ui.micLabel.textContent = label;
    ui.mic.title = label;
    const busy = Boolean(v.player?.playing || (v.turn && !v.turn.done) || v.serverState === "thinking" || v.serverState === "speaking");
    ui.stop.disabled = !busy;
  }

  // --- Talking ---------------------------------------------------------------------------------

  async function startTalking() {
    if (v.talking || v.connection !== "ready") return;
    v.talking = true;
    v.error = "";
    audio();
    // Speaking over a reply interrupts it (the server does too); stop its audio at once.
    if (v.turn && !v.turn.done) v.player.drop(v.turn.id);
    else v.player.stop();
    render();
    try {
      await v.capture.start();
    } catch (error) {
      v.talking = false;
      setError(voiceErrorMessage({ code: error.code || "mic_failed" }));
      return;
    }
    if (!v.talking) v.capture.stop(); // released before the microphone opened
    render();
  }

  async function stopTalking({ send = true } = {}) {
    if (!v.talking) return;
    v.talking = false;
    render();
    const wasOpen = v.capture?.active;
    await v.capture?.stop();
    if (send && wasOpen && v.mode === "ptt") socket.send({ type: "audio_end" });
    render();
  }

  // The reply was cut short (its text or its audio): say so under it.
  function markInterrupted(turn) {
    if (turn.interrupted || (turn.done && !v.player?.playing)) return;
    turn.interrupted = true;
    if (!turn.done) finishTurn(t("interrupted"));
    else if (turn.text) chat.markNote(turn.node, t("interrupted"));
  }

  function interrupt() {
    socket.send({ type: "interrupt" });
    if (v.turn) markInterrupted(v.turn);
    v.player?.drop(v.turn?.id);
    ui.subtitle.textContent = "";
    render();
  }

  // Push-to-talk: press and hold (pointer or Space/Enter); hands-free: a click toggles listening.
  ui.mic.addEventListener("pointerdown", (event) => {
    if (v.mode !== "ptt" || event.button !== 0) return;
    event.preventDefault();
    ui.mic.setPointerCapture?.(event.pointerId);
    startTalking();
  });
  for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) {
    ui.mic.addEventListener(type, () => {
      if (v.mode === "ptt") stopTalking();
    });
  }
  ui.mic.addEventListener("click", () => {
    if (v.mode !== "handsfree") return;
    if (v.talking) stopTalking();
    else startTalking();
  });
  ui.mic.addEventListener("keydown", (event) => {
    if (event.key !== " " && event.key !== "Enter") return;
    event.preventDefault(); // no click: holding the key is the gesture
    if (event.repeat) return;
    if (v.mode === "ptt") startTalking();
    else if (v.talking) stopTalking();
    else startTalking();
  });
  ui.mic.addEventListener("keyup", (event) => {
    if (event.key !== " " && event.key !== "Enter") return;
    event.preventDefault();
    if (v.mode === "ptt") stopTalking();
  });
  ui.mic.addEventListener("contextmenu", (event) => event.preventDefault()); // long-press on phones
  ui.mic.addEventListener("blur", () => {
    if (v.mode === "ptt") stopTalking();
  });

  ui.handsfree.addEventListener("click", async () => {
    const mode = v.mode === "handsfree" ? "ptt" : "handsfree";
    if (v.talking) await stopTalking({ send: false });
    v.mode = mode;
    socket.configure({ mode });
    if (mode === "handsfree") startTalking();
    render();
  });
  ui.stop.addEventListener("click", interrupt);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !ui.stop.disabled && !event.defaultPrevented) interrupt();
  });

  socket.connect();
  render();

  const api = {
    get connected() {
      return socket.isReady;
    },
    get stats() {
      return v.player?.stats || EMPTY_STATS;
    },
    get state() {
      return v.displayState;
    },
    get mode() {
      return v.mode;
    },
    // A typed message over the socket; false when it is not connected (use the HTTP API then).
    sendText(text) {
      if (!socket.isReady) return false;
      audio(); // a gesture: let the reply's audio play
      if (v.turn && !v.turn.done) v.player.drop(v.turn.id);
      if (!socket.send({ type: "text", text })) return false;
      chat.appendUserMessage(text);
      v.error = "";
      v.serverState = "thinking";
      render();
      return true;
    },
    setConversation(id) {
      if (v.turn && !v.turn.done) interrupt();
      socket.configure({ conversation_id: id });
    },
    setSpeaker(id) {
      socket.configure({ speaker_id: id });
    },
    socket,
  };
  window.mmVoice = api;
  return api;
}
