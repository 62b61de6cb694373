// Plays a DASH stream in headless Chromium with dash.js or Shaka Player and checks that
// playback advances without an error event and at the expected video size.
//
//   node tests/browser/dash.mjs <mpd-url> <dashjs|shaka> [seconds] [width] [height] [lowest]
//
// With `lowest`, halfway through the window the player is told to stop adapting and play its
// lowest video Representation; the report lists the video Representations the player saw
// and the picture heights the video element showed. With `rewind<N>` (e.g. `rewind60`), 2 s
// in the video element seeks N seconds back (into a DVR MPD's time-shift buffer); the report
// says how far it went back and how far it played on from there.
// Prints one JSON line with what the player reported; exits 0 only when playback passed.
// The report includes the live latency the player measured each second of the window
// (dash.js `getCurrentLiveLatency`, Shaka `getStats().liveLatency`), its stalls (`waiting`
// events after the start), and whether dash.js ran in its low-latency mode.
// Chromium is Debian's (/usr/bin/chromium); the players come from node_modules here.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [url, player = 'dashjs', secsArg = '10', wArg, hArg, switchArg] = process.argv.slice(2);
if (!url || !['dashjs', 'shaka'].includes(player)) {
  console.error('usage: dash.mjs <mpd-url> <dashjs|shaka> [seconds] [width] [height]');
  process.exit(2);
}
const seconds = Number(secsArg);
const here = dirname(fileURLToPath(import.meta.url));
const scripts = {
  dashjs: join(here, 'node_modules/dashjs/dist/modern/umd/dash.all.min.js'),
  shaka: join(here, 'node_modules/shaka-player/dist/shaka-player.compiled.js'),
};

const page = `<!doctype html><html><body>
<video id="v" muted autoplay playsinline style="width:640px"></video>
<script src="/player.js"></script>
<script>
window.report = { errors: [], events: [], waiting: 0 };
const video = document.getElementById('v');
video.addEventListener('waiting', () => { if (video.currentTime > 0) window.report.waiting++; });
video.addEventListener('error', () => window.report.errors.push('video error: ' +
  (video.error && video.error.code) + ' ' + (video.error && video.error.message)));
const url = ${JSON.stringify(url)};
if (${JSON.stringify(player)} === 'dashjs') {
  const p = dashjs.MediaPlayer().create();
  p.on(dashjs.MediaPlayer.events.ERROR, (e) => window.report.errors.push('dash.js: ' +
    JSON.stringify(e.error || e).slice(0, 500)));
  p.on(dashjs.MediaPlayer.events.PLAYBACK_ERROR, (e) => window.report.errors.push('dash.js playback: ' +
    JSON.stringify(e).slice(0, 500)));
  p.initialize(video, url, true);
  window.player = p;
} else {
  shaka.polyfill.installAll();
  const p = new shaka.Player();
  p.addEventListener('error', (e) => window.report.errors.push('shaka: ' +
    JSON.stringify(e.detail).slice(0, 500)));
  p.attach(video).then(() => p.load(url)).catch((e) =>
    window.report.errors.push('shaka load: ' + JSON.stringify(e).slice(0, 500)));
  window.player = p;
}
</script></body></html>`;

