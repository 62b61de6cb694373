// Opens the API reference (/api/docs, Swagger UI served by the gateway) in headless Chromium
// and uses it as an operator would: the document loads and renders every tag, nothing is
// fetched from outside the gateway, the content security policy refuses nothing, and
// "Try it out" on GET /api/v1/streams answers 200 with the token the dashboard keeps for the
// tab (sessionStorage), sent as a bearer header.
//
//   node tests/browser/apidocs.mjs --base http://127.0.0.1:8080 [--token TOKEN]
//
// Prints one JSON line with every step; exits 0 only when all passed. Chromium is Debian's
// (/usr/bin/chromium).
import { chromium } from 'playwright-core';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.base) {
  console.error('usage: apidocs.mjs --base URL [--token TOKEN]');
  process.exit(2);
}
const base = args.base.replace(/\/$/, '');
const started = Date.now();
const result = { ok: false, steps: [] };
const step = (name, extra) => result.steps.push(Object.assign({ step: name, at_ms: Date.now() - started }, extra || {}));

const profile = mkdtempSync(join(tmpdir(), 'ferrocast-apidocs-'));
let browser;
const consoleErrors = [];
const external = [];
try {
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = browser.pages()[0] || await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text().slice(0, 300)); });
  page.on('pageerror', (e) => consoleErrors.push('page error: ' + String(e).slice(0, 300)));
  page.on('request', (r) => {
    const url = r.url();
    if (!url.startsWith(base) && !url.startsWith('data:') && !url.startsWith('blob:')) external.push(url);
  });
  // What the dashboard leaves in the tab once the token was entered (web/js/api.js).
  if (args.token) {
    await page.addInitScript((t) => sessionStorage.setItem('ferrocast.api-token', t), args.token);
  }
  // Content security policy refusals, as the page sees them.
  await page.addInitScript(() => {
    window.__cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });

  const resp = await page.goto(base + '/api/docs', { waitUntil: 'load' });
  if (resp.status() !== 200) throw new Error('GET /api/docs: ' + resp.status());
  step('page loaded', { csp: resp.headers()['content-security-policy'] || null });

  await page.waitForSelector('.opblock', { timeout: 20000 });
  const info = await page.evaluate(() => ({
    title: (document.querySelector('.info .title') || {}).textContent || '',
    operations: document.querySelectorAll('.opblock').length,
    tags: [...document.querySelectorAll('.opblock-tag')].map((t) => t.getAttribute('data-tag')),
  }));
  if (!info.title.includes('ferrocast')) throw new Error('title: ' + info.title);
  for (const tag of ['streams', 'templates', 'sessions', 'server']) {
    if (!info.tags.includes(tag)) throw new Error(`tag ${tag} missing: ${info.tags}`);
  }
  if (info.operations < 20) throw new Error('only ' + info.operations + ' operations');
  step('document rendered', info);

  // Try it out: GET /api/v1/streams.
  const op = page.locator('#operations-streams-list_streams');
  await op.locator('.opblock-summary').click();
  await op.locator('button.try-out__btn').click();
  await op.locator('button.execute').click();
  const status = op.locator('.live-responses-table tr.response .response-col_status').first();
  await status.waitFor({ timeout: 15000 });
  const code = (await status.textContent()).trim();
  if (code !== '200') throw new Error('try it out answered ' + code);
  const body = await op.locator('.live-responses-table tr.response .microlight').first().textContent();
  if (!body.includes('"total"')) throw new Error('try it out body: ' + body.slice(0, 200));
  step('try it out', { status: code });

  const csp = await page.evaluate(() => window.__cspViolations);
  if (csp.length) throw new Error('content security policy refused: ' + csp.join(' | '));
  if (external.length) throw new Error('requests outside the gateway: ' + external.slice(0, 3).join(', '));
  const unexpected = consoleErrors.filter((e) => !/sourcemap|\.map\b/i.test(e));
  if (unexpected.length) throw new Error('console errors: ' + unexpected.slice(0, 3).join(' | '));
  result.ok = true;
} catch (e) {
  result.error = String((e && e.stack) || e);
} finally {
  result.consoleErrors = consoleErrors.slice(0, 8);
  result.external = external.slice(0, 8);
  result.elapsed_ms = Date.now() - started;
  if (browser) await browser.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
