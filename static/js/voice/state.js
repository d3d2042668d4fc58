// The voice controls' state machine, with no DOM and no audio: what the voice UI is in, given the
// socket's connection changes, the protocol's events (docs/protocol.md) and what the user does.
// ui.js keeps one state, feeds every happening through reduce(), carries out the effects it returns
// and paints present() of the state.
//
//   reduce(state, action, facts) -> {state, effects}
//
// returns a new state (the one passed in is left as it was) and the side effects to carry out, in
// order, as plain objects. `facts` is what the audio says at that moment: {playing: reply audio is
// sounding, hasPlayer: the audio player has been created}.
//
// Actions:
//   {type: "connection", connection: "connecting"|"ready"|"closed"|"offline", code}
//   {type: "event", event}              a protocol event from the server
//   {type: "press"} / {type: "release"} the mic button held / let go (pointer, Space/Enter, blur)
//   {type: "click"} / {type: "key"}     the mic button clicked / Space or Enter pressed on it
//   {type: "stopListening", send}       stop talking (send: end the push-to-talk utterance)
//   {type: "setMode", mode}             "ptt" or "handsfree" (the hands-free switch)
//   {type: "micOpened"} / {type: "micFailed", code} / {type: "micClosed", wasOpen, send}
//   {type: "interrupt"}                 the stop button or Escape
//   {type: "textPending"} / {type: "textSent", text}   a typed message, before / after it is sent
//   {type: "setConversation", id}       another conversation was opened (null: a new one)
//   {type: "flashExpired"}
//
// Effects:
//   {type: "audio"}                       create the audio graph if need be and resume it (a gesture)
//   {type: "outputRate", rate}            the default sample rate of reply audio
//   {type: "sentence", event}             tell the player a sentence's sample rate
//   {type: "audioTurn", turnId}           the player starts this turn (older audio is cut)
//   {type: "dropAudio", turnId}           silence and discard audio of this turn and older (undefined: the current)
//   {type: "stopAudio"}                   silence what is playing
//   {type: "pauseAudio"} / {type: "resumeAudio"}   hold the reply's audio (a possible barge-in) / play it on
//   {type: "openMic"}                     start capturing; then dispatch micOpened or micFailed
//   {type: "closeMic", send}              stop capturing; then dispatch micClosed {wasOpen, send}
//   {type: "send", message}               a command over the socket
//   {type: "configure", fields}           session fields over the socket (remembered for reconnects)
//   {type: "userMessage", text, messageId}             show the user's message
//   {type: "conversationStarted", id, title} / {type: "conversationTitle", id, title}
//   {type: "flashTimer"}                  (re)start the timer that dispatches flashExpired
//   {type: "notice", code, text}          a server notice for the status line (tts_language_unsupported)
//   {type: "turnStart", turnId}           a new, streaming reply bubble
//   {type: "turnText", turnId, text}      the bubble's text so far (Markdown)
//   {type: "turnSaved", turnId, messageId}
//   {type: "turnNote", turnId, note, tone}               a note under the bubble (tone undefined: warning)
//   {type: "turnEnd", turnId, remove}     the bubble stops streaming; remove: it is taken away (no text)
//   {type: "toolResult", event}           a tool call of the turn ended (the reminders panel may change)
//   {type: "reminder", event}             a reminder fired: a notice (its speech comes as a turn's audio)

import { errorMessage, t } from "../i18n.js";

export const NO_AUDIO = Object.freeze({ playing: false, hasPlayer: false });

export const FLASH_MS = 4000;

// A voice error event -> its message; error codes of one family share one message.
export function voiceErrorMessage(event) {
  const code = event.code || "";
  if (code === "voice_worker_timeout" || code === "voice_unavailable") return t("error.voice_unavailable");
  if (code.startsWith("asr_")) return t("error.asr_failed");
  if (code.startsWith("tts_")) return t("error.tts_failed");
  if (code.startsWith("mic_")) return t(`error.${code}`);
  return errorMessage(event);
}

