// AudioWorklet: the microphone's float samples at the context rate -> 16 kHz mono PCM16 frames.
// Downsampling averages the input over each output period (a box low-pass), good enough for speech.

const TARGET_RATE = 16000;
const FRAME_SAMPLES = 960; // 60 ms at 16 kHz

class CaptureProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / TARGET_RATE; // input samples per output sample
    this.acc = 0; // running sum of the current output period
    this.count = 0; // input samples in it
    this.pos = 0; // fractional position within the period
    this.frame = new Int16Array(FRAME_SAMPLES);
    this.filled = 0;
    this.enabled = false;
    this.port.onmessage = (event) => {
      if (event.data?.type === "enable") this.enabled = Boolean(event.data.value);
      if (event.data?.type === "flush") {
        this.flush();
        this.port.postMessage("flushed");
      }
    };
  }

  emit(value) {
    const clamped = Math.max(-1, Math.min(1, value));
    this.frame[this.filled++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    if (this.filled === FRAME_SAMPLES) this.flush();
  }

  flush() {
    if (!this.filled) return;
    const out = this.frame.slice(0, this.filled);
    this.filled = 0;
    this.port.postMessage(out.buffer, [out.buffer]);
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || !input.length || !this.enabled) return true;
    const channels = input.length;
    const length = input[0].length;
    for (let i = 0; i < length; i++) {
      let sample = 0;
      for (let c = 0; c < channels; c++) sample += input[c][i];
      this.acc += sample / channels;
      this.count += 1;
      this.pos += 1;
      if (this.pos >= this.ratio) {
        this.pos -= this.ratio;
        this.emit(this.acc / this.count);
        this.acc = 0;
        this.count = 0;
      }
    }
    return true;
  }
}

registerProcessor("mm-capture", CaptureProcessor);
