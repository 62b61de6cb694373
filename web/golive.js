// Go live from a browser tab: capture, encode with WebCodecs, send over the gateway's native
// WebSocket (/ws/publish/CODE). Wire format, as crates/browser/src/native.rs documents it:
// a JSON start message, then binary [kind u8][ms u32 BE][payload] where kind 9 is an FLV video
// tag body (H.264, AVCC) and kind 8 one Opus packet.

import { testPattern } from './pattern.js';

const $ = (id) => document.getElementById(id);
const KIND_OPUS = 8;
const KIND_VIDEO = 9;
// Above this much unsent data the socket is congested: drop video until the next keyframe.
const MAX_BUFFERED = 2 << 20;

window.report = { errors: [], events: [], state: 'idle' };

function setState(state, text) {
  window.report.state = state;
  const el = $('state');
  el.textContent = text || state;
  el.className = 'badge' + (state === 'live' ? ' badge-live' : state === 'error' ? ' badge-failed'
    : state === 'connecting' ? ' badge-starting' : '');
}

function showError(e) {
  window.report.errors.push(e);
  const el = $('error');
  el.textContent = (e.name ? e.name + ': ' : '') + (e.message || String(e));
  el.hidden = false;
  setState('error');
}

function fmtRate(bps) {
  if (bps >= 1e6) return (bps / 1e6).toFixed(2) + ' Mb/s';
  return Math.round(bps / 1000) + ' kb/s';
}

function fmtBytes(n) {
  if (n >= 1 << 20) return (n / (1 << 20)).toFixed(1) + ' MB';
  return Math.round(n / 1024) + ' KB';
}

/** `[kind][ms][header bytes][data]` as one message. */
function message(kind, ms, header, data) {
  const out = new Uint8Array(5 + header.length + data.byteLength);
  out[0] = kind;
  new DataView(out.buffer).setUint32(1, ms >>> 0);
  out.set(header, 5);
  out.set(new Uint8Array(data), 5 + header.length);
  return out;
}

/** An H.264 codec string WebCodecs accepts for the frame size: Constrained Baseline, whose
 *  level is the smallest that fits (OpenH264, Chromium's software encoder, does Baseline). */
function avcCodec(width, height, fps) {
  const mbs = Math.ceil(width / 16) * Math.ceil(height / 16);
  const rate = mbs * fps;
  const levels = [[1620, 40500, '1f'], [8192, 245760, '28'], [8704, 522240, '2a'],
    [22080, 983040, '32'], [36864, 2073600, '33']];
  const level = (levels.find(([f, r]) => mbs <= f && rate <= r) || levels[levels.length - 1])[2];
  return 'avc1.42e0' + level;
}

async function capture(source, width, height, fps, audio) {
  const video = { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: fps } };
  if (source === 'pattern') return testPattern(width, height, fps, audio);
  if (source === 'camera') {
    return navigator.mediaDevices.getUserMedia({ video, audio });
  }
  const screen = await navigator.mediaDevices.getDisplayMedia({ video, audio: false });
  if (source === 'screen') {
    if (audio) {
      const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
      mic.getAudioTracks().forEach((t) => screen.addTrack(t));
    }
    return screen;
  }
  // Screen with the camera in a corner, composited on a canvas.
  const cam = await navigator.mediaDevices.getUserMedia({ video: { width: 320, height: 180 }, audio });
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d');
  const sv = Object.assign(document.createElement('video'), { muted: true, srcObject: screen });
  const cv = Object.assign(document.createElement('video'), { muted: true, srcObject: cam });
  await Promise.all([sv.play(), cv.play()]);
  const draw = () => {
    ctx.drawImage(sv, 0, 0, width, height);
    const w = width / 4;
    const h = w * 9 / 16;
    ctx.drawImage(cv, width - w - 16, height - h - 16, w, h);
  };
  const timer = setInterval(draw, 1000 / fps);
  const out = canvas.captureStream(fps);
  cam.getAudioTracks().forEach((t) => out.addTrack(t));
  out.stopExtra = () => {
    clearInterval(timer);
    screen.getTracks().forEach((t) => t.stop());
    cam.getTracks().forEach((t) => t.stop());
  };
  return out;
}

class GoLive {
  constructor(opts) {
    this.opts = opts;
    this.sent = 0;
    this.dropped = 0;
    this.frame = 0;
    this.ready = false;
    this.stopped = false;
    this.waitKey = true;
    this.clock = null;
  }

  /** Browser time in ms since the first captured frame of either track. Each track's own
   *  timestamps are mapped through the moment its first frame was read, so the two tracks
   *  share one clock whatever timebase the capture uses. */
  ms(track, us) {
    const now = performance.now();
    if (!this.clock) this.clock = { start: now, offset: {} };
    if (this.clock.offset[track] === undefined) this.clock.offset[track] = now - us / 1000;
    return Math.max(0, us / 1000 + this.clock.offset[track] - this.clock.start);
  }

