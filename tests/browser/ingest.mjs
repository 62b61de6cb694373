// Publishes from headless Chromium's fake camera (1280x720, with a beeping microphone) to the
// gateway, the way a streamer's browser would.
//
//   node tests/browser/ingest.mjs apivideo <http-origin> <rtmp-url> [seconds] [--close]
//       @api.video/browser-to-rtmp-client 0.2.4, unchanged, from a page on another origin
//   node tests/browser/ingest.mjs golive <http-origin> <code> <key> [seconds] [--close]
//       the dashboard's own Go live page (native WebCodecs path), served by the gateway
//   node tests/browser/ingest.mjs raw <http-origin> <socket.io|ws> <case>
//       hostile inputs from a page: see `cases` below
//
// Prints one JSON line with what the page saw (errors with their names, acks, state);
// `--close` closes the tab mid-stream instead of stopping cleanly.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const closeTab = process.argv.includes('--close');
const fpsArg = (process.argv.find((a) => a.startsWith('--fps=')) || '').slice(6);
const sourceArg = (process.argv.find((a) => a.startsWith('--source=')) || '').slice(9);
// --screenshot=PATH: a PNG of the page before it stops (docs/screenshots/golive.png).
const shotArg = (process.argv.find((a) => a.startsWith('--screenshot=')) || '').slice(13);
const [mode, origin] = args;
const here = dirname(fileURLToPath(import.meta.url));

const clientJs = join(here, 'node_modules/@api.video/browser-to-rtmp-client/dist/index.js');
const socketIoJs = join(here, 'node_modules/socket.io-client/dist/socket.io.min.js');

function page(body) {
  return `<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script src="/client.js"></script><script src="/socket.io.js"></script>
<script>window.report = { errors: [], acks: [], events: [] };</script>
<script>${body}</script></body></html>`;
}

const apivideo = (rtmp, seconds) => page(`
(async () => {
  const stream = await navigator.mediaDevices.getUserMedia({
    video: { width: 1280, height: 720, frameRate: 25 }, audio: true });
  document.getElementById('v').srcObject = stream;
  const u = new URL(${JSON.stringify(origin)});
  const client = new BrowserToRtmpClient(stream, {
    host: u.hostname, port: Number(u.port), rtmp: ${JSON.stringify(rtmp)}, framerate: 25 });
  client.on('error', (e) => window.report.errors.push(e));
  await client.start();
  window.report.events.push('started');
  window.client = client;
})().catch((e) => window.report.errors.push({ name: 'PAGE', message: String(e) }));
`);

// Hostile clients speak the protocol by hand with socket.io-client or a WebSocket.
const cases = {
  // socket.io: media before start, garbage after a good start, an oversized chunk, a bad start.
  'before-start': `const s = io(ORIGIN, { transports: ['websocket'] });
    s.on('error', (e) => window.report.errors.push(e));
    s.emit('binarystream', new Uint8Array(1000), (err) => { window.report.acks.push(err || null); });`,
  'bad-start': `const s = io(ORIGIN, { transports: ['websocket'] });
    s.on('error', (e) => window.report.errors.push(e));
    s.emit('start', { framerate: 25 }, (err) => { window.report.acks.push(err || null); });`,
  // Random bytes: not even a container signature.
  'garbage': `const s = io(ORIGIN, { transports: ['websocket'] });
    s.on('error', (e) => window.report.errors.push(e));
    s.emit('start', { framerate: 25, audioSampleRate: 44100, rtmp: RTMP }, (err) => {
      window.report.acks.push(err || null);
      const junk = new Uint8Array(CHUNK); crypto.getRandomValues(junk.subarray(0, Math.min(CHUNK, 65536)));
      s.emit('binarystream', junk, (e) => window.report.acks.push(e || null));
    });`,
  // A WebM signature, then noise: ffmpeg itself gives up.
  'garbage-webm': `const s = io(ORIGIN, { transports: ['websocket'] });
    s.on('error', (e) => window.report.errors.push(e));
    s.emit('start', { framerate: 25, audioSampleRate: 44100, rtmp: RTMP }, (err) => {
      window.report.acks.push(err || null);
      const junk = new Uint8Array(CHUNK); crypto.getRandomValues(junk.subarray(0, Math.min(CHUNK, 65536)));
      junk.set([0x1a, 0x45, 0xdf, 0xa3]);
      s.emit('binarystream', junk, (e) => window.report.acks.push(e || null));
    });`,
  'oversized': `const s = io(ORIGIN, { transports: ['websocket'] });
    s.on('error', (e) => window.report.errors.push(e));
    s.emit('start', { framerate: 25, audioSampleRate: 44100, rtmp: RTMP }, (err) => {
      window.report.acks.push(err || null);
      s.emit('binarystream', new Uint8Array(CHUNK), (e) => window.report.acks.push(e || null));
    });`,
  'hold': `const s = io(ORIGIN, { transports: ['websocket'] });
    s.on('error', (e) => window.report.errors.push(e));
    s.emit('start', { framerate: 25, audioSampleRate: 44100, rtmp: RTMP }, (err) => {
      window.report.acks.push(err || null);
    });`,
  // native WebSocket: garbage binary before start, a bad media kind after start.
  'ws-garbage': `const w = new WebSocket(ORIGIN.replace('http', 'ws') + '/ws/publish/' + CODE);
    w.binaryType = 'arraybuffer';
    w.onopen = () => w.send(new Uint8Array([1, 2, 3, 4, 5, 6, 7]));
    w.onmessage = (m) => window.report.errors.push(JSON.parse(m.data));
    w.onclose = (c) => window.report.events.push('close ' + c.code);`,
  'ws-bad-kind': `const w = new WebSocket(ORIGIN.replace('http', 'ws') + '/ws/publish/' + CODE);
    w.binaryType = 'arraybuffer';
    w.onopen = () => { w.send(JSON.stringify({ type: 'start', video: true }));
      w.send(new Uint8Array([77, 0, 0, 0, 0, 1, 2, 3])); };
    w.onmessage = (m) => { const v = JSON.parse(m.data); if (v.type !== 'stats') window.report.errors.push(v); };
    w.onclose = (c) => window.report.events.push('close ' + c.code);`,
};

