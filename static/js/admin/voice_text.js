// What the speaker admin's try-a-voice says about the voice that spoke (pure: node-tested).

// `info`: the answer's X-TTS-* headers read out (engine code, voice, clones, duration in seconds).
export function describeVoice({ engine, voice, clones, duration }, t) {
  if (!engine || !(duration > 0)) return t("silent");
  const key = `engine.${engine}`;
  const named = t(key);
  const vars = { engine: named === key ? engine : named, voice: voice || "-" };
  return t(clones ? "cloned" : "notCloned", vars);
}

// The answer's headers as describeVoice wants them (X-TTS-Voice is percent-encoded UTF-8).
export function voiceInfo(headers) {
  let voice = headers.get("X-TTS-Voice") || "";
  try {
    voice = decodeURIComponent(voice);
  } catch {
    // not percent-encoded after all: shown as sent
  }
  return {
    engine: headers.get("X-TTS-Engine") || "",
    voice,
    clones: headers.get("X-TTS-Clones") === "true",
    duration: Number(headers.get("X-Duration") || 0),
  };
}
