// Browser ingest benchmark: one headless Chromium tab publishes the clock test pattern
// (web/pattern.js: the wall clock drawn as a barcode) on one path, while ffmpeg plays the
// stream back over RTMP and HLS and reads the clock out of every decoded frame. Reports
// glass-to-glass latency (reader's wall clock minus the clock in the picture) and the CPU the
// gateway and its ffmpeg children spent per second.
//
//   node bench/browser.mjs <native|apivideo> <http-origin> <rtmp-host:port> <gateway-pid> [secs]
//
// Run it through bench/browser.sh, which builds and starts a release gateway. Prints one JSON
// line. Chromium is Debian's; playwright-core comes from tests/browser/node_modules.
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(join(here, '../tests/browser/package.json'));
const { chromium } = require('playwright-core');

const [path, origin, rtmpHost, gatewayPid, secsArg = '20'] = process.argv.slice(2);
if (!['native', 'apivideo'].includes(path) || !gatewayPid) {
  console.error('usage: browser.mjs <native|apivideo> <http-origin> <rtmp-host:port> <gateway-pid> [secs]');
  process.exit(2);
}
const WINDOW = Number(secsArg);
const WARMUP = 10;
const W = 1280;
const H = 720;
const FPS = 30;
const BITS = 44;
const code = `bench-${path}`;

// --- CPU of the gateway and its children, from /proc (clock ticks, 100 per second) ---
function ticks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpu: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}
function cpuSample() {
  const out = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const t = ticks(d);
    if (t && (d === gatewayPid || String(t.ppid) === gatewayPid)) out.set(d, t.cpu);
  }
  return out;
}
function cpuDelta(a, b) {
  let gw = 0;
  let kids = 0;
  for (const [pid, v] of b) {
    const d = v - (a.get(pid) ?? 0);
    if (pid === gatewayPid) gw += d; else kids += d;
  }
  return { gw, kids };
}

// --- a reader: ffmpeg decodes to small gray frames; the barcode gives the capture clock ---
function reader(url, extra) {
  const sw = 320;
  const sh = 180;
  const args = ['-hide_banner', '-loglevel', 'error', '-fflags', 'nobuffer', '-flags', 'low_delay',
    ...extra, '-i', url, '-an', '-vf', `scale=${sw}:${sh},format=gray`, '-f', 'rawvideo', 'pipe:1'];
  const frameSize = sw * sh;
  // Same geometry as web/pattern.js, scaled.
  const block = Math.floor(W * 0.9 / BITS) * sw / W;
  const x0 = Math.floor((W - Math.floor(W * 0.9 / BITS) * BITS) / 2) * sw / W;
  const y = Math.floor((0.4 + 0.09) * sh);
  const samples = [];
  let measuring = false;
  let stopped = false;
  let err = '';
  let p;
  const launch = () => {
    p = spawn('ffmpeg', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = Buffer.alloc(0);
    p.stdout.on('data', (d) => {
      const now = Date.now();
      buf = Buffer.concat([buf, d]);
      while (buf.length >= frameSize) {
        const f = buf.subarray(0, frameSize);
        buf = buf.subarray(frameSize);
        let t = 0;
        for (let i = 0; i < BITS; i++) {
          const x = Math.floor(x0 + (i + 0.5) * block);
          t = t * 2 + (f[y * sw + x] > 128 ? 1 : 0);
        }
        const lat = now - t;
        if (measuring && lat > -50 && lat < 60000) samples.push(lat);
      }
    });
    p.stderr.on('data', (d) => { err = (err + d).slice(-2000); });
    // A player started before the stream (or its first segment) exists tries again.
    p.on('exit', () => { if (!stopped) setTimeout(launch, 1000); });
  };
  launch();
  return {
    start() { measuring = true; },
    stop() { stopped = true; measuring = false; p.kill('SIGKILL'); return { samples, err }; },
  };
}

function pct(xs, q) {
  if (!xs.length) return null;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
}

// --- the publishing page ---
const apivideoPage = `<!doctype html><html><body><script src="/client.js"></script>
<script type="module">
import { testPattern } from '/pattern.js';
const stream = testPattern(${W}, ${H}, ${FPS}, true);
const u = new URL(${JSON.stringify(origin)});
const client = new BrowserToRtmpClient(stream, { host: u.hostname, port: Number(u.port),
  rtmp: 'rtmp://127.0.0.1/live/${code}', framerate: ${FPS} });
window.report = { errors: [] };
client.on('error', (e) => window.report.errors.push(e));
client.start();
</script></body></html>`;

let server;
let target = `${origin}/golive.html?code=${code}&source=pattern&fps=${FPS}&res=${W}x${H}&autostart=1`;
if (path === 'apivideo') {
  server = createServer((req, res) => {
    if (req.url === '/client.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(readFileSync(join(here, '../tests/browser/node_modules/@api.video/browser-to-rtmp-client/dist/index.js')));
    } else if (req.url === '/pattern.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(readFileSync(join(here, '../web/pattern.js')));
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(apivideoPage);
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  target = `http://127.0.0.1:${server.address().port}/`;
}

const profile = mkdtempSync(join(tmpdir(), 'ferrocast-bench-chromium-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--autoplay-policy=no-user-gesture-required'],
});
const tab = browser.pages()[0] || await browser.newPage();
await tab.goto(target);
await new Promise((r) => setTimeout(r, 4000));
const rtmp = reader(`rtmp://${rtmpHost}/live/${code}`, []);
const hls = reader(`${origin}/live/${code}/index.m3u8`, []);
await new Promise((r) => setTimeout(r, WARMUP * 1000));
rtmp.start();
hls.start();
const c0 = cpuSample();
const t0 = Date.now();
await new Promise((r) => setTimeout(r, WINDOW * 1000));
const c1 = cpuSample();
const elapsed = (Date.now() - t0) / 1000;
const r = rtmp.stop();
const h = hls.stop();
const report = await tab.evaluate(() => window.report || null);
await browser.close();
if (server) server.close();
rmSync(profile, { recursive: true, force: true });
const cpu = cpuDelta(c0, c1);
const result = {
  path,
  window_s: elapsed,
  gateway_cpu_pct: Math.round(cpu.gw / elapsed * 10) / 10,
  ffmpeg_cpu_pct: Math.round(cpu.kids / elapsed * 10) / 10,
  rtmp_frames: r.samples.length,
  rtmp_p50_ms: pct(r.samples, 0.5),
  rtmp_p95_ms: pct(r.samples, 0.95),
  hls_frames: h.samples.length,
  hls_p50_ms: pct(h.samples, 0.5),
  hls_p95_ms: pct(h.samples, 0.95),
  page_errors: report && report.errors,
  reader_errors: [r.err, h.err].filter(Boolean),
};
console.log(JSON.stringify(result));