let html;
let target;
let seconds = 0;
if (mode === 'apivideo') {
  seconds = Number(args[3] || 10);
  html = apivideo(args[2], seconds);
} else if (mode === 'golive') {
  seconds = Number(args[4] || 10);
  target = `${origin}/golive.html?code=${encodeURIComponent(args[2])}&key=${encodeURIComponent(args[3])}&autostart=1${fpsArg ? '&fps=' + fpsArg : ''}${sourceArg ? '&source=' + sourceArg : ''}`;
} else if (mode === 'raw') {
  const [, , kind, name, rtmp = '', code = 'raw', chunk = '0'] = args;
  // A holding tab keeps its transcode long enough for a second tab, started after it on a
  // loaded machine, to meet the cap.
  seconds = name === 'hold' && code === 'long' ? 15 : 4;
  html = page(`const ORIGIN = ${JSON.stringify(origin)}; const RTMP = ${JSON.stringify(rtmp)};
    const CODE = ${JSON.stringify(code)}; const CHUNK = ${Number(chunk)};
    ${cases[name]}`);
  if (!cases[name]) { console.error('unknown case'); process.exit(2); }
} else {
  console.error('usage: ingest.mjs apivideo|golive|raw ...');
  process.exit(2);
}

let server;
if (html) {
  server = createServer((req, res) => {
    if (req.url === '/client.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(readFileSync(clientJs));
    } else if (req.url === '/socket.io.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(readFileSync(socketIoJs));
    } else {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(html);
    }
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  target = `http://127.0.0.1:${server.address().port}/`;
}

const profile = mkdtempSync(join(tmpdir(), 'ferrocast-chromium-'));
let browser;
let result = { mode, ok: false };
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'],
  });
  const tab = browser.pages()[0] || await browser.newPage();
  const logs = [];
  tab.on('console', (m) => logs.push(m.text().slice(0, 300)));
  tab.on('pageerror', (e) => logs.push('pageerror: ' + String(e).slice(0, 300)));
  await tab.goto(target);
  if (mode === 'raw' && !(args[3] === 'hold' && args[5] === 'long')) {
    // A hostile case is over once the gateway answered (an error, a close, or the ack of a
    // start that holds); a loaded machine may take a while to start Chromium and ffmpeg, so
    // wait for that rather than a fixed time.
    const holds = args[3] === 'hold';
    await tab.waitForFunction((holds) => window.report &&
      (window.report.errors.length > 0 || window.report.events.length > 0 ||
        (holds && window.report.acks.length > 0)),
    holds, { timeout: 20000, polling: 100 }).catch(() => {});
    await tab.waitForTimeout(300);
  } else {
    await tab.waitForTimeout(seconds * 1000);
  }
  if (shotArg) {
    await tab.setViewportSize({ width: 1280, height: 900 });
    await tab.waitForTimeout(500);
    await tab.screenshot({ path: shotArg, fullPage: false });
  }
  let report = await tab.evaluate(() => window.report || null);
  if (mode === 'apivideo' && !closeTab) {
    // The client's stop() never settles once a fatal error stopped its recorder.
    await tab.evaluate(() => window.client && Promise.race([window.client.stop(),
      new Promise((r) => setTimeout(r, 3000))]));
    await tab.waitForTimeout(500);
    report = await tab.evaluate(() => window.report);
  }
  if (mode === 'golive' && !closeTab) {
    await tab.evaluate(() => window.golive && window.golive.stop());
    await tab.waitForTimeout(500);
    report = await tab.evaluate(() => window.report || null);
  }
  result = { mode, ok: true, report, logs: logs.slice(-20) };
} catch (e) {
  result.error = String(e);
} finally {
  if (browser) await browser.close();
  if (server) server.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
