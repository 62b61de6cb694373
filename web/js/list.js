// The streams page: every configured or live stream, updated in place from the event stream.

import { follow } from './api.js';
import {
  h, fill, setText, streamHref, fmtKbps, fmtDuration, fmtVideo, fmtAudio, badge,
} from './dom.js';

const COLUMNS = [
  ['stream', 'Stream'],
  ['state', 'State'],
  ['uptime', 'Uptime'],
  ['in', 'In'],
  ['out', 'Out'],
  ['video', 'Video'],
  ['audio', 'Audio'],
  ['readers', 'Readers'],
  ['dropped', 'Dropped'],
  ['pushes', 'Pushes'],
];

export function mountList(view, _params, ctx) {
  const summary = h('p', { class: 'subtitle', text: 'Waiting for the gateway…' });
  const tbody = h('tbody');
  const empty = h('div', { class: 'empty', hidden: true },
    h('h2', { text: 'No streams yet' }),
    h('p', { text: 'Create one, or publish to any code: streams that go live appear here.' }),
    h('a', { class: 'button primary', href: '#/new', text: 'New stream' }));
  const table = h('table', { class: 'table streams' },
    h('thead', {}, h('tr', {}, COLUMNS.map(([k, label]) => h('th', { class: 'col-' + k, scope: 'col', text: label })))),
    tbody);
  fill(view,
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', { text: 'Streams' }), summary),
      h('a', { class: 'button primary', href: '#/new', text: 'New stream' })),
    h('div', { class: 'card flush' }, h('div', { class: 'table-wrap' }, table), empty));

  const rows = new Map();
  const stop = follow('', (snap) => {
    const streams = snap.streams;
    const live = streams.filter((s) => s.runtime.status === 'live').length;
    setText(summary, `${streams.length} stream${streams.length === 1 ? '' : 's'}, ${live} live`);
    empty.hidden = streams.length > 0;
    table.hidden = streams.length === 0;
    const seen = new Set();
    streams.forEach((s, i) => {
      seen.add(s.code);
      let row = rows.get(s.code);
      if (!row) {
        row = makeRow(s.code);
        rows.set(s.code, row);
      }
      // Keep the server's order (by code) without rebuilding rows.
      if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
      update(row, s);
    });
    for (const [code, row] of rows) {
      if (!seen.has(code)) {
        row.tr.remove();
        rows.delete(code);
      }
    }
  }, ctx.feedState);
  return stop;
}

function makeRow(code) {
  const cells = {};
  const tr = h('tr', { dataset: { code } });
  for (const [k, label] of COLUMNS) {
    cells[k] = h('td', { class: 'col-' + k, dataset: { label } });
    tr.append(cells[k]);
  }
  cells.name = h('a', { class: 'stream-name', href: streamHref(code) });
  cells.code = h('span', { class: 'code mono', text: code });
  cells.stream.append(cells.name, cells.code);
  tr.addEventListener('click', (ev) => {
    // The whole row opens the stream, except clicks on its own links and buttons.
    if (!ev.target.closest('a, button')) location.hash = streamHref(code);
  });
  return { tr, cells, key: {} };
}

/** Rebuilds a cell only when what it shows changed. */
function put(row, name, key, build) {
  const k = JSON.stringify(key);
  if (row.key[name] === k) return;
  row.key[name] = k;
  fill(row.cells[name], build());
}

/** For a stream with pulled inputs: which one readers see, and whether it is a backup. */
function inputSummary(s) {
  const ri = s.runtime.inputs;
  if (!ri) return null;
  const up = ri.inputs.filter((i) => i.state === 'up').length;
  const counts = `${up} of ${ri.inputs.length} inputs up`;
  const act = ri.inputs.find((i) => i.index === ri.active);
  if (!act) return { text: counts, backup: false, title: 'No input delivers media' };
  const best = Math.min(...ri.inputs.filter((i) => i.enabled).map((i) => i.priority));
  const backup = act.priority > best;
  const pinned = ri.pinned === act.index;
  return {
    text: `via ${act.kind}${backup ? ' (backup)' : ''}`,
    backup,
    title: `Input ${act.index}, priority ${act.priority}${pinned ? ', pinned by a switch' : ''}; ${counts}`,
  };
}

function update(row, s) {
  const rt = s.runtime;
  const c = row.cells;
  setText(c.name, s.name || s.code);
  c.code.hidden = !s.name;
  const state = s.disabled ? 'disabled' : rt.status;
  row.tr.dataset.state = state;
  const via = inputSummary(s);
  // One element: on narrow screens the cell is a flex row of label and value.
  put(row, 'state', [state, s.persistent, via], () => h('span', {}, badge(state),
    s.persistent ? null : h('span', { class: 'hint', title: 'Created by publishing; not stored', text: ' auto' }),
    via ? h('span', { class: 'hint via' + (via.backup ? ' warn' : ''), title: via.title, text: ' ' + via.text }) : null));
  setText(c.uptime, rt.publisher ? fmtDuration(rt.publisher.uptime_s) : '—');
  setText(c.in, rt.status === 'live' ? fmtKbps(rt.bitrate_in_kbps) : '—');
  setText(c.out, rt.status === 'live' ? fmtKbps(rt.bitrate_out_kbps) : '—');
  const video = rt.tracks.find((t) => t.kind === 'video');
  const audio = rt.tracks.find((t) => t.kind === 'audio');
  setText(c.video, video ? fmtVideo(video) : '—');
  setText(c.audio, audio ? fmtAudio(audio) : '—');
  put(row, 'readers', rt.readers, () => {
    const entries = Object.entries(rt.readers);
    if (!entries.length) return '0';
    return entries.map(([p, n]) => h('span', { class: 'chip', text: `${p} ${n}` }));
  });
  setText(c.dropped, String(rt.frames_dropped));
  c.dropped.classList.toggle('warn', rt.frames_dropped > 0);
  put(row, 'pushes', rt.pushes.map((p) => p.status).concat(s.push.length), () => {
    if (!s.push.length) return '—';
    if (!rt.pushes.length) return h('span', { class: 'muted', text: `${s.push.length} configured` });
    return rt.pushes.map((p) => badge(p.status));
  });
}
