// A small canvas line chart of a stream's bitrates in and out over the last minutes.

const WINDOW_MS = 5 * 60 * 1000;
const SERIES = [
  { key: 'in_kbps', label: 'In', color: '#1f4fd1' },
  { key: 'out_kbps', label: 'Out', color: '#0f9960' },
];

export class BitrateChart {
  constructor(canvas) {
    this.canvas = canvas;
    this.points = [];
    this.observer = new ResizeObserver(() => this.draw());
    this.observer.observe(canvas);
  }

  /** Replaces the data with the server's history ({at, in_kbps, out_kbps}, oldest first). */
  reset(samples) {
    this.points = samples.map((s) => ({ t: Date.parse(s.at), in_kbps: s.in_kbps, out_kbps: s.out_kbps }));
    this.draw();
  }

  /** Appends one point (the current figures of a snapshot). */
  push(at, inKbps, outKbps) {
    const t = Date.parse(at);
    const last = this.points[this.points.length - 1];
    if (last && t - last.t < 500) return;
    this.points.push({ t, in_kbps: inKbps, out_kbps: outKbps });
    const from = t - WINDOW_MS;
    while (this.points.length && this.points[0].t < from) this.points.shift();
    this.draw();
  }

  destroy() {
    this.observer.disconnect();
  }

  draw() {
    const c = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = c.clientWidth;
    const hgt = c.clientHeight;
    if (!w || !hgt) return;
    if (c.width !== Math.round(w * dpr) || c.height !== Math.round(hgt * dpr)) {
      c.width = Math.round(w * dpr);
      c.height = Math.round(hgt * dpr);
    }
    const g = c.getContext('2d');
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, hgt);
    const pad = { l: 58, r: 10, t: 10, b: 22 };
    const pw = w - pad.l - pad.r;
    const ph = hgt - pad.t - pad.b;
    const now = this.points.length ? this.points[this.points.length - 1].t : Date.now();
    const t0 = now - WINDOW_MS;
    let max = 0;
    for (const p of this.points) max = Math.max(max, p.in_kbps, p.out_kbps);
    const top = niceCeil(max || 1000);
    g.font = '11px system-ui, sans-serif';
    g.fillStyle = '#6b7280';
    g.strokeStyle = '#e5e7eb';
    g.lineWidth = 1;
    g.textAlign = 'right';
    g.textBaseline = 'middle';
    for (let i = 0; i <= 4; i += 1) {
      const v = (top / 4) * i;
      const y = pad.t + ph - (ph * i) / 4;
      g.beginPath();
      g.moveTo(pad.l, Math.round(y) + 0.5);
      g.lineTo(pad.l + pw, Math.round(y) + 0.5);
      g.stroke();
      g.fillText(label(v), pad.l - 6, y);
    }
    g.textAlign = 'center';
    g.textBaseline = 'top';
    // One label a minute, or every other minute where they would collide.
    const every = pw < 420 ? 2 : 1;
    for (let m = 0; m <= 5; m += every) {
      const x = pad.l + pw - (pw * m * 60000) / WINDOW_MS;
      g.fillText(m === 0 ? 'now' : `−${m} min`, Math.min(Math.max(x, pad.l + 16), pad.l + pw - 12), pad.t + ph + 6);
    }
    for (const s of SERIES) {
      g.strokeStyle = s.color;
      g.lineWidth = 2;
      g.lineJoin = 'round';
      g.beginPath();
      let started = false;
      let prev = null;
      for (const p of this.points) {
        if (p.t < t0) continue;
        const x = pad.l + (pw * (p.t - t0)) / WINDOW_MS;
        const y = pad.t + ph - (ph * p[s.key]) / top;
        // A gap of over 5 s (the page was away, the gateway restarted) is not bridged.
        if (!started || (prev && p.t - prev.t > 5000)) g.moveTo(x, y);
        else g.lineTo(x, y);
        started = true;
        prev = p;
      }
      g.stroke();
    }
  }
}

function label(kbps) {
  if (kbps >= 1000) return (kbps / 1000).toFixed(kbps % 1000 ? 1 : 0) + ' Mb/s';
  return Math.round(kbps) + ' kb/s';
}

/** The next "round" value at or above v (1, 2, 2.5 or 5 times a power of ten), in quarters. */
function niceCeil(v) {
  const q = v / 4;
  const p = 10 ** Math.floor(Math.log10(q));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= q) return m * p * 4;
  return v;
}