// A notice in the page's language: its code's string (with the language's name), else the server's text.
export function noticeMessage(event) {
  const key = `notice.${event.code}`;
  const language = event.language ? t(`language.${event.language}`) : "";
  const text = t(key, { language: language.startsWith("language.") ? event.language : language });
  return text === key ? event.message || "" : text;
}

export function initialState({ mode } = {}) {
  return {
    mode: mode === "handsfree" ? "handsfree" : "ptt",
    connection: "connecting",
    serverState: "idle", // the server's last `state` event
    talking: false, // push-to-talk held, or hands-free listening on
    turn: null, // the latest reply: {id, text, done, interrupted}
    error: "",
    flash: "", // a passing notice, shown while idle
    caption: "", // the live transcript of what the user says
    subtitle: "", // the sentence being spoken
    replyPaused: false, // the server paused the reply (reply_paused) until it resumes or interrupts it
    outputRate: null, // from `ready`: output.sample_rate
    display: null, // what the user was last shown: see displayState(); set by settle()
  };
}

// What the orb and the status line show: offline, listening, thinking, speaking or idle.
export function displayState(state, facts = NO_AUDIO) {
  const { connection, talking, mode, serverState, turn } = state;
  const { playing, hasPlayer } = facts;
  if (connection !== "ready") return "offline";
  if (talking && (mode === "ptt" || !playing)) return "listening";
  if (playing) return "speaking";
  if (serverState === "thinking" || (turn && !turn.done && !turn.text)) return "thinking";
  if (serverState === "speaking" && hasPlayer && !playing && turn && !turn.done) return "speaking";
  if (mode === "handsfree" && talking) return "listening";
  return "idle";
}

// The state as it is shown now: `display` recorded, and the subtitle gone once nothing is spoken.
// Returns the same object when nothing changed.
export function settle(state, facts = NO_AUDIO) {
  const display = displayState(state, facts);
  const quiet = display === "idle" || display === "listening" || display === "offline";
  const subtitle = quiet ? "" : state.subtitle;
  if (display === state.display && subtitle === state.subtitle) return state;
  return { ...state, display, subtitle };
}

// What ui.js paints, for a settled state.
export function present(state, facts = NO_AUDIO) {
  const display = displayState(state, facts);
  const handsfree = state.mode === "handsfree";
  let text;
  let tone = "info";
  if (state.error) {
    text = state.error;
    tone = "error";
  } else if (state.flash && display === "idle") {
    text = state.flash;
  } else if (display === "offline") {
    text = state.connection === "closed" ? t("voice.closed") : t("voice.connecting");
  } else if (display === "idle") {
    text = handsfree ? t("voice.idleHandsfree") : t("voice.idle");
  } else {
    text = t(`voice.${display}`);
  }
  const micLabel = handsfree ? (state.talking ? t("voice.micStop") : t("voice.micStart")) : t("voice.micHold");
  const busy = Boolean(facts.playing || running(state) || state.serverState === "thinking" || state.serverState === "speaking");
  return {
    display,
    status: { text, tone },
    orbSource: display === "speaking" ? "playback" : display === "listening" ? "capture" : null,
    caption: state.caption,
    subtitle: state.subtitle,
    handsfree,
    micPressed: state.talking,
    micDisabled: state.connection !== "ready",
    micLabel,
    stopDisabled: !busy,
  };
}

function running(state) {
  return Boolean(state.turn && !state.turn.done);
}

// --- Transitions: each works on `s`, a copy of the state (and of its turn), and appends to `fx` --

function finishTurn(s, fx, note) {
  const turn = s.turn;
  if (!turn || turn.done) return;
  turn.done = true;
  // A reply with no text is taken away; a note goes under one that has some.
  fx.push({ type: "turnEnd", turnId: turn.id, remove: !turn.text });
  if (note && turn.text) fx.push({ type: "turnNote", turnId: turn.id, note });
}