  /** Video time on the nominal frame grid, strictly increasing, as a hardware encoder stamps
   *  it: capture jitter would otherwise make a variable-rate stream whose close frames some
   *  players (ffmpeg's constant-rate output among them) see as duplicates. Dropped frames
   *  leave whole-frame gaps. At most half a frame away from the capture time. */
  videoMs(us) {
    const step = 1000 / this.opts.fps;
    let slot = Math.round(this.ms('video', us) / step);
    if (this.lastSlot !== undefined && slot <= this.lastSlot) slot = this.lastSlot + 1;
    this.lastSlot = slot;
    return Math.round(slot * step);
  }

  send(bytes, video, key) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (video && ws.bufferedAmount > MAX_BUFFERED) {
      this.dropped++;
      this.waitKey = true;
      return;
    }
    if (video && this.waitKey && !key) {
      this.dropped++;
      return;
    }
    if (video && key) this.waitKey = false;
    ws.send(bytes);
    this.sent += bytes.byteLength;
  }

  async start() {
    const { code, key, source, width, height, fps, bitrate, audio } = this.opts;
    setState('connecting', 'starting capture');
    this.stream = await capture(source, width, height, fps, audio);
    $('local').srcObject = this.stream;
    const vtrack = this.stream.getVideoTracks()[0];
    const atrack = this.stream.getAudioTracks()[0];
    const settings = atrack ? atrack.getSettings() : null;
    const audioCfg = atrack ? {
      codec: 'opus',
      sampleRate: settings.sampleRate || 48000,
      numberOfChannels: Math.min(settings.channelCount || 2, 2),
      bitrate: 128000,
    } : null;
    if (audioCfg && !(await AudioEncoder.isConfigSupported(audioCfg)).supported) {
      audioCfg.sampleRate = 48000;
    }
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = key ? '?key=' + encodeURIComponent(key) : '';
    const url = `${scheme}//${location.host}/ws/publish/${encodeURIComponent(code)}${q}`;
    setState('connecting', 'connecting');
    const ws = new WebSocket(url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = () => reject(new Error('cannot reach the gateway at ' + location.host));
    });
    ws.onerror = null;
    ws.onmessage = (m) => this.onMessage(JSON.parse(m.data));
    ws.onclose = (c) => {
      window.report.events.push('close ' + c.code);
      if (!this.stopped && window.report.state !== 'error') {
        showError({ name: 'CLOSED', message: 'the gateway closed the connection (' + c.code + ')' });
      }
      this.teardown();
    };
    ws.send(JSON.stringify({
      type: 'start',
      video: true,
      audio: audioCfg ? { codec: 'opus', sampleRate: audioCfg.sampleRate,
        channels: audioCfg.numberOfChannels } : null,
    }));
    await new Promise((resolve, reject) => {
      this.onReady = resolve;
      this.onFail = reject;
    });
    this.startVideo(vtrack, width, height, fps, bitrate);
    if (atrack) this.startAudio(atrack, audioCfg);
    this.viewer(code);
  }

  onMessage(m) {
    if (m.type === 'ready') {
      this.ready = true;
      setState('live', 'live');
      window.report.events.push('ready');
      this.onReady && this.onReady();
    } else if (m.type === 'stats') {
      $('sent').textContent = fmtBytes(this.sent);
      $('rate').textContent = fmtRate(m.bitrate);
      $('frames').textContent = m.frames;
      $('readers').textContent = m.readers;
      $('dropped').textContent = this.dropped;
      window.report.stats = m;
    } else if (m.type === 'error') {
      showError(m);
      this.onFail && this.onFail(m);
    }
  }

  startVideo(track, width, height, fps, bitrate) {
    let configured = null;
    let lastConfig = '';
    const encoder = new VideoEncoder({
      output: (chunk, meta) => {
        const desc = meta && meta.decoderConfig && meta.decoderConfig.description;
        const ms = this.videoMs(chunk.timestamp);
        if (desc) {
          const bytes = new Uint8Array(desc.buffer ? desc.buffer.slice(desc.byteOffset || 0,
            (desc.byteOffset || 0) + desc.byteLength) : desc);
          const sig = bytes.join(',');
          if (sig !== lastConfig) {
            lastConfig = sig;
            // AVC sequence header: keyframe|AVC, packet type 0, CTS 0, then the avcC record.
            this.send(message(KIND_VIDEO, ms, [0x17, 0, 0, 0, 0], bytes), false, false);
          }
        }
        const data = new ArrayBuffer(chunk.byteLength);
        chunk.copyTo(data);
        const key = chunk.type === 'key';
        this.send(message(KIND_VIDEO, ms, [key ? 0x17 : 0x27, 1, 0, 0, 0], data), true, key);
      },
      error: (e) => showError({ name: 'ENCODER', message: String(e) }),
    });
    this.videoEncoder = encoder;
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    this.videoReader = reader;
    const gop = fps * 2;
    const pump = async () => {
      for (;;) {
        const { value: frame, done } = await reader.read();
        if (done || this.stopped) { if (frame) frame.close(); return; }
        if (!configured) {
          // Even dimensions: 4:2:0 needs them.
          const w = frame.displayWidth & ~1;
          const h = frame.displayHeight & ~1;
          configured = { codec: avcCodec(w, h, fps), width: w, height: h, bitrate: bitrate * 1000,
            framerate: fps, latencyMode: 'realtime', avc: { format: 'avc' } };
          encoder.configure(configured);
          $('encoder').textContent = `H.264 ${w}x${h} ${configured.codec}`;
          window.report.video = { width: w, height: h, codec: configured.codec };
        }
        if (encoder.encodeQueueSize > 3) {
          // The encoder is behind: skip a frame rather than queue latency.
          this.dropped++;
          frame.close();
          continue;
        }
        const key = this.frame % gop === 0 || this.waitKey;
        if (key) this.waitKey = false;
        this.frame++;
        encoder.encode(frame, { keyFrame: key });
        frame.close();
      }
    };
    pump().catch((e) => this.stopped || showError({ name: 'CAPTURE', message: String(e) }));
  }

  startAudio(track, cfg) {
    const encoder = new AudioEncoder({
      output: (chunk) => {
        const data = new ArrayBuffer(chunk.byteLength);
        chunk.copyTo(data);
        this.send(message(KIND_OPUS, Math.round(this.ms('audio', chunk.timestamp)), [], data), false, false);
      },
      error: (e) => showError({ name: 'ENCODER', message: String(e) }),
    });
    encoder.configure(cfg);
    this.audioEncoder = encoder;
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    this.audioReader = reader;
    const pump = async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.stopped) { if (value) value.close(); return; }
        encoder.encode(value);
        value.close();
      }
    };
    pump().catch((e) => this.stopped || showError({ name: 'CAPTURE', message: String(e) }));
  }

  /** Plays the stream's HLS once it has a segment: what viewers get. */
  viewer(code) {
    const video = $('viewer');
    const src = `live/${encodeURIComponent(code)}/index.m3u8`;
    const attach = () => {
      if (this.stopped) return;
      if (window.Hls && Hls.isSupported()) {
        const hls = new Hls({ liveSyncDurationCount: 2 });
        hls.on(Hls.Events.ERROR, (_, d) => { if (d.fatal) { hls.destroy(); setTimeout(attach, 2000); } });
        hls.loadSource(src);
        hls.attachMedia(video);
        this.hls = hls;
      } else {
        video.src = src;
      }
    };
    setTimeout(attach, 4000);
  }

  teardown() {
    this.stopped = true;
    for (const r of [this.videoReader, this.audioReader]) if (r) r.cancel().catch(() => {});
    for (const e of [this.videoEncoder, this.audioEncoder]) {
      if (e && e.state !== 'closed') { try { e.close(); } catch (_) { /* closing anyway */ } }
    }
    if (this.stream) {
      this.stream.getTracks().forEach((t) => t.stop());
      if (this.stream.stopExtra) this.stream.stopExtra();
    }
    if (this.hls) this.hls.destroy();
    $('start').disabled = false;
    $('stop').disabled = true;
  }

  async stop() {
    if (this.stopped) return;
    this.stopped = true;
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: 'stop' }));
      await new Promise((r) => { this.ws.addEventListener('close', r); setTimeout(r, 4000); });
    }
    this.teardown();
    setState('idle', 'stopped');
  }
}