const server = createServer((req, res) => {
  if (req.url === '/player.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(readFileSync(scripts[player]));
  } else {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;

const profile = mkdtempSync(join(tmpdir(), 'ferrocast-chromium-'));
let browser;
let result = { player, url, ok: false };
try {
  // A fresh profile directory (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
  const tab = browser.pages()[0] || await browser.newPage();
  const console_ = [];
  tab.on('console', (m) => { if (m.type() === 'error') console_.push(m.text().slice(0, 300)); });
  const requests = [];
  tab.on('requestfinished', async (r) => {
    // A request that finishes while the browser closes has no response to read any more.
    const resp = await r.response().catch(() => null);
    if (r.url().startsWith(url.slice(0, url.lastIndexOf('/')))) requests.push(`${resp && resp.status()} ${r.url().slice(url.lastIndexOf('/') + 1)}`);
  });
  await tab.goto(origin + '/');
  // Wait for playback to start (first frame), at most 30 s.
  const started = Date.now();
  let t0 = null;
  while (Date.now() - started < 30000) {
    const s = await tab.evaluate(() => ({ t: document.getElementById('v').currentTime,
      rs: document.getElementById('v').readyState, errors: window.report.errors.length }));
    if (s.errors > 0) break;
    if (s.t > 0 && s.rs >= 2) { t0 = s.t; break; }
    await tab.waitForTimeout(250);
  }
  const startT = t0;
  const latencies = [];
  const heights = new Set();
  const rewindBy = switchArg && switchArg.startsWith('rewind') ? Number(switchArg.slice(6)) : 0;
  let rewind = null;
  if (startT !== null) {
    for (let i = 0; i < seconds; i++) {
      await tab.waitForTimeout(1000);
      if (rewindBy > 0 && i === 1) {
        const before = await tab.evaluate(() => document.getElementById('v').currentTime);
        await tab.evaluate((by) => { const v = document.getElementById('v'); v.currentTime = v.currentTime - by; }, rewindBy);
        const waitStart = Date.now();
        while (Date.now() - waitStart < 15000 &&
          await tab.evaluate(() => document.getElementById('v').seeking)) await tab.waitForTimeout(100);
        const after = await tab.evaluate(() => document.getElementById('v').currentTime);
        rewind = { before, after, by: before - after };
      }
      heights.add(await tab.evaluate(() => document.getElementById('v').videoHeight));
      if (switchArg === 'lowest' && i === Math.floor(seconds / 2)) {
        await tab.evaluate(() => {
          const p = window.player;
          if (p.setRepresentationForTypeByIndex) {
            p.updateSettings({ streaming: { abr: { autoSwitchBitrate: { video: false } } } });
            const reps = p.getRepresentationsByType('video');
            const low = reps.reduce((a, r, i) => (r.height < reps[a].height ? i : a), 0);
            p.setRepresentationForTypeByIndex('video', low, true);
          } else {
            p.configure({ abr: { enabled: false } });
            const tracks = p.getVariantTracks();
            const low = tracks.reduce((a, t) => (t.height < a.height ? t : a), tracks[0]);
            p.selectVariantTrack(low, true);
          }
        });
      }
      const l = await tab.evaluate(() => {
        const p = window.player;
        const v = p.getCurrentLiveLatency ? p.getCurrentLiveLatency() : p.getStats().liveLatency;
        return Number.isFinite(v) ? v : null;
      });
      if (l !== null) latencies.push(Math.round(l * 1000) / 1000);
    }
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  const lowLatencyMode = await tab.evaluate(() =>
    window.player.getLowLatencyModeEnabled ? window.player.getLowLatencyModeEnabled() : null);
  const end = await tab.evaluate(() => {
    const v = document.getElementById('v');
    return { t: v.currentTime, width: v.videoWidth, height: v.videoHeight, paused: v.paused,
      readyState: v.readyState, errors: window.report.errors,
      buffered: v.buffered.length ? [v.buffered.start(0), v.buffered.end(v.buffered.length - 1)] : [] };
  });
  const mse = await tab.evaluate(() => ({
    avc: MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001f"'),
    aac: MediaSource.isTypeSupported('audio/mp4; codecs="mp4a.40.2"'),
  }));
  // After a rewind, playback is measured from where the seek landed.
  const from = rewind ? rewind.after : startT;
  const advanced = startT === null ? 0 : end.t - from;
  const videoHeights = await tab.evaluate(() => {
    const p = window.player;
    const list = p.getRepresentationsByType ? p.getRepresentationsByType('video')
      : p.getVariantTracks();
    return [...new Set(list.map((r) => r.height))].sort((a, b) => a - b);
  });
  result = {
    player, url, mse, startTime: startT, endTime: end.t, advanced,
    width: end.width, height: end.height, paused: end.paused, buffered: end.buffered,
    videoRepresentations: videoHeights, heightsShown: [...heights].filter((h) => h).sort((a, b) => a - b),
    latencies, latencyP50: sorted.length ? sorted[Math.floor(sorted.length / 2)] : null,
    lowLatencyMode, stalls: await tab.evaluate(() => window.report.waiting),
    errors: end.errors, consoleErrors: console_.slice(0, 5),
    requests: requests.slice(0, 8), requestCount: requests.length, rewind,
  };
  const sizeOk = !wArg || (end.width === Number(wArg) && end.height === Number(hArg));
  // The check is that playback advances, not how fast: a live player starts behind the edge
  // and may rebuffer briefly when a 2-core CI machine is busy, so 60 % of the window (6 s of
  // 10) is required rather than nearly all of it.
  const rewound = !rewindBy || (rewind && rewind.by >= rewindBy * 0.9);
  const window_ = rewindBy ? seconds - 2 : seconds;
  result.ok = startT !== null && end.errors.length === 0 && advanced >= window_ * 0.6 && sizeOk &&
    rewound;
} catch (e) {
  result.exception = String(e && e.stack || e);
} finally {
  if (browser) await browser.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
