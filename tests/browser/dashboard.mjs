// Drives the dashboard in headless Chromium against a running gateway, the way an operator
// would: create a stream through the form (with field-level errors first), publish to it with
// ffmpeg, watch it turn live in the list, play the preview with HLS and with DASH, see a push
// become active, kick a reader, take the stream idle and back, and edit it.
//
//   node tests/browser/dashboard.mjs --base http://127.0.0.1:8080 --rtmp rtmp://127.0.0.1:1935
//        --fixture hd720.mp4 [--token TOKEN] [--screenshots DIR]
//   node tests/browser/dashboard.mjs --base http://127.0.0.1:8080 --inputs-udp udp://127.0.0.1:PORT
//        --fixture small.mp4 [--screenshots DIR]
//
// With --token the gateway has api.token set: the script checks that the page asks for it
// (a wrong one first) and then runs a short check of the list. With --inputs-udp it creates,
// through the form, a stream pulling two inputs (that UDP address, fed here by ffmpeg, and the
// fixture as a looped file), checks their states in the Inputs card, switches to the backup,
// sees the primary go down and a refused switch, restarts the inputs and edits the stream.
// Prints one JSON line with every step; exits 0 only when all passed. ffmpeg children are
// this script's own and are killed before it exits. Chromium is Debian's (/usr/bin/chromium).
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.base || (!args.token && !args.fixture) || (!args.token && !args['inputs-udp'] && !args.rtmp)) {
  console.error('usage: dashboard.mjs --base URL (--rtmp URL --fixture FILE | --inputs-udp URL --fixture FILE | --token T) [--screenshots DIR]');
  process.exit(2);
}
const base = args.base.replace(/\/$/, '');
const shots = args.screenshots || null;
if (shots) mkdirSync(shots, { recursive: true });

const CODE = 'studio';
const KEY = 'e2e-Key_123';
const NAME = 'Studio A';
// Stream names are user input: shown as text, never parsed as HTML.
const EVIL = '<img src=x onerror="window.__xss=1"><b>Evil</b> & "co"';

const result = { ok: false, steps: [] };
const children = new Set();
let page = null;

function step(name, extra) {
  result.steps.push(Object.assign({ step: name, at_ms: Date.now() - started }, extra || {}));
}
const started = Date.now();