// The reply was cut short (its text or its audio): say so under it.
function markInterrupted(s, fx, facts) {
  const turn = s.turn;
  if (!turn || turn.interrupted || (turn.done && !facts.playing)) return;
  turn.interrupted = true;
  if (!turn.done) finishTurn(s, fx, t("interrupted"));
  else if (turn.text) fx.push({ type: "turnNote", turnId: turn.id, note: t("interrupted") });
}

function startTalking(s, fx) {
  if (s.talking || s.connection !== "ready") return;
  s.talking = true;
  s.error = "";
  fx.push({ type: "audio" });
  // Speaking over a reply interrupts it (the server does too); stop its audio at once.
  fx.push(running(s) ? { type: "dropAudio", turnId: s.turn.id } : { type: "stopAudio" });
  fx.push({ type: "openMic" });
}

function stopTalking(s, fx, send) {
  if (!s.talking) return;
  s.talking = false;
  fx.push({ type: "closeMic", send });
}

function toggleTalking(s, fx) {
  if (s.talking) stopTalking(s, fx, true);
  else startTalking(s, fx);
}

function interrupt(s, fx, facts) {
  fx.push({ type: "send", message: { type: "interrupt" } });
  markInterrupted(s, fx, facts);
  fx.push({ type: "dropAudio", turnId: s.turn?.id });
  s.subtitle = "";
}

function startTurn(s, fx, event) {
  if (running(s)) finishTurn(s, fx, t("interrupted"));
  fx.push({ type: "audio" }, { type: "audioTurn", turnId: event.turn_id }, { type: "turnStart", turnId: event.turn_id });
  s.turn = { id: event.turn_id, text: "", done: false, interrupted: false };
  s.error = "";
}

function showError(s, fx, event) {
  const message = voiceErrorMessage(event);
  const turn = s.turn;
  if (event.turn_id && turn?.id === event.turn_id && !turn.done) {
    fx.push({ type: "turnNote", turnId: turn.id, note: message, tone: turn.text ? "warning" : "error" });
    if (!turn.text) {
      // keep the bubble so the error shows where the reply would have been
      turn.done = true;
      fx.push({ type: "turnEnd", turnId: turn.id, remove: false });
    }
  }
  s.error = message;
}

function onEvent(s, fx, facts, event) {
  const turn = s.turn;
  switch (event.type) {
    case "ready":
      s.mode = event.mode || s.mode;
      s.outputRate = event.output?.sample_rate ?? null;
      if (s.outputRate) fx.push({ type: "outputRate", rate: s.outputRate });
      break;
    case "state":
      s.serverState = event.state;
      if (event.state === "listening") s.error = "";
      break;
    case "partial":
      s.caption = event.text ?? "";
      break;
    case "final":
      s.caption = "";
      if (event.text) {
        fx.push({ type: "userMessage", text: event.text, messageId: event.message_id });
      } else {
        s.flash = t("noSpeech");
        fx.push({ type: "flashTimer" });
      }
      break;
    case "conversation":
      fx.push({ type: "conversationStarted", id: event.id, title: event.title });
      break;
    case "turn":
      startTurn(s, fx, event);
      break;
    case "delta":
      if (turn && turn.id === event.turn_id) {
        turn.text += event.text;
        fx.push({ type: "turnText", turnId: turn.id, text: turn.text });
      }
      break;
    case "sentence":
      fx.push({ type: "sentence", event });
      s.subtitle = event.text ?? "";
      break;
    case "reply_done":
      if (turn && turn.id === event.turn_id) {
        if (event.message_id) fx.push({ type: "turnSaved", turnId: turn.id, messageId: event.message_id });
        finishTurn(s, fx);
      }
      break;
    case "title":
      fx.push({ type: "conversationTitle", id: event.conversation_id, title: event.title });
      break;
    case "reply_paused":
      // The server heard the user over the reply: hold it until it knows (a cough resumes it).
      if (turn && turn.id === event.turn_id) {
        s.replyPaused = true;
        fx.push({ type: "pauseAudio" });
      }
      break;
    case "reply_resumed":
      if (s.replyPaused && turn && turn.id === event.turn_id) {
        s.replyPaused = false;
        fx.push({ type: "resumeAudio" });
      }
      break;
    case "interrupted":
      s.replyPaused = false;
      if (turn && event.turn_id !== null && turn.id === event.turn_id) markInterrupted(s, fx, facts);
      fx.push({ type: "dropAudio", turnId: event.turn_id ?? undefined });
      s.subtitle = "";
      break;
    case "notice":
      // Something the user should know that stops nothing (a sentence shown but not spoken): stays on the status line.
      fx.push({ type: "notice", code: event.code, text: noticeMessage(event) });
      break;
    case "error":
      showError(s, fx, event);
      break;
    case "tool_result":
      fx.push({ type: "toolResult", event });
      break;
    case "reminder":
      fx.push({ type: "reminder", event });
      break;
    default:
      break; // audio_done, pong, and whatever newer servers send
  }
}

