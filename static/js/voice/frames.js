// The voice socket's frames (docs/protocol.md), with no browser APIs: JSON text frames carry events;
// binary frames from the server carry reply audio: a 12-byte header (turn_id, sentence_id, seq:
// uint32 little-endian each) followed by PCM16 little-endian mono samples.

export const AUDIO_HEADER_BYTES = 12;

// A text frame -> its event, or null when it is not JSON for an object with a string `type`.
export function parseEventFrame(text) {
  let event;
  try {
    event = JSON.parse(text);
  } catch {
    return null;
  }
  if (!event || typeof event !== "object" || Array.isArray(event) || typeof event.type !== "string") return null;
  return event;
}

function bytesOf(data) {
  if (data instanceof ArrayBuffer) return new DataView(data);
  if (ArrayBuffer.isView(data)) return new DataView(data.buffer, data.byteOffset, data.byteLength);
  return null;
}

// A binary frame's header -> {turn, sentence, seq, sampleCount}, or null when `data` is not binary
// or holds no whole sample after the header. A trailing odd byte is ignored.
export function parseAudioHeader(data) {
  const view = bytesOf(data);
  if (!view) return null;
  const sampleCount = Math.max(0, (view.byteLength - AUDIO_HEADER_BYTES) >> 1);
  if (!sampleCount) return null;
  return {
    turn: view.getUint32(0, true),
    sentence: view.getUint32(4, true),
    seq: view.getUint32(8, true),
    sampleCount,
  };
}

// A binary frame's samples as floats in [-1, 1) (-32768 -> -1), for an AudioBuffer.
export function decodeSamples(data) {
  const view = bytesOf(data);
  const count = view ? Math.max(0, (view.byteLength - AUDIO_HEADER_BYTES) >> 1) : 0;
  const samples = new Float32Array(count);
  for (let i = 0; i < count; i++) samples[i] = view.getInt16(AUDIO_HEADER_BYTES + 2 * i, true) / 32768;
  return samples;
}

// The whole frame at once: the header fields plus `samples`, or null (see parseAudioHeader).
export function parseAudioFrame(data) {
  const header = parseAudioHeader(data);
  return header && { ...header, samples: decodeSamples(data) };
}
