// The orb: a glowing sphere with a live waveform ring, drawn on a canvas from an AnalyserNode
// (the microphone while listening, the reply's audio while speaking). With prefers-reduced-motion
// it is drawn still, changing only its colour with the state.

const COLORS = {
  idle: ["#8b7cf6", "#22d3ee"],
  listening: ["#22d3ee", "#34d399"],
  thinking: ["#a78bfa", "#f0abfc"],
  speaking: ["#8b7cf6", "#f472b6"],
  offline: ["#64748b", "#94a3b8"],
};

export class Orb {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.analyser = null;
    this.state = "idle";
    this.level = 0;
    this.data = null;
    this.frame = 0;
    this.reduced = window.matchMedia?.("(prefers-reduced-motion: reduce)");
    this.reduced?.addEventListener?.("change", () => this.kick());
    this.resize = this.resize.bind(this);
    this.tick = this.tick.bind(this);
    new ResizeObserver(this.resize).observe(canvas);
    document.addEventListener("visibilitychange", () => this.kick());
    this.resize();
  }

  get still() {
    return Boolean(this.reduced?.matches);
  }

  setSource(analyser) {
    this.analyser = analyser;
    this.data = analyser ? new Uint8Array(analyser.fftSize) : null;
    this.kick();
  }

  setState(state) {
    this.state = state;
    this.canvas.dataset.state = state;
    this.kick();
  }

  resize() {
    const ratio = window.devicePixelRatio || 1;
    const { width, height } = this.canvas.getBoundingClientRect();
    this.canvas.width = Math.max(1, Math.round(width * ratio));
    this.canvas.height = Math.max(1, Math.round(height * ratio));
    this.draw();
  }

  kick() {
    if (this.still || document.hidden) {
      cancelAnimationFrame(this.frame);
      this.frame = 0;
      this.draw();
    } else if (!this.frame) {
      this.frame = requestAnimationFrame(this.tick);
    }
  }

  tick(time) {
    this.frame = 0;
    this.draw(time);
    if (!this.still && !document.hidden) this.frame = requestAnimationFrame(this.tick);
  }

  draw(time = 0) {
    const { ctx, canvas } = this;
    const w = canvas.width;
    const hgt = canvas.height;
    const cx = w / 2;
    const cy = hgt / 2;
    const base = Math.min(w, hgt) * 0.28;
    const live = this.analyser && !this.still && (this.state === "listening" || this.state === "speaking");
    let rms = 0;
    if (live) {
      this.analyser.getByteTimeDomainData(this.data);
      for (const v of this.data) rms += ((v - 128) / 128) ** 2;
      rms = Math.sqrt(rms / this.data.length);
    }
    this.level += (Math.min(1, rms * 4) - this.level) * 0.25;
    const breathe = this.still ? 0 : Math.sin(time / (this.state === "thinking" ? 260 : 900)) * 0.03;
    const radius = base * (1 + breathe + this.level * 0.25);
    const [inner, outer] = COLORS[this.state] || COLORS.idle;

    ctx.clearRect(0, 0, w, hgt);
    const glow = ctx.createRadialGradient(cx, cy, radius * 0.2, cx, cy, radius * 1.8);
    glow.addColorStop(0, `${outer}55`);
    glow.addColorStop(1, `${outer}00`);
    ctx.fillStyle = glow;
    ctx.fillRect(0, 0, w, hgt);

    const body = ctx.createRadialGradient(cx - radius * 0.3, cy - radius * 0.35, radius * 0.1, cx, cy, radius);
    body.addColorStop(0, "#ffffffcc");
    body.addColorStop(0.25, inner);
    body.addColorStop(1, `${outer}dd`);
    ctx.fillStyle = body;
    ctx.beginPath();
    ctx.arc(cx, cy, radius, 0, Math.PI * 2);
    ctx.fill();

    // The waveform, wrapped around the orb.
    ctx.lineWidth = Math.max(1.5, base * 0.03);
    ctx.strokeStyle = `${outer}cc`;
    ctx.beginPath();
    const points = 128;
    for (let i = 0; i <= points; i++) {
      const angle = (i / points) * Math.PI * 2 - Math.PI / 2;
      let amp = 0;
      if (live) amp = (this.data[Math.floor((i % points) * (this.data.length / points))] - 128) / 128;
      else if (!this.still && this.state === "thinking") amp = Math.sin(angle * 6 + time / 150) * 0.08;
      const r = radius * 1.18 + amp * base * 0.6;
      const x = cx + Math.cos(angle) * r;
      const y = cy + Math.sin(angle) * r;
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    }
    ctx.stroke();
  }
}
