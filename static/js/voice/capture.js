// The microphone: getUserMedia -> AudioWorklet (capture-worklet.js) -> 16 kHz PCM16 frames,
// plus an AnalyserNode for the orb. The stream is opened per capture and released after it,
// so the browser's microphone indicator is on only while MagicMirror listens.

export const CAPTURE_RATE = 16000;
const WORKLET_URL = new URL("./capture-worklet.js", import.meta.url);

export class MicError extends Error {
  constructor(code, cause) {
    super(code);
    this.code = code; // mic_blocked | mic_missing | mic_unsupported | mic_failed
    this.cause = cause;
  }
}

export class Capture {
  constructor(context, { onFrame = () => {} } = {}) {
    this.context = context;
    this.onFrame = onFrame;
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 1024;
    this.stream = null;
    this.source = null;
    this.node = null;
    this.loaded = null;
    this.generation = 0;
  }

  get active() {
    return Boolean(this.stream);
  }

  async start() {
    if (this.stream) return;
    const generation = ++this.generation;
    if (!navigator.mediaDevices?.getUserMedia || !window.AudioWorkletNode) throw new MicError("mic_unsupported");
    this.loaded ??= this.context.audioWorklet.addModule(WORKLET_URL);
    let stream;
    try {
      await this.loaded;
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (error) {
      this.loaded = error?.name === "NotAllowedError" ? this.loaded : null;
      const code = {
        NotAllowedError: "mic_blocked",
        SecurityError: "mic_blocked",
        NotFoundError: "mic_missing",
        OverconstrainedError: "mic_missing",
      }[error?.name] || "mic_failed";
      throw new MicError(code, error);
    }
    if (generation !== this.generation) {
      // stopped while the permission prompt was open
      for (const track of stream.getTracks()) track.stop();
      return;
    }
    if (this.context.state === "suspended") await this.context.resume();
    this.stream = stream;
    this.source = this.context.createMediaStreamSource(stream);
    this.node = new AudioWorkletNode(this.context, "mm-capture", { numberOfInputs: 1, numberOfOutputs: 0, channelCount: 1 });
    this.node.port.onmessage = (event) => this.onFrame(event.data);
    this.source.connect(this.node);
    this.source.connect(this.analyser);
    this.node.port.postMessage({ type: "enable", value: true });
  }

  // Stop capturing; resolves once the last partial frame has been handed to onFrame.
  stop() {
    this.generation += 1;
    if (!this.stream) return Promise.resolve();
    const { stream, source, node } = this;
    this.stream = this.source = this.node = null;
    source.disconnect();
    for (const track of stream.getTracks()) track.stop();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        node.port.onmessage = null;
        node.disconnect();
        resolve();
      };
      const timer = setTimeout(done, 300);
      node.port.onmessage = (event) => {
        if (event.data === "flushed") done();
        else this.onFrame(event.data);
      };
      node.port.postMessage({ type: "flush" });
      node.port.postMessage({ type: "enable", value: false });
    });
  }
}