function readForm() {
  const [width, height] = $('resolution').value.split('x').map(Number);
  return {
    code: $('code').value.trim(),
    key: $('key').value,
    source: document.querySelector('input[name=source]:checked').value,
    width,
    height,
    fps: Number($('fps').value),
    bitrate: Number($('bitrate').value),
    audio: $('audio').checked,
  };
}

async function goLive(ev) {
  if (ev) ev.preventDefault();
  $('error').hidden = true;
  const opts = readForm();
  const codeError = $('code-error');
  codeError.hidden = opts.code.length <= 128 && /^[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/.test(opts.code);
  codeError.textContent = 'letters, digits, _ and -, with / between names (at most 128)';
  if (!codeError.hidden) return;
  if (!window.VideoEncoder || !window.MediaStreamTrackProcessor) {
    showError({ name: 'UNSUPPORTED', message: 'this browser lacks WebCodecs; use Chromium, Chrome or Edge over https or localhost' });
    return;
  }
  $('start').disabled = true;
  $('stop').disabled = false;
  const live = new GoLive(opts);
  window.golive = live;
  try {
    await live.start();
  } catch (e) {
    if (!window.report.errors.length) showError({ name: 'START', message: e.message || String(e) });
    live.teardown();
  }
}

const params = new URLSearchParams(location.search);
if (params.get('code')) $('code').value = params.get('code');
if (params.get('fps')) $('fps').value = params.get('fps');
if (params.get('res')) $('resolution').value = params.get('res');
if (params.get('source')) {
  const radio = document.querySelector(`input[name=source][value="${CSS.escape(params.get('source'))}"]`);
  if (radio) radio.checked = true;
}
// A key in the link is convenient for a one-off "go live" link; it stays in the history, so
// typing it is the default.
if (params.get('key')) $('key').value = params.get('key');
$('golive-form').addEventListener('submit', goLive);
$('stop').addEventListener('click', () => window.golive && window.golive.stop());
if (params.get('autostart') === '1') goLive();
