// Plays a live FLV stream (HTTP-FLV `http://.../live/<code>.flv` or WS-FLV `ws://...`) with
// mpegts.js or flv.js in headless Chromium for a while and reports how playback advanced,
// sampled every 250 ms: decoded video frames, audio bytes, currentTime, the longest stall,
// the media info the player saw and every error it raised.
//
//   node tests/browser/flvplay.mjs <url> [seconds] [mpegts|flvjs]
//
// Prints one JSON line; exits 0 when playback started and the player raised no error.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [url, secsArg = '10', player = 'mpegts'] = process.argv.slice(2);
if (!url || !['mpegts', 'flvjs'].includes(player)) {
  console.error('usage: flvplay.mjs <flv-url> [seconds] [mpegts|flvjs]');
  process.exit(2);
}
const seconds = Number(secsArg);
const here = dirname(fileURLToPath(import.meta.url));
const lib = readFileSync(join(here, player === 'mpegts'
  ? 'node_modules/mpegts.js/dist/mpegts.js'
  : 'node_modules/flv.js/dist/flv.min.js'));

// Both libraries share flv.js's API; mpegts.js is its maintained fork.
const page = `<!doctype html><html><body>
<video id="v" muted autoplay playsinline style="width:320px"></video>
<script src="/player.js"></script>
<script>
const lib = window.mpegts || window.flvjs;
window.report = { errors: [], mediaInfo: null, stats: null, complete: 0, supported: lib.isSupported() };
const video = document.getElementById('v');
const player = lib.createPlayer(
  { type: 'flv', isLive: true, url: ${JSON.stringify(url)} },
  { enableWorker: false, lazyLoad: false, enableStashBuffer: false, liveBufferLatencyChasing: true },
);
player.on(lib.Events.ERROR, (type, detail, info) => {
  window.report.errors.push([type, detail, info && (info.msg || info.code || JSON.stringify(info))].join(': '));
});
player.on(lib.Events.MEDIA_INFO, (mi) => {
  window.report.mediaInfo = {
    hasVideo: mi.hasVideo, hasAudio: mi.hasAudio, width: mi.width, height: mi.height,
    videoCodec: mi.videoCodec, audioCodec: mi.audioCodec, fps: mi.fps,
  };
});
player.on(lib.Events.STATISTICS_INFO, (s) => { window.report.stats = s; });
player.on(lib.Events.LOADING_COMPLETE, () => { window.report.complete += 1; });
player.attachMediaElement(video);
player.load();
video.play().catch((e) => window.report.errors.push('play(): ' + e));
</script></body></html>`;

const server = createServer((req, res) => {
  if (req.url === '/player.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(lib);
  } else {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;
const profile = mkdtempSync(join(tmpdir(), 'ferrocast-chromium-'));
let browser;
let result = { url, player, ok: false };
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
  const tab = browser.pages()[0] || await browser.newPage();
  const console_ = [];
  tab.on('console', (m) => { if (m.type() === 'error') console_.push(m.text()); });
  await tab.goto(origin + '/');
  const samples = [];
  const t0 = Date.now();
  let started = null;
  while (Date.now() - t0 < (seconds + 30) * 1000) {
    const s = await tab.evaluate(() => {
      const v = document.getElementById('v');
      const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
      return {
        t: v.currentTime, frames: q.totalVideoFrames || 0, dropped: q.droppedVideoFrames || 0,
        audioBytes: v.webkitAudioDecodedByteCount || 0, errors: window.report.errors.length,
      };
    });
    const now = Date.now();
    if (started === null && s.t > 0) started = now;
    if (started !== null) samples.push({ at: (now - started) / 1000, ...s });
    if (s.errors > 0) break;
    if (started !== null && now - started >= seconds * 1000) break;
    await tab.waitForTimeout(250);
  }
  // The longest wall-clock stretch during which currentTime did not move.
  let longestStall = 0;
  let since = null;
  for (let i = 1; i < samples.length; i++) {
    if (samples[i].t > samples[i - 1].t) { since = null; continue; }
    since = since ?? samples[i - 1].at;
    longestStall = Math.max(longestStall, samples[i].at - since);
  }
  const report = await tab.evaluate(() => window.report);
  const last = samples[samples.length - 1] || { t: 0, frames: 0, at: 0, audioBytes: 0, dropped: 0 };
  result = {
    url, player, supported: report.supported, started: started !== null,
    played: last.t - (samples[0] ? samples[0].t : 0), currentTime: last.t, wall: last.at,
    frames: last.frames, droppedFrames: last.dropped, audioBytes: last.audioBytes, longestStall,
    errors: report.errors, complete: report.complete, mediaInfo: report.mediaInfo,
    decodedFrames: report.stats && report.stats.decodedFrames,
    consoleErrors: console_.slice(0, 10),
  };
  result.ok = started !== null && report.errors.length === 0;
} catch (e) {
  result.exception = String(e && e.stack || e);
} finally {
  if (browser) await browser.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
