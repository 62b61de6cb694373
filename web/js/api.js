// The public REST API (/api/v1) as the dashboard uses it: JSON calls, the API token, and the
// server-sent event stream.
//
// EventSource cannot send an Authorization header, and a token in a URL ends up in logs and
// history, so the event stream is read with fetch() and a stream reader instead.

const TOKEN_KEY = 'ferrocast.api-token';
const BASE = '/api/v1/';

/**
 * An API failure: HTTP status, the API's error code (`NOT_FOUND`, `INVALID_BODY`, ...: the
 * server's one uppercase set; `NETWORK` and `HTTP_<status>` when it gave none) and message, and
 * the field at fault.
 */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  location.reload();
}

// One token form at a time: every request that got a 401 waits on the same answer.
let asking = null;

/** Shows the token form (once for all waiting callers) and resolves when a token is entered. */
export function askToken(refused) {
  if (asking) return asking;
  const dialog = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  const error = document.getElementById('token-error');
  error.hidden = !refused;
  error.textContent = refused ? 'The gateway refused this token.' : '';
  input.value = '';
  asking = new Promise((resolve) => {
    const submit = (ev) => {
      ev.preventDefault();
      const value = input.value.trim();
      if (!value) {
        error.hidden = false;
        error.textContent = 'Enter the token.';
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, value);
      form.removeEventListener('submit', submit);
      dialog.removeEventListener('cancel', keepOpen);
      dialog.close();
      asking = null;
      document.dispatchEvent(new CustomEvent('ferrocast:token'));
      resolve();
    };
    // Without a token nothing works; Escape would only leave an empty page.
    const keepOpen = (ev) => ev.preventDefault();
    form.addEventListener('submit', submit);
    dialog.addEventListener('cancel', keepOpen);
  });
  dialog.showModal();
  input.focus();
  return asking;
}

function headers(extra) {
  const h = Object.assign({}, extra);
  const t = token();
  if (t) h.Authorization = 'Bearer ' + t;
  return h;
}

/**
 * Calls `METHOD /api/v1/path` with an optional JSON body; resolves to the parsed JSON (null for
 * 204) or rejects with an ApiError. A 401 asks for the token and retries.
 */
export async function api(method, path, body) {
  for (;;) {
    const sent = token();
    let resp;
    try {
      resp = await fetch(BASE + path, {
        method,
        headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }),
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (e) {
      throw new ApiError(0, 'NETWORK', 'Cannot reach the gateway (' + e.message + ').');
    }
    if (resp.status === 401) {
      await askToken(Boolean(sent));
      continue;
    }
    if (resp.status === 204) return null;
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (!resp.ok) {
      const e = (data && data.error) || {};
      throw new ApiError(resp.status, e.code || 'HTTP_' + resp.status,
        e.message || text || resp.statusText, e.field);
    }
    return data;
  }
}

function parseEvent(raw) {
  let event = 'message';
  const data = [];
  for (const line of raw.split('\n')) {
    if (line.startsWith(':')) continue;
    const i = line.indexOf(':');
    const name = i < 0 ? line : line.slice(0, i);
    let value = i < 0 ? '' : line.slice(i + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (name === 'event') event = value;
    else if (name === 'data') data.push(value);
  }
  return { event, data: data.join('\n') };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Follows `GET /api/v1/events` (with `query`, e.g. '?stream=cam1'), calling onSnapshot with
 * each snapshot and onState with 'connecting', 'live', 'reconnecting' or 'error' (and the
 * error). Reconnects with backoff; a silent connection (no event for 5 s, while the server
 * sends one a second) is dropped and reopened. Returns a function that stops it.
 */
export function follow(query, onSnapshot, onState) {
  let stopped = false;
  let controller = null;
  let backoff = 1000;
  const run = async () => {
    while (!stopped) {
      controller = new AbortController();
      const ctl = controller;
      let watchdog = null;
      const arm = () => {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => ctl.abort(), 5000);
      };
      try {
        onState('connecting');
        arm();
        const sent = token();
        const resp = await fetch(BASE + 'events' + (query || ''), {
          headers: headers({ Accept: 'text/event-stream' }),
          signal: ctl.signal,
          cache: 'no-store',
        });
        if (resp.status === 401) {
          clearTimeout(watchdog);
          onState('auth');
          await askToken(Boolean(sent));
          continue;
        }
        if (!resp.ok) {
          let e = {};
          try {
            e = (await resp.json()).error || {};
          } catch {
            e = {};
          }
          throw new ApiError(resp.status, e.code || 'HTTP_' + resp.status,
            e.message || resp.statusText);
        }
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          arm();
          buf += value.replace(/\r\n?/g, '\n');
          let end;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const ev = parseEvent(buf.slice(0, end));
            buf = buf.slice(end + 2);
            if (ev.event === 'snapshot') {
              backoff = 1000;
              onState('live');
              onSnapshot(JSON.parse(ev.data));
            }
          }
        }
      } catch (e) {
        if (stopped) return;
        if (e.name !== 'AbortError') onState('error', e);
      } finally {
        clearTimeout(watchdog);
      }
      if (stopped) return;
      onState('reconnecting');
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 15000);
    }
  };
  run();
  return () => {
    stopped = true;
    if (controller) controller.abort();
  };
}

// The server description changes only with a restart; one request per page load.
let serverInfo = null;

/** `GET /api/v1/server`, cached. */
export function server() {
  if (!serverInfo) {
    serverInfo = api('GET', 'server').catch((e) => {
      serverInfo = null;
      throw e;
    });
  }
  return serverInfo;
}