function ffmpeg(argv, what) {
  const child = spawn('ffmpeg', ['-hide_banner', '-nostdin', '-v', 'error', ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.on('data', (d) => { child.log = ((child.log || '') + d).slice(-2000); });
  child.what = what;
  children.add(child);
  child.on('exit', () => children.delete(child));
  return child;
}

function publish() {
  return ffmpeg(['-re', '-stream_loop', '-1', '-i', args.fixture, '-c', 'copy', '-f', 'flv',
    `${args.rtmp}/live/${CODE}?key=${KEY}`], 'publisher');
}

async function stop(child) {
  if (!child || child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await Promise.race([done, new Promise((r) => setTimeout(r, 5000))]);
  if (child.exitCode === null) child.kill('SIGKILL');
}

/** Polls `fn` in the page (or node) until it returns a truthy value. A throw counts as
 *  "not yet": the page renders from the event stream, so an element may not exist on the
 *  first look. */
async function until(what, fn, timeoutMs = 30000) {
  const t0 = Date.now();
  let last;
  while (Date.now() - t0 < timeoutMs) {
    try {
      last = await fn();
    } catch (e) {
      last = `error: ${String(e && e.message || e).slice(0, 300)}`;
      await new Promise((r) => setTimeout(r, 250));
      continue;
    }
    if (last) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

async function shot(name, opts) {
  if (!shots) return;
  await page.screenshot(Object.assign({ path: join(shots, name + '.png') }, opts || {}));
}

/** Waits until the preview plays: time advances by `secs` * 0.6 over `secs`, at w x h. */
async function plays(label, secs, w, h) {
  const first = await until(`${label}: first frame`, () => page.evaluate(() => {
    const v = document.getElementById('preview');
    return v && v.readyState >= 2 && v.currentTime > 0 ? v.currentTime : null;
  }), 45000);
  await page.waitForTimeout(secs * 1000);
  const end = await page.evaluate(() => {
    const v = document.getElementById('preview');
    return { t: v.currentTime, width: v.videoWidth, height: v.videoHeight, paused: v.paused,
      status: document.querySelector('.player-status').textContent };
  });
  const advanced = end.t - first;
  step(label, { advanced, width: end.width, height: end.height, status: end.status });
  if (advanced < secs * 0.6) throw new Error(`${label}: playback advanced only ${advanced.toFixed(2)} s in ${secs} s (${end.status})`);
  if (end.width !== w || end.height !== h) throw new Error(`${label}: video is ${end.width}x${end.height}, expected ${w}x${h}`);
}

/** The API, from node, for setup and cross-checks (the page itself uses only its own calls). */
async function api(method, path, body) {
  const headers = { 'content-type': 'application/json' };
  if (args.token) headers.authorization = 'Bearer ' + args.token;
  const r = await fetch(`${base}/api/v1/${path}`, { method, headers, body: body && JSON.stringify(body) });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function tokenRun() {
  const lobby = await api('PUT', 'streams/lobby', { name: 'Lobby camera' });
  if (lobby.status !== 201) throw new Error('PUT lobby: ' + JSON.stringify(lobby));
  await page.goto(base + '/');
  await page.waitForSelector('#token-dialog[open]', { timeout: 15000 });
  step('token dialog shown');
  await shot('token', { clip: { x: 0, y: 0, width: 1280, height: 560 } });
  await page.fill('#token-input', 'not-the-token');
  await page.click('#token-form button[type=submit]');
  await until('the refusal', () => page.evaluate(() => {
    const e = document.getElementById('token-error');
    return document.getElementById('token-dialog').open && !e.hidden && e.textContent.includes('refused');
  }), 15000);
  step('wrong token refused in the form');
  await page.fill('#token-input', args.token);
  await page.click('#token-form button[type=submit]');
  await until('the list with live updates', () => page.evaluate(() =>
    !document.getElementById('token-dialog').open
    && document.getElementById('feed-state').dataset.state === 'live'
    && document.querySelector('tr[data-code="lobby"]') !== null), 20000);
  const kept = await page.evaluate(() => ({
    stored: sessionStorage.getItem('ferrocast.api-token'),
    url: location.href,
    signOut: !document.getElementById('sign-out').hidden,
  }));
  if (kept.stored !== args.token) throw new Error('token not kept for the session');
  if (kept.url.includes(args.token)) throw new Error('token in the URL');
  step('token kept for the session', { signOut: kept.signOut });
  // A reload in the same tab does not ask again.
  await page.reload();
  await until('the list after a reload', () => page.evaluate(() =>
    document.querySelector('tr[data-code="lobby"]') !== null && !document.getElementById('token-dialog').open), 15000);
  step('no second prompt after a reload');
}

async function mainRun() {
  // An idle configured stream beside the one the form creates.
  const lobby = await api('PUT', 'streams/lobby', { name: 'Lobby camera', push: [{ url: 'rtmp://a.rtmp.youtube.com/live2/secret-yt-key', enabled: false, comment: 'YouTube' }] });
  if (lobby.status !== 201) throw new Error('PUT lobby: ' + JSON.stringify(lobby));

  const evil = await api('PUT', 'streams/evil', { name: EVIL });
  if (evil.status !== 201) throw new Error('PUT evil: ' + JSON.stringify(evil));
  await page.goto(base + '/');
  await until('the list', () => page.evaluate(() => document.querySelector('tr[data-code="lobby"]') !== null), 15000);
  const shown = await until('the HTML-like name', () => page.evaluate(() => {
    const tr = document.querySelector('tr[data-code="evil"]');
    return tr && { text: tr.querySelector('.stream-name').textContent, elements: tr.querySelectorAll('img, b').length, xss: window.__xss === 1 };
  }), 10000);
  if (shown.text !== EVIL || shown.elements || shown.xss) throw new Error('a name was parsed as HTML: ' + JSON.stringify(shown));
  step('names shown as text', shown);
  // A stream deleted elsewhere leaves the list on the next event.
  await api('DELETE', 'streams/evil');
  await until('the deleted stream gone', () => page.evaluate(() => document.querySelector('tr[data-code="evil"]') === null), 10000);
  step('list shows the configured stream; a deleted one leaves');

  // Create through the form, with field-level errors first.
  await page.click('a[data-nav="new"]');
  await page.waitForSelector('input[name=code]');
  await page.fill('input[name=code]', 'bad code!');
  await page.fill('input[name=name]', NAME);
  await page.click('button[type=submit]');
  const codeError = await until('the code error beside the field', () => page.evaluate(() => {
    const e = document.querySelector('[data-error-for="code"]');
    const input = document.querySelector('input[name=code]');
    return !e.hidden && input.getAttribute('aria-invalid') === 'true'
      && input.closest('[data-field="code"]').contains(e) ? e.textContent : null;
  }), 10000);
  step('field error beside code', { message: codeError });

  await page.fill('input[name=code]', CODE);
  await page.click('text=Add destination');
  await page.fill('.push-row input.mono', 'ftp://example.com/live/x');
  await page.fill('.push-row input[placeholder="e.g. YouTube"]', 'loopback');
  await page.click('button[type=submit]');
  const pushError = await until('the push URL error beside the field', () => page.evaluate(() => {
    const row = document.querySelector('.push-row');
    const e = row.querySelector('[data-error-for="url"]');
    return !e.hidden && row.querySelector('input.mono').getAttribute('aria-invalid') === 'true' ? e.textContent : null;
  }), 10000);
  if (!/rtmp/.test(pushError)) throw new Error('push URL error: ' + pushError);
  step('field error beside push[0].url', { message: pushError });
  await shot('new-stream-errors');

  await page.fill('.push-row input.mono', `${args.rtmp}/live/other`);
  // A second destination nobody listens on, with a long backoff: it waits to retry.
  await page.click('text=Add destination');
  const second = page.locator('.push-row').nth(1);
  await second.locator('input.mono').fill('rtmp://127.0.0.1:9/live/nowhere');
  await second.locator('summary').click();
  await second.locator('[data-sub="timeout_s"] input').fill('2');
  await second.locator('[data-sub="retry.initial_s"] input').fill('120');
  await second.locator('[data-sub="retry.max_s"] input').fill('120');
  await page.check('input[name=key-mode][value=set]');
  const generated = await page.inputValue('input[name=stream_key]');
  if (!/^[A-Za-z0-9]{24}$/.test(generated)) throw new Error('generated key: ' + generated);
  await page.fill('input[name=stream_key]', KEY);
  await page.click('button[type=submit]');
  await page.waitForSelector('#saved-key', { timeout: 10000 });
  if ((await page.inputValue('#saved-key')) !== KEY) throw new Error('saved key not shown once');
  step('created through the form; key shown once');
  const created = await api('GET', `streams/${CODE}`);
  if (!created.json.has_stream_key || JSON.stringify(created.json).includes(KEY)) throw new Error('key not write-only');
  if (created.json.name !== NAME) throw new Error('name stored as ' + created.json.name);

  await page.click('text=Open the stream');
  await until('the idle stream page', () => page.evaluate(() =>
    document.querySelector('.stream-page') && document.querySelector('.stream-page').dataset.state === 'idle'
    && !document.querySelector('.preview-overlay').hidden), 15000);
  const links = await page.evaluate(() => ({
    golive: document.querySelector('a[data-action=golive]').getAttribute('href'),
    nav: document.querySelector('a[data-nav=golive]').getAttribute('href'),
    urls: [...document.querySelectorAll('.urls tr[data-proto]')].map((r) => [r.dataset.use, r.dataset.proto, r.querySelector('input').value]),
  }));
  if (links.golive !== `golive.html?code=${CODE}`) throw new Error('go live link: ' + links.golive);
  const rtmpPort = new URL(args.rtmp.replace(/^rtmp/, 'http')).port;
  const want = [
    ['publish', 'rtmp', `rtmp://127.0.0.1:${rtmpPort}/live/${CODE}?key=STREAM_KEY`],
    ['play', 'hls', `${base}/live/${CODE}/index.m3u8`],
    ['play', 'dash', `${base}/live/${CODE}/index.mpd`],
    ['play', 'mpeg-ts', `${base}/live/${CODE}/mpegts`],
  ];
  for (const w of want) {
    if (!links.urls.some((u) => u[0] === w[0] && u[1] === w[1] && u[2] === w[2])) throw new Error('URL missing: ' + w.join(' ') + ' in ' + JSON.stringify(links.urls));
  }
  for (const p of ['srt', 'rtsp']) {
    if (!links.urls.some((u) => u[1] === p)) throw new Error(`no ${p} URL`);
  }
  step('stream page idle, URLs and go-live link', { urls: links.urls.length });

  // Publish: the list turns live with the right resolution.
  let publisher = publish();
  await page.click('a[data-nav="streams"]');
  const row = await until('the stream live in the list at 1280x720', () => page.evaluate((code) => {
    const tr = document.querySelector(`tr[data-code="${code}"]`);
    if (!tr || tr.dataset.state !== 'live') return null;
    const video = tr.querySelector('td.col-video').textContent;
    return video.includes('1280×720') ? {
      video, audio: tr.querySelector('td.col-audio').textContent,
      name: tr.querySelector('.stream-name').textContent,
      in: tr.querySelector('td.col-in').textContent,
    } : null;
  }, CODE), 40000);
  if (row.name !== NAME) throw new Error('name: ' + JSON.stringify(row));
  step('live in the list', row);
  await until('a push state in the list', () => page.evaluate((code) =>
    document.querySelector(`tr[data-code="${code}"] td.col-pushes .badge-active`) !== null, CODE), 30000);
  step('push active in the list');

  // The stream page: preview with HLS, then DASH.
  await page.click(`tr[data-code="${CODE}"] .stream-name`);
  await page.waitForSelector('#preview');
  await page.evaluate(() => document.querySelector('[data-kind=hls]').click());
  await plays('HLS preview plays', 6, 1280, 720);
  await page.click('[data-kind=dash]');
  await until('the DASH player', () => page.evaluate(() => document.querySelector('[data-kind=dash]').getAttribute('aria-pressed') === 'true'), 5000);
  await page.waitForTimeout(500);
  await plays('DASH preview plays', 6, 1280, 720);
  await page.click('[data-kind=hls]');

  const push = await until('the push active on the stream page', () => page.evaluate(() => {
    const tr = document.querySelector('.pushes tr[data-index="0"]');
    return tr && tr.dataset.status === 'active' ? { attempt: tr.children[2].textContent, bitrate: tr.children[6].textContent } : null;
  }), 30000);
  step('push active', push);
  const waiting = await until('the unreachable push waiting to retry', () => page.evaluate(() => {
    const tr = document.querySelector('.pushes tr[data-index="1"]');
    return tr && tr.dataset.status === 'reconnecting' && !tr.querySelector('button').disabled
      ? { attempt: Number(tr.children[2].textContent), next: tr.children[4].textContent, error: tr.children[5].textContent } : null;
  }), 30000);
  await page.click('.pushes tr[data-index="1"] button');
  const retried = await until('a second attempt after Retry now', () => page.evaluate((before) => {
    const tr = document.querySelector('.pushes tr[data-index="1"]');
    const attempt = Number(tr.children[2].textContent);
    return attempt > before ? { attempt, status: tr.dataset.status } : null;
  }, waiting.attempt), 15000);
  step('retry now starts the next attempt at once', { waiting, retried });
  const other = await api('GET', 'streams/other');
  if (other.json.runtime.status !== 'live') throw new Error('push target not live: ' + JSON.stringify(other.json.runtime));

  // A reader appears in the sessions; kicking it removes it.
  const reader = ffmpeg(['-i', `${args.rtmp}/live/${CODE}`, '-c', 'copy', '-f', 'null', '-'], 'reader');
  const sessionId = await until('the reader in the sessions', () => page.evaluate(() => {
    const tr = document.querySelector('.sessions tr[data-role="reader"]');
    return tr ? tr.dataset.session : null;
  }), 30000);
  await until('the reader in the live figures', () => page.evaluate(() =>
    document.querySelector('[data-stat=readers]').textContent.includes('rtmp 1')), 10000);
  // Clicks scrolled the page: the sticky top bar belongs at the top of the picture.
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.waitForTimeout(1500);
  await shot('stream', { fullPage: true });
  // The list with a reader connected, then back to the stream.
  await page.click('a[data-nav="streams"]');
  await until('the reader in the list', () => page.evaluate((code) =>
    // The list renders from the event stream: the row may not exist yet on the first look.
    (document.querySelector(`tr[data-code="${code}"] td.col-readers`)?.textContent ?? '').includes('rtmp 1'), CODE), 10000);
  await page.waitForTimeout(1200);
  await shot('streams');
  await page.goBack();
  await page.waitForSelector(`button[data-kick="${sessionId}"]`, { timeout: 10000 });
  await page.click(`button[data-kick="${sessionId}"]`);
  await until('the kicked session gone', () => page.evaluate((id) =>
    document.querySelector(`.sessions tr[data-session="${id}"]`) === null, sessionId), 15000);
  step('kicked session disappeared', { session: sessionId });
  const sessions = await api('GET', `sessions?stream=${CODE}`);
  if (sessions.json.data.some((s) => String(s.id) === sessionId)) throw new Error('kicked session still listed by the API');
  await stop(reader);

  // The bitrate graph starts from the server's history.
  const history = await api('GET', `streams/${CODE}`);
  const samples = history.json.runtime.bitrate_history || [];
  if (samples.length < 5 || !samples.some((s) => s.in_kbps > 0)) throw new Error('bitrate history: ' + JSON.stringify(samples.slice(-3)));
  step('bitrate history served', { samples: samples.length });

  // Recording: started from the page, listed while it is written, stopped, downloadable.
  await page.click('button[data-action=record-start]');
  await until('a recording being written', () => page.evaluate(() =>
    document.querySelector('.recordings tbody tr .chip') !== null), 20000);
  await page.click('button[data-action=record-stop]');
  const recorded = await until('the recording closed', () => page.evaluate(() => {
    const tr = document.querySelector('.recordings tbody tr');
    return tr && !tr.querySelector('.chip') ? tr.querySelector('a[download]').getAttribute('href') : null;
  }), 20000);
  const got = await fetch(recorded, { headers: { Range: 'bytes=0-187' } });
  const head = new Uint8Array(await got.arrayBuffer());
  if (got.status !== 206 || head.length !== 188 || head[0] !== 0x47) throw new Error(`recording download: ${got.status}, ${head.length} bytes`);
  step('recorded from the page: started, listed, stopped, downloadable', { href: recorded });

  // Idle and back: the page follows without a reload.
  await stop(publisher);
  await until('the stream idle on its page', () => page.evaluate(() =>
    document.querySelector('.stream-page').dataset.state === 'idle' && !document.querySelector('.preview-overlay').hidden), 20000);
  step('went idle: overlay shown, player stopped');
  publisher = publish();
  await until('the stream live again', () => page.evaluate(() => document.querySelector('.stream-page').dataset.state === 'live'), 30000);
  await plays('preview plays again after a republish', 5, 1280, 720);

  // Edit: the masked push URL goes back unchanged and keeps the destination.
  await page.click('a[data-action=edit]');
  await page.waitForSelector('.push-row input.mono');
  const masked = await page.inputValue('.push-row input.mono');
  if (masked !== `${args.rtmp}/live/other` && !masked.includes('****')) throw new Error('push URL in the form: ' + masked);
  const keyNote = await page.textContent('[data-field=stream_key] .help');
  await page.fill('input[name=name]', 'Main studio');
  // A ladder written in the form (left off, so no ffmpeg runs here).
  await page.fill('input[name=transcode_profiles]', 'source, 360p');
  await page.selectOption('select[name=transcode_hwaccel]', 'none');
  await shot('edit', { fullPage: true });
  await page.click('button[type=submit]');
  await until('back on the stream page', () => page.evaluate(() => location.hash === '#/streams/studio'), 10000);
  const edited = await api('GET', `streams/${CODE}`);
  if (edited.json.name !== 'Main studio' || !edited.json.has_stream_key || edited.json.push.length !== 2) {
    throw new Error('after edit: ' + JSON.stringify(edited.json));
  }
  const tc = edited.json.transcode;
  if (tc.enabled || tc.hwaccel !== 'none' || tc.profiles.map((r) => r.name).join() !== 'source,360p') {
    throw new Error('ladder after edit: ' + JSON.stringify(tc));
  }
  step('edited; key and push kept; ladder stored', { masked, keyNote });
  await stop(publisher);
}

/** The Inputs card's rows as the page shows them. */
function inputRows() {
  return page.evaluate(() => {
    const card = document.querySelector('.inputs-card');
    if (!card || card.hidden) return null;
    return [...card.querySelectorAll('.inputs tbody tr')].map((tr) => ({
      index: Number(tr.dataset.index),
      priority: tr.querySelector('[data-col=priority]').textContent,
      url: tr.querySelector('[data-col=source] .mono').textContent,
      kind: tr.querySelector('[data-col=kind]').textContent,
      state: tr.dataset.state,
      active: tr.dataset.active === 'true' && tr.getAttribute('aria-current') === 'true',
      badges: [...tr.querySelectorAll('[data-col=state] .badge')].map((b) => b.className.replace('badge badge-', '') + ':' + b.textContent),
      attempts: tr.querySelector('[data-col=attempts]').textContent,
      packet: tr.querySelector('[data-col=packet]').textContent,
      bitrate: tr.querySelector('[data-col=bitrate]').textContent,
      switchable: !tr.querySelector('button[data-switch]').disabled,
    }));
  });
}

/** The switch history as shown, newest first. */
function historyRows() {
  return page.evaluate(() => [...document.querySelectorAll('.inputs-card .history tbody tr')].map((tr) => ({
    from: tr.dataset.from, to: tr.dataset.to, reason: tr.dataset.reason,
    time: tr.children[0].textContent, text: tr.children[1].textContent,
  })));
}

async function inputsRun() {
  const CODE2 = 'feeds';
  const udp = args['inputs-udp'];
  const file = 'file://' + args.fixture;
  ffmpeg(['-re', '-stream_loop', '-1', '-i', args.fixture, '-c', 'copy', '-f', 'mpegts', `${udp}?pkt_size=1316`], 'udp sender');

  await page.goto(base + '/#/new');
  await page.waitForSelector('input[name=code]');
  // The API reference is one click away, served by the gateway itself.
  const docsHref = await page.getAttribute('a[data-nav=apidocs]', 'href');
  const docs = await fetch(new URL(docsHref, base + '/'));
  if (docsHref !== '/api/docs' || docs.status !== 200 || !(docs.headers.get('content-type') || '').startsWith('text/html')) {
    throw new Error(`API reference link ${docsHref}: ${docs.status}`);
  }
  step('nav links the API reference', { href: docsHref });

  // Create through the form: inputs with a field error first, then the failover settings.
  const failoverHidden = await page.evaluate(() => document.querySelector('details.failover').hidden);
  if (!failoverHidden) throw new Error('failover settings shown without inputs');
  await page.fill('input[name=code]', CODE2);
  await page.fill('input[name=name]', 'Feeds');
  await page.click('text=Add input');
  const first = page.locator('.input-row').nth(0);
  await first.locator('[data-sub=url] input').fill('ftp://example.com/feed.ts');
  await page.click('button[type=submit]');
  const urlError = await until('the input URL error beside the field', () => page.evaluate(() => {
    const row = document.querySelector('.input-row');
    const e = row.querySelector('[data-error-for="url"]');
    return !e.hidden && row.querySelector('[data-sub=url] input').getAttribute('aria-invalid') === 'true' ? e.textContent : null;
  }), 10000);
  if (!/scheme/.test(urlError)) throw new Error('input URL error: ' + urlError);
  step('field error beside inputs[0].url', { message: urlError });
  await first.locator('[data-sub=url] input').fill(udp);
  await page.click('text=Add input');
  const second = page.locator('.input-row').nth(1);
  // The RTSP transport is offered for rtsp:// sources only.
  await second.locator('[data-sub=url] input').fill('rtsp://127.0.0.1:9/cam');
  const rtspShown = await page.evaluate(() => [...document.querySelectorAll('.input-row .input-rtsp')].map((e) => !e.hidden));
  if (JSON.stringify(rtspShown) !== '[false,true]') throw new Error('RTSP transport shown: ' + JSON.stringify(rtspShown));
  await second.locator('[data-sub=url] input').fill(file);
  await second.locator('[data-sub=priority] input').fill('5');
  await second.locator('[data-sub=comment] input').fill('looped file');
  await page.click('details.failover summary');
  await page.fill('input[name=packet_timeout_s]', '2');
  await page.fill('input[name=failback_after_s]', '3');
  await page.fill('input[name=failover-retry-initial]', '0.5');
  await page.fill('input[name=failover-retry-max]', '2');
  await page.click('button[type=submit]');
  await until('the new stream page', () => page.evaluate((c) => location.hash === '#/streams/' + c, CODE2), 10000);
  const created = (await api('GET', `streams/${CODE2}`)).json;
  const cfg = created.inputs.map((i) => [i.url, i.kind, i.priority, i.enabled, i.comment]);
  if (JSON.stringify(cfg) !== JSON.stringify([[udp, 'udp', 0, true, ''], [file, 'file', 5, true, 'looped file']])
    || created.failover.packet_timeout_s !== 2 || created.failover.failback_after_s !== 3
    || created.failover.retry.initial_s !== 0.5 || created.failover.retry.max_s !== 2) {
    throw new Error('stored inputs: ' + JSON.stringify({ inputs: created.inputs, failover: created.failover }));
  }
  step('created with two inputs through the form', { rtspShown });

  // Both up; the stream settles on the primary (the file may deliver first, then it fails back).
  const listed = await until('both inputs up and the primary active', async () => {
    const rows = await inputRows();
    return rows && rows.length === 2 && rows[0].state === 'up' && rows[0].active
      && rows[1].state === 'up' && !rows[1].active ? rows : null;
  }, 40000);
  const [p, b] = listed;
  if (p.url !== udp || p.kind !== 'udp' || p.priority !== '0' || b.url !== file || b.kind !== 'file' || b.priority !== '5') {
    throw new Error('rows: ' + JSON.stringify(listed));
  }
  if (!p.badges.includes('up:up') || !p.badges.includes('current:active') || b.badges.join() !== 'up:up') {
    throw new Error('badges: ' + JSON.stringify(listed.map((r) => r.badges)));
  }
  if (p.switchable || !b.switchable) throw new Error('switch buttons: ' + JSON.stringify(listed));
  if (!/ago$/.test(p.packet) || p.bitrate === '—') throw new Error('live figures: ' + JSON.stringify(p));
  step('inputs card lists both, primary active', { rows: listed });

  // Switch to the backup: the page follows the event stream; a history row says why.
  const before = (await historyRows()).length;
  await page.click('.inputs tr[data-index="1"] button[data-switch]');
  const switched = await until('the backup active and pinned, with a manual switch on top', async () => {
    const rows = await inputRows();
    const hist = await historyRows();
    return rows[1].active && !rows[0].active && rows[1].badges.includes('pinned:pinned')
      && hist.length > before && hist[0].reason === 'manual' && hist[0].from === '0' && hist[0].to === '1'
      ? { rows, top: hist[0] } : null;
  }, 15000);
  if (switched.top.text !== 'priority 0 (udp) → priority 5 (file)') throw new Error('history row: ' + JSON.stringify(switched.top));
  const pinNote = await page.textContent('.inputs-status');
  if (!pinNote.includes('Pinned to priority 5')) throw new Error('pin note: ' + pinNote);
  const afterSwitch = (await api('GET', `streams/${CODE2}`)).json.runtime.inputs;
  if (afterSwitch.active !== 1 || afterSwitch.pinned !== 1) throw new Error('API after the switch: ' + JSON.stringify(afterSwitch));
  step('switched to the backup from the page', { top: switched.top, pinNote });
  if (shots) {
    // The preview shows a picture in the screenshot.
    await until('a preview frame', () => page.evaluate(() => {
      const v = document.getElementById('preview');
      return v && v.readyState >= 2 && v.currentTime > 0;
    }), 30000);
    // Clicking scrolled the page: the sticky top bar belongs at the top of the picture.
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.waitForTimeout(1500);
    await shot('stream-inputs', { fullPage: true });
  }

  // The list says the stream runs on its backup.
  await page.click('a[data-nav="streams"]');
  const via = await until('the backup named in the list', () => page.evaluate((c) => {
    const el = document.querySelector(`tr[data-code="${c}"] td.col-state .via`);
    return el && el.textContent.includes('via file (backup)') && el.classList.contains('warn') ? el.textContent.trim() : null;
  }, CODE2), 10000);
  step('list shows the backup in use', { via });
  await page.goBack();
  await until('the inputs card again', async () => (await inputRows()) !== null, 10000);

  // The primary's source stops: it goes down (red), its button is disabled, and a switch to
  // it anyway (as from a page a second behind) is refused with the server's reason.
  for (const c of [...children]) if (c.what === 'udp sender') await stop(c);
  const down = await until('the primary down', async () => {
    const rows = await inputRows();
    return rows && rows[0].state !== 'up' && !rows[0].switchable ? rows[0] : null;
  }, 15000);
  if (!down.badges.some((x) => /^(down|retrying|connecting):/.test(x))) throw new Error('down badge: ' + JSON.stringify(down));
  await page.evaluate(() => {
    const button = document.querySelector('.inputs tr[data-index="0"] button[data-switch]');
    button.disabled = false;
    button.click();
  });
  const refused = await until('the refusal beside the inputs', () => page.evaluate(() => {
    const e = document.querySelector('.inputs-card .action-error');
    return e && !e.hidden ? e.textContent : null;
  }), 10000);
  if (!/not delivering media/.test(refused)) throw new Error('refusal: ' + refused);
  step('a switch to a down input is refused with the reason', { state: down.state, badges: down.badges, refused });

  // Restart (confirmed in a dialog): every input starts again, the backup takes over unpinned.
  await page.click('button[data-action=restart-inputs]');
  const restarted = await until('a restart in the history and the backup active again', async () => {
    const rows = await inputRows();
    const hist = await historyRows();
    const r = hist.findIndex((x) => x.reason === 'restart');
    return r > 0 && hist[0].to === '1' && rows[1].active && rows[1].state === 'up'
      && !rows[1].badges.includes('pinned:pinned') ? hist.slice(0, r + 1) : null;
  }, 20000);
  step('restart inputs from the page', { history: restarted });

  // Edit: the inputs and failover settings come back in the form and are kept as they were.
  await page.click('a[data-action=edit]');
  await page.waitForSelector('.input-row');
  const form = await page.evaluate(() => ({
    rows: [...document.querySelectorAll('.input-row')].map((r) => [
      r.querySelector('[data-sub=url] input').value, r.querySelector('[data-sub=priority] input').value,
      r.querySelector('[data-sub=comment] input').value]),
    packet: document.querySelector('input[name=packet_timeout_s]').value,
    onDemand: document.querySelector('input[name=on_demand]').checked,
  }));
  if (JSON.stringify(form.rows) !== JSON.stringify([[udp, '0', ''], [file, '5', 'looped file']]) || form.packet !== '2' || form.onDemand) {
    throw new Error('edit form: ' + JSON.stringify(form));
  }
  await page.fill('input[name=name]', 'Feeds with failover');
  await page.click('button[type=submit]');
  await until('back on the stream page', () => page.evaluate((c) => location.hash === '#/streams/' + c, CODE2), 10000);
  const edited = (await api('GET', `streams/${CODE2}`)).json;
  if (edited.name !== 'Feeds with failover' || JSON.stringify(edited.inputs) !== JSON.stringify(created.inputs)
    || JSON.stringify(edited.failover) !== JSON.stringify(created.failover)) {
    throw new Error('after edit: ' + JSON.stringify(edited));
  }
  step('edited; inputs and failover kept', { form });
}

const profile = mkdtempSync(join(tmpdir(), 'ferrocast-dashboard-'));
let browser;
const consoleErrors = [];
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
  page = browser.pages()[0] || await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text().slice(0, 300)); });
  page.on('pageerror', (e) => consoleErrors.push('page error: ' + String(e).slice(0, 300)));
  page.on('dialog', (d) => d.accept());
  const external = [];
  page.on('request', (r) => { if (!r.url().startsWith(base) && !r.url().startsWith('blob:') && !r.url().startsWith('data:')) external.push(r.url()); });
  if (args.token) await tokenRun();
  else if (args['inputs-udp']) await inputsRun();
  else await mainRun();
  if (external.length) throw new Error('requests outside the gateway: ' + external.slice(0, 3).join(', '));
  // Expected noise: players log failed fetches while a stream is idle (404 playlists).
  const unexpected = consoleErrors.filter((e) => !/404|Failed to load resource|401/.test(e));
  result.consoleErrors = consoleErrors.slice(0, 8);
  if (unexpected.length) throw new Error('console errors: ' + unexpected.slice(0, 3).join(' | '));
  result.ok = true;
} catch (e) {
  result.error = String(e && e.stack || e);
  result.consoleErrors = consoleErrors.slice(0, 8);
  result.children = [...children].map((c) => ({ what: c.what, log: c.log }));
  if (page && shots) await page.screenshot({ path: join(shots, 'failure.png') }).catch(() => {});
} finally {
  for (const c of [...children]) await stop(c);
  if (browser) await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
result.elapsed_ms = Date.now() - started;
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