const ACTIONS = {
  connection(s, fx, facts, { connection, code }) {
    s.connection = connection;
    if (connection === "closed" && code === 4401) s.error = t("error.not_authenticated");
    if (connection === "closed" && code === 4429) s.error = t("error.too_many_sessions");
    if (connection === "offline") {
      stopTalking(s, fx, false);
      finishTurn(s, fx, t("interrupted"));
    }
    if (connection === "ready") s.serverState = "idle";
  },
  event(s, fx, facts, { event }) {
    onEvent(s, fx, facts, event);
  },
  // Push-to-talk: hold the mic button (pointer or Space/Enter); hands-free: a click toggles listening.
  press(s, fx) {
    if (s.mode === "ptt") startTalking(s, fx);
  },
  release(s, fx) {
    if (s.mode === "ptt") stopTalking(s, fx, true);
  },
  click(s, fx) {
    if (s.mode === "handsfree") toggleTalking(s, fx);
  },
  key(s, fx) {
    if (s.mode === "ptt") startTalking(s, fx);
    else toggleTalking(s, fx);
  },
  stopListening(s, fx, facts, { send = true }) {
    stopTalking(s, fx, send);
  },
  setMode(s, fx, facts, { mode }) {
    s.mode = mode;
    fx.push({ type: "configure", fields: { mode } });
    if (mode === "handsfree") startTalking(s, fx);
  },
  micOpened(s, fx) {
    if (!s.talking) fx.push({ type: "closeMic", send: false }); // released before the microphone opened
  },
  micFailed(s, fx, facts, { code }) {
    s.talking = false;
    s.error = voiceErrorMessage({ code: code || "mic_failed" });
  },
  micClosed(s, fx, facts, { wasOpen, send }) {
    if (send && wasOpen && s.mode === "ptt") fx.push({ type: "send", message: { type: "audio_end" } });
  },
  interrupt(s, fx, facts) {
    interrupt(s, fx, facts);
  },
  // A typed message over the socket: first the reply's audio may play (a gesture) and the running
  // reply's audio stops; then, once the socket took it, it is shown and the server thinks.
  textPending(s, fx) {
    fx.push({ type: "audio" });
    if (running(s)) fx.push({ type: "dropAudio", turnId: s.turn.id });
  },
  textSent(s, fx, facts, { text }) {
    fx.push({ type: "userMessage", text });
    s.error = "";
    s.serverState = "thinking";
  },
  setConversation(s, fx, facts, { id }) {
    if (running(s)) interrupt(s, fx, facts);
    fx.push({ type: "configure", fields: { conversation_id: id } });
  },
  flashExpired(s) {
    s.flash = "";
  },
};

export function reduce(state, action, facts = NO_AUDIO) {
  const step = Object.hasOwn(ACTIONS, action?.type) ? ACTIONS[action.type] : null;
  if (!step) throw new Error(`unknown voice action: ${action?.type}`);
  const s = { ...state, turn: state.turn && { ...state.turn } };
  const fx = [];
  step(s, fx, facts, action);
  return { state: s, effects: fx };
}
