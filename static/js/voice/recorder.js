// Record a reference clip in the browser: MediaRecorder -> a webm/opus Blob.

import { MicError } from "./capture.js";

const TYPES = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];

export function recordingSupported() {
  return Boolean(navigator.mediaDevices?.getUserMedia && window.MediaRecorder);
}

export class ClipRecorder {
  constructor() {
    this.recorder = null;
    this.stream = null;
    this.chunks = [];
  }

  get recording() {
    return this.recorder?.state === "recording";
  }

  async start() {
    if (!recordingSupported()) throw new MicError("mic_unsupported");
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: true, autoGainControl: true },
      });
    } catch (error) {
      const code = { NotAllowedError: "mic_blocked", SecurityError: "mic_blocked", NotFoundError: "mic_missing" }[error?.name];
      throw new MicError(code || "mic_failed", error);
    }
    const mimeType = TYPES.find((type) => MediaRecorder.isTypeSupported(type)) || "";
    this.chunks = [];
    this.recorder = new MediaRecorder(this.stream, mimeType ? { mimeType } : {});
    this.recorder.addEventListener("dataavailable", (event) => {
      if (event.data.size) this.chunks.push(event.data);
    });
    this.recorder.start(250);
  }

  // Resolves with a File ("recording.webm" or the like).
  stop() {
    const recorder = this.recorder;
    if (!recorder) return Promise.resolve(null);
    return new Promise((resolve) => {
      recorder.addEventListener(
        "stop",
        () => {
          for (const track of this.stream.getTracks()) track.stop();
          this.stream = this.recorder = null;
          const type = (recorder.mimeType || "audio/webm").split(";")[0];
          const extension = { "audio/ogg": "ogg", "audio/mp4": "m4a" }[type] || "webm";
          resolve(new File(this.chunks, `recording.${extension}`, { type }));
        },
        { once: true },
      );
      recorder.stop();
    });
  }
}
