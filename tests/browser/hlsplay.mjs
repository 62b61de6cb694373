// Plays an HLS stream with hls.js in headless Chromium for a while and reports how playback
// advanced, sampled every 250 ms, so a test can check that a source switch upstream caused
// no fatal error and no long stall. It also reports the live latency where the playlist has
// program date times: the wall clock minus the date of the frame shown (`hls.playingDate`),
// once playback has run 4 s.
//
//   node tests/browser/hlsplay.mjs <m3u8-url> [seconds] [default|ll|classic|near|abr] [bases]
//
// `bases`, a comma-separated list of `http://host:port`, sends each request hls.js makes
// (playlists and segments alike) to the next of them in turn, as a load balancer spraying one
// player over several servers would; the report counts the requests each base got.
//
// `abr` plays a multivariant playlist and asks for levels in turn by setting
// `hls.currentLevel` (the lowest 2 s after start, the middle at 6 s, the highest at 10 s),
// reporting the levels switched to and the picture heights the video element showed.
// `ll` runs hls.js in its low-latency mode (parts, blocking reloads, preload hints), catching
// up to the target latency at up to 1.5x as low-latency deployments configure it; `classic`
// turns that mode off; `default` keeps 3 segments behind the live edge, `near` 2 (below the
// 3 target durations RFC 8216bis asks of a player, as some deployments configure hls.js).
//
// Prints one JSON line; exits 0 when playback started and no fatal hls.js error occurred.
import { chromium } from 'playwright-core';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const [url, secsArg = '15', mode = 'default', basesArg = ''] = process.argv.slice(2);
const bases = basesArg ? basesArg.split(',') : [];
if (!url) {
  console.error('usage: hlsplay.mjs <m3u8-url> [seconds] [default|ll|classic|near|abr]');
  process.exit(2);
}
const seconds = Number(secsArg);
const config = {
  default: { liveSyncDurationCount: 3 },
  ll: { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1.5 },
  classic: { lowLatencyMode: false },
  near: { liveSyncDurationCount: 2 },
  abr: { liveSyncDurationCount: 3 },
}[mode];
const here = dirname(fileURLToPath(import.meta.url));
const hlsjs = readFileSync(join(here, 'node_modules/hls.js/dist/hls.min.js'));

const page = `<!doctype html><html><body>
<video id="v" muted autoplay playsinline style="width:320px"></video>
<script src="/hls.js"></script>
<script>
window.report = { fatal: [], nonFatal: 0, nonFatalDetails: [], discontinuities: 0, parts: 0,
  fragments: 0, blockingReloads: 0, levels: 0, switched: [], fragLevels: [] };
const video = document.getElementById('v');
const config = ${JSON.stringify(config)};
const bases = ${JSON.stringify(bases)};
if (bases.length) {
  window.report.bases = {};
  let turn = 0;
  config.xhrSetup = (xhr, u) => {
    const base = bases[turn++ % bases.length];
    const target = new URL(u);
    window.report.bases[base] = (window.report.bases[base] || 0) + 1;
    xhr.open('GET', base + target.pathname + target.search, true);
  };
}
const hls = new Hls(config);
window.hls = hls;
hls.on(Hls.Events.ERROR, (_, d) => {
  if (d.fatal) window.report.fatal.push(d.type + ': ' + d.details);
  else {
    window.report.nonFatal += 1;
    if (window.report.nonFatalDetails.length < 5) window.report.nonFatalDetails.push(d.details);
  }
});
hls.on(Hls.Events.MANIFEST_PARSED, (_, d) => { window.report.levels = d.levels.length; });
hls.on(Hls.Events.LEVEL_SWITCHED, (_, d) => { window.report.switched.push(d.level); });
hls.on(Hls.Events.FRAG_LOADED, (_, d) => {
  if (d.part) window.report.parts += 1; else window.report.fragments += 1;
});
hls.on(Hls.Events.LEVEL_LOADED, (_, d) => {
  if (d.details && /_HLS_msn=/.test(d.details.url)) window.report.blockingReloads += 1;
});
hls.on(Hls.Events.FRAG_CHANGED, (_, d) => {
  const fl = window.report.fragLevels;
  if (d.frag && fl[fl.length - 1] !== d.frag.level) fl.push(d.frag.level);
  if (d.frag && d.frag.cc !== window.lastCc) {
    if (window.lastCc !== undefined) window.report.discontinuities += 1;
    window.lastCc = d.frag.cc;
  }
});
hls.loadSource(${JSON.stringify(url)});
hls.attachMedia(video);
</script></body></html>`;

const server = createServer((req, res) => {
  if (req.url === '/hls.js') {
    res.writeHead(200, { 'content-type': 'text/javascript' });
    res.end(hlsjs);
  } else {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const origin = `http://127.0.0.1:${server.address().port}`;
const profile = mkdtempSync(join(tmpdir(), 'ferrocast-chromium-'));
let browser;
let result = { url, ok: false };
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
  const tab = browser.pages()[0] || await browser.newPage();
  await tab.goto(origin + '/');
  const samples = [];
  const latencies = [];
  const heights = new Set();
  // `abr`: [seconds after start, level (-1: the lowest)], each asked for once.
  const asks = mode === 'abr' ? [[2, -1], [6, 1], [10, 0]] : [];
  const t0 = Date.now();
  let started = null;
  while (Date.now() - t0 < (seconds + 30) * 1000) {
    const s = await tab.evaluate(() => {
      const v = document.getElementById('v');
      const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
      const pd = window.hls.playingDate;
      return { t: v.currentTime, frames: q.totalVideoFrames || 0, fatal: window.report.fatal.length,
        latency: pd ? (Date.now() - pd.getTime()) / 1000 : null, height: v.videoHeight };
    });
    const now = Date.now();
    if (s.height) heights.add(s.height);
    while (started !== null && asks.length && now - started >= asks[0][0] * 1000) {
      const level = asks.shift()[1];
      await tab.evaluate((l) => {
        window.hls.currentLevel = l < 0 ? window.hls.levels.length - 1 : l;
      }, level);
    }
    if (started === null && s.t > 0) started = now;
    if (started !== null) samples.push({ at: (now - started) / 1000, t: s.t, frames: s.frames });
    if (started !== null && now - started > 4000 && s.latency !== null) latencies.push(s.latency);
    if (s.fatal > 0) break;
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
  const last = samples[samples.length - 1] || { t: 0, frames: 0, at: 0 };
  const sorted = [...latencies].sort((a, b) => a - b);
  const pick = (q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null);
  result = {
    url, mode, started: started !== null, played: last.t - (samples[0] ? samples[0].t : 0),
    wall: last.at, frames: last.frames, longestStall, fatal: report.fatal,
    nonFatal: report.nonFatal, nonFatalDetails: report.nonFatalDetails,
    discontinuities: report.discontinuities, parts: report.parts, fragments: report.fragments,
    blockingReloads: report.blockingReloads, levels: report.levels, switched: report.switched,
    fragLevels: report.fragLevels, bases: report.bases, heights: [...heights].sort((a, b) => a - b),
    latency: { samples: sorted.length, p50: pick(0.5), p90: pick(0.9), min: sorted[0] ?? null },
  };
  result.ok = started !== null && report.fatal.length === 0;
} catch (e) {
  result.exception = String(e && e.stack || e);
} finally {
  if (browser) await browser.close();
  server.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
