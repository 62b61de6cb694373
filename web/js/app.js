// The dashboard shell: hash routes to pages, the top bar (live-update state, sign out,
// version) and the error banner. Each page is `mount(view, params, ctx)` returning a cleanup.

import { server, signOut, token } from './api.js';
import { mountList } from './list.js';
import { mountStream } from './stream.js';
import { mountForm } from './form.js';
import { h, fill } from './dom.js';

const view = document.getElementById('view');
const banner = document.getElementById('banner');
const feed = document.getElementById('feed-state');
let cleanup = null;

const FEED_TEXT = {
  idle: '',
  connecting: 'Connecting…',
  live: 'Live updates',
  reconnecting: 'Reconnecting…',
  auth: 'Waiting for the token',
  error: 'Gateway unreachable',
};

const ctx = {
  /** Shows an error over the page until `clearError` or the next route. */
  showError(err) {
    const msg = err && err.message ? err.message : String(err);
    fill(banner, h('span', { text: msg }),
      h('button', { type: 'button', class: 'link-button', text: 'Dismiss', on: { click: () => ctx.clearError() } }));
    banner.hidden = false;
  },
  clearError() {
    banner.hidden = true;
  },
  /** The state of the page's event stream, shown in the top bar. */
  feedState(state, err) {
    feed.dataset.state = state;
    feed.textContent = FEED_TEXT[state] ?? state;
    if (state === 'error' && err) ctx.showError(err);
    if (state === 'live') ctx.clearError();
  },
};

function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const parts = hash.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0) return { page: 'streams', mount: mountList, params: {} };
  if (parts[0] === 'new' && parts.length === 1) return { page: 'new', mount: mountForm, params: {} };
  if (parts[0] === 'streams' && parts.length === 2) {
    return { page: 'stream', mount: mountStream, params: { code: parts[1] } };
  }
  if (parts[0] === 'streams' && parts.length === 3 && parts[2] === 'edit') {
    return { page: 'edit', mount: mountForm, params: { code: parts[1] } };
  }
  return null;
}

function render() {
  if (cleanup) cleanup();
  cleanup = null;
  ctx.clearError();
  ctx.feedState('idle');
  const r = route();
  for (const a of document.querySelectorAll('[data-nav]')) {
    a.classList.toggle('active', Boolean(r) && a.dataset.nav === (r.page === 'stream' || r.page === 'edit' ? 'streams' : r.page));
  }
  if (!r) {
    fill(view, h('div', { class: 'empty' }, h('h1', { text: 'Page not found' }),
      h('p', {}, h('a', { href: '#/', text: 'Back to the streams' }))));
    return;
  }
  document.body.dataset.page = r.page;
  view.replaceChildren();
  cleanup = r.mount(view, r.params, ctx) || null;
}

function showSignOut() {
  document.getElementById('sign-out').hidden = !token();
}

document.getElementById('sign-out').addEventListener('click', signOut);
document.addEventListener('ferrocast:token', showSignOut);
window.addEventListener('hashchange', render);
showSignOut();
render();
server().then((s) => {
  document.getElementById('version').textContent = 'ferrocast ' + s.version;
}).catch(() => {});
