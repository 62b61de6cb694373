// DOM building without HTML parsing: every piece of API text goes in as a text node or an
// attribute value, so a stream name like `<img onerror=...>` is shown, never run.

/**
 * Creates an element. `props`: `class`, `text`, `on` ({event: handler}), `dataset`, `style`
 * (object), `hidden`/`disabled`/`checked`/`value` as properties, anything else as an
 * attribute. Children: nodes, strings (as text), arrays, and null/false (skipped).
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v);
    else if (['hidden', 'disabled', 'checked', 'value', 'readOnly', 'open'].includes(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Sets text only when it changed, so live updates do not disturb selections. */
export function setText(el, text) {
  const s = String(text);
  if (el.textContent !== s) el.textContent = s;
}

/** `#/streams/<code>`, with the code URL-encoded. */
export function streamHref(code, tail) {
  return '#/streams/' + encodeURIComponent(code) + (tail ? '/' + tail : '');
}

export function fmtKbps(kbps) {
  if (!kbps) return '0';
  if (kbps >= 10000) return (kbps / 1000).toFixed(1) + ' Mb/s';
  if (kbps >= 1000) return (kbps / 1000).toFixed(2) + ' Mb/s';
  return Math.round(kbps) + ' kb/s';
}

export function fmtBytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n || 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return (i === 0 ? v : v.toFixed(v >= 100 ? 0 : 1)) + ' ' + units[i];
}

export function fmtDuration(secs) {
  const s = Math.max(0, Math.floor(secs || 0));
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  const p = (n) => String(n).padStart(2, '0');
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${p(mm)}m`;
  if (mm) return `${mm}m ${p(ss)}s`;
  return `${ss}s`;
}

/** "12 s ago" / "in 3 s" for an RFC 3339 time. */
export function fmtRelative(iso, now = Date.now()) {
  if (!iso) return '';
  const delta = (Date.parse(iso) - now) / 1000;
  const text = fmtDuration(Math.abs(delta));
  return delta >= 0 ? 'in ' + text : text + ' ago';
}

export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
}

/** "h264 High 4.1 · 1280×720 · 30 fps" for a video track. */
export function fmtVideo(t) {
  if (!t) return '';
  const parts = [t.codec + (t.profile ? ' ' + t.profile : '') + (t.level ? ' ' + t.level : '')];
  if (t.width && t.height) parts.push(`${t.width}×${t.height}`);
  if (t.fps) parts.push(`${Math.round(t.fps * 100) / 100} fps`);
  return parts.join(' · ');
}

/** "aac LC · 48 kHz · 2 ch" for an audio track. */
export function fmtAudio(t) {
  if (!t) return '';
  const parts = [t.codec + (t.profile ? ' ' + t.profile : '')];
  if (t.sample_rate) parts.push(`${t.sample_rate / 1000} kHz`);
  if (t.channels) parts.push(`${t.channels} ch`);
  return parts.join(' · ');
}

/** A state badge (`live`, `idle`, `active`, `failed`, ...). */
export function badge(state, label) {
  return h('span', { class: 'badge badge-' + state, text: label || state });
}

/** A button that copies `text()` to the clipboard and says so. */
export function copyButton(text, label = 'Copy') {
  const b = h('button', { type: 'button', class: 'button small', text: label });
  b.addEventListener('click', async () => {
    const value = typeof text === 'function' ? text() : text;
    try {
      await navigator.clipboard.writeText(value);
    } catch {
      // Plain http on a non-local address has no clipboard API; fall back to a selection.
      const area = h('textarea', { value, readOnly: true, style: { position: 'fixed', opacity: '0' } });
      document.body.append(area);
      area.select();
      document.execCommand('copy');
      area.remove();
    }
    b.textContent = 'Copied';
    setTimeout(() => { b.textContent = label; }, 1500);
  });
  return b;
}
