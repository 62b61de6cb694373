// One stream: preview, live figures, pulled inputs with failover, bitrate graph, publish and
// playback URLs, pushes and sessions. The configuration and history come from
// GET /streams/{code}; everything live from the event stream filtered to this stream (which
// also carries its sessions).

import { api, follow, server, ApiError } from './api.js';
import {
  h, fill, setText, streamHref, fmtKbps, fmtBytes, fmtDuration, fmtRelative, fmtTime,
  fmtVideo, fmtAudio, badge, copyButton,
} from './dom.js';
import { BitrateChart } from './chart.js';
import { Preview } from './player.js';

export function mountStream(view, { code }, ctx) {
  const enc = encodeURIComponent(code);
  const title = h('h1', { text: code });
  const codeChip = h('span', { class: 'code mono', text: code });
  const stateBadge = h('span');
  const actions = h('div', { class: 'actions' },
    h('a', { class: 'button', href: 'golive.html?code=' + enc, text: 'Go live', dataset: { action: 'golive' } }),
    h('a', { class: 'button', href: streamHref(code, 'edit'), text: 'Edit', dataset: { action: 'edit' } }),
    h('button', { type: 'button', class: 'button danger', text: 'Delete', on: { click: remove } }));

  // Preview
  const video = h('video', { id: 'preview', muted: true, autoplay: true, playsinline: true, controls: true });
  video.muted = true;
  const overlay = h('div', { class: 'preview-overlay', text: 'Waiting for the gateway…' });
  const playerStatus = h('p', { class: 'player-status muted' });
  const kindButtons = {
    hls: h('button', { type: 'button', class: 'seg', text: 'HLS', dataset: { kind: 'hls' } }),
    dash: h('button', { type: 'button', class: 'seg', text: 'DASH', dataset: { kind: 'dash' } }),
  };
  let kind = sessionStorage.getItem('ferrocast.preview') || 'hls';
  for (const [k, b] of Object.entries(kindButtons)) {
    b.addEventListener('click', () => {
      kind = k;
      sessionStorage.setItem('ferrocast.preview', k);
      refreshPreview();
    });
  }
  const preview = new Preview(video, (text, isError) => {
    setText(playerStatus, text);
    playerStatus.classList.toggle('error', Boolean(isError));
  });

  // Live figures
  const stats = h('dl', { class: 'stats' });
  const statCells = {};
  for (const [k, label] of [
    ['state', 'State'], ['uptime', 'Uptime'], ['publisher', 'Publisher'], ['in', 'Bitrate in'],
    ['out', 'Bitrate out'], ['video', 'Video'], ['audio', 'Audio'], ['readers', 'Readers'],
    ['dropped', 'Dropped frames'], ['bytes', 'Received / sent'], ['ladder', 'Renditions'],
  ]) {
    statCells[k] = h('dd', { dataset: { stat: k } });
    stats.append(h('div', {}, h('dt', { text: label }), statCells[k]));
  }

  // Graph
  const canvas = h('canvas', { class: 'chart', 'aria-label': 'Bitrate over the last five minutes' });
  const chart = new BitrateChart(canvas);

  const urlBody = h('tbody');
  const pushBody = h('tbody');
  const pushEmpty = h('p', { class: 'muted', text: 'No push destinations. Add them in Edit.' });
  const sessionBody = h('tbody');
  const sessionNote = h('p', { class: 'muted' });

  // Inputs: shown only for a stream with configured inputs.
  const inputBody = h('tbody');
  const inputNote = h('p', { class: 'hint inputs-note' });
  const inputStatus = h('p', { class: 'hint inputs-status', hidden: true });
  const inputErrorText = h('span');
  const inputError = h('div', { class: 'form-error action-error', role: 'alert', hidden: true },
    inputErrorText,
    h('button', { type: 'button', class: 'link-button', text: 'Dismiss', on: { click: () => { inputError.hidden = true; } } }));
  const restartButton = h('button', {
    type: 'button', class: 'button small', text: 'Restart inputs', dataset: { action: 'restart-inputs' },
    title: 'Stop and start every input again', on: { click: restartInputs },
  });
  const historyBody = h('tbody');
  const historyWrap = h('div', { class: 'table-wrap history-wrap', tabindex: '0', role: 'region', 'aria-label': 'Switch history, newest first' },
    h('table', { class: 'table history' },
      h('thead', {}, h('tr', {}, ['Time', 'From → to', 'Reason'].map((t) => h('th', { scope: 'col', text: t })))),
      historyBody));
  const historyEmpty = h('p', { class: 'muted', text: 'No switches yet.' });
  const inputsCard = h('section', { class: 'card wide inputs-card', hidden: true, 'aria-labelledby': 'inputs-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'inputs-title', text: 'Inputs' }), restartButton),
    inputNote,
    inputStatus,
    h('div', { class: 'table-wrap' }, h('table', { class: 'table inputs' },
      h('thead', {}, h('tr', {}, ['Priority', 'Source', 'Kind', 'State', 'Attempts', 'Last packet', 'Bitrate', 'Last error', '']
        .map((t) => h('th', { scope: 'col', text: t })))),
      inputBody)),
    inputError,
    h('h3', { class: 'subhead', text: 'Switch history' }),
    historyWrap,
    historyEmpty);

  // Recordings: files on disk, start/stop, download and replay links.
  const recBody = h('tbody');
  const recNote = h('p', { class: 'muted' });
  const recButtons = {
    start: h('button', { type: 'button', class: 'button small', text: 'Start recording', dataset: { action: 'record-start' }, on: { click: () => setRecording('start') } }),
    stop: h('button', { type: 'button', class: 'button small', text: 'Stop recording', dataset: { action: 'record-stop' }, on: { click: () => setRecording('stop') } }),
  };
  const recCard = h('section', { class: 'card wide recordings-card', 'aria-labelledby': 'rec-title' },
    h('div', { class: 'card-head' }, h('h2', { id: 'rec-title', text: 'Recordings' }),
      h('div', { class: 'actions' }, recButtons.start, recButtons.stop)),
    h('div', { class: 'table-wrap' }, h('table', { class: 'table recordings' },
      h('thead', {}, h('tr', {}, ['Started', 'Length', 'Size', '', ''].map((t) => h('th', { scope: 'col', text: t })))),
      recBody)),
    recNote);

  const page = h('div', { class: 'stream-page', hidden: true },
    h('div', { class: 'page-head' },
      h('div', { class: 'title-line' }, title, codeChip, stateBadge),
      actions),
    h('div', { class: 'grid' },
      h('section', { class: 'card preview-card' },
        h('div', { class: 'card-head' }, h('h2', { text: 'Preview' }),
          h('div', { class: 'segmented', role: 'group', 'aria-label': 'Player' }, kindButtons.hls, kindButtons.dash)),
        h('div', { class: 'preview' }, video, overlay),
        playerStatus),
      h('section', { class: 'card' }, h('div', { class: 'card-head' }, h('h2', { text: 'Live' })), stats),
      inputsCard,
      h('section', { class: 'card wide' },
        h('div', { class: 'card-head' }, h('h2', { text: 'Bitrate, last 5 minutes' }),
          h('div', { class: 'legend' }, h('span', { class: 'key key-in', text: 'In' }), h('span', { class: 'key key-out', text: 'Out' }))),
        canvas),
      h('section', { class: 'card wide' },
        h('div', { class: 'card-head' }, h('h2', { text: 'Publish and playback URLs' })),
        h('div', { class: 'table-wrap' }, h('table', { class: 'table urls' },
          h('thead', {}, h('tr', {}, h('th', { text: 'Use' }), h('th', { text: 'Protocol' }), h('th', { text: 'URL' }), h('th'))),
          urlBody))),
      h('section', { class: 'card wide' },
        h('div', { class: 'card-head' }, h('h2', { text: 'Pushes' })),
        h('div', { class: 'table-wrap' }, h('table', { class: 'table pushes' },
          h('thead', {}, h('tr', {}, ['Destination', 'Status', 'Attempt', 'Connected', 'Next retry', 'Last error', 'Bitrate', ''].map((t) => h('th', { text: t })))),
          pushBody)),
        pushEmpty),
      recCard,
      h('section', { class: 'card wide' },
        h('div', { class: 'card-head' }, h('h2', { text: 'Sessions' })),
        h('div', { class: 'table-wrap' }, h('table', { class: 'table sessions' },
          h('thead', {}, h('tr', {}, ['Id', 'Role', 'Protocol', 'Remote address', 'Started', 'Bytes', ''].map((t) => h('th', { text: t })))),
          sessionBody)),
        sessionNote)));
  const missing = h('div', { class: 'empty', hidden: true },
    h('h1', { text: 'Stream not found' }),
    h('p', { text: 'No stream with this code is configured or live.' }),
    h('p', {}, h('a', { href: '#/', text: 'Back to the streams' }), ' · ',
      h('a', { href: '#/new', text: 'Create it' })));
  const loading = h('p', { class: 'muted', text: 'Loading…' });
  fill(view, loading, missing, page);

  let stream = null;
  let info = null;
  let stopFeed = null;
  let closed = false;

  function refreshPreview() {
    if (!stream) return;
    const live = stream.runtime.status === 'live';
    const on = { hls: stream.protocols.hls, dash: stream.protocols.dash };
    if (!on[kind] && on[kind === 'hls' ? 'dash' : 'hls']) kind = kind === 'hls' ? 'dash' : 'hls';
    for (const [k, b] of Object.entries(kindButtons)) {
      b.setAttribute('aria-pressed', String(k === kind));
      b.disabled = !on[k];
      b.title = on[k] ? '' : `${k.toUpperCase()} is off for this stream`;
    }
    let why = null;
    if (stream.disabled) why = 'This stream is disabled.';
    else if (!on.hls && !on.dash) why = 'HLS and DASH are both off for this stream.';
    else if (!live) why = 'Idle — the preview starts when the stream goes live.';
    overlay.hidden = !why;
    if (why) {
      setText(overlay, why);
      preview.stop();
      setText(playerStatus, '');
      return;
    }
    preview.play(kind, mediaBase() + `/live/${enc}/` + (kind === 'hls' ? 'index.m3u8' : 'index.mpd'));
  }

  function mediaBase() {
    const httpL = info && info.listeners.find((l) => l.protocol === 'http');
    if (info && !info.media_here && httpL) return `${location.protocol}//${location.hostname}:${httpL.port}`;
    return location.origin;
  }

  function renderUrls() {
    if (!stream || !info) return;
    const host = location.hostname;
    const L = (p) => info.listeners.find((l) => l.protocol === p);
    const key = stream.has_stream_key;
    const rows = [];
    // A stream whose inputs are all pulled refuses encoders: no Publish rows for it.
    const publishes = !stream.inputs.length
      || stream.inputs.some((i) => i.enabled && i.kind === 'publish');
    const add = (use, proto, url, on = true) => {
      if (use !== 'Publish' || publishes) rows.push({ use, proto, url, on });
    };
    for (const p of ['rtmp', 'rtmps']) {
      const l = L(p);
      if (!l) continue;
      const base = `${p}://${host}:${l.port}/${l.app}/${code}`;
      add('Publish', p.toUpperCase(), base + (key ? '?key=STREAM_KEY' : ''));
      add('Play', p.toUpperCase(), base, stream.protocols.rtmp);
    }
    const srt = L('srt');
    if (srt) {
      add('Publish', 'SRT', `srt://${host}:${srt.port}?streamid=publish:${srt.app}/${code}` + (key ? '?key=STREAM_KEY' : ''));
      add('Play', 'SRT', `srt://${host}:${srt.port}?streamid=${srt.app}/${code}`, stream.protocols.srt);
    }
    const rtsp = L('rtsp');
    if (rtsp) add('Play', 'RTSP', `rtsp://${host}:${rtsp.port}/${rtsp.app}/${code}`, stream.protocols.rtsp);
    const base = mediaBase() + `/live/${enc}/`;
    add('Play', 'HLS', base + 'index.m3u8', stream.protocols.hls);
    add('Play', 'DASH', base + 'index.mpd', stream.protocols.dash);
    add('Play', 'MPEG-TS', base + 'mpegts', stream.protocols.mpegts);
    // Each rung of a ladder is a stream of its own; index.m3u8 above lists them all.
    for (const r of (stream.runtime.transcode || {}).renditions || []) {
      const rbase = mediaBase() + `/live/${encodeURIComponent(r.code)}/`;
      add('Play', `HLS ${r.name}`, rbase + 'index.m3u8', stream.protocols.hls);
      const l = L('rtmp');
      if (l) add('Play', `RTMP ${r.name}`, `rtmp://${host}:${l.port}/${l.app}/${r.code}`, stream.protocols.rtmp);
    }
    const k = JSON.stringify(rows);
    if (urlBody.dataset.key === k) return;
    urlBody.dataset.key = k;
    fill(urlBody, rows.map((r) => h('tr', { class: r.on ? '' : 'off', dataset: { proto: r.proto.toLowerCase(), use: r.use.toLowerCase() } },
      h('td', { text: r.use }),
      h('td', {}, r.proto, r.on ? null : h('span', { class: 'hint', text: ' off for this stream' })),
      h('td', { class: 'url-cell' }, h('input', { class: 'mono url', value: r.url, readOnly: true, 'aria-label': `${r.use} ${r.proto} URL`, on: { focus: (e) => e.target.select() } })),
      h('td', { class: 'cell-actions' }, copyButton(r.url)))));
    if (key) {
      urlBody.append(h('tr', { class: 'note' }, h('td', { colspan: 4 },
        'Publishing needs the stream key in place of STREAM_KEY. It is write-only: if it is lost, set a new one in ',
        h('a', { href: streamHref(code, 'edit'), text: 'Edit' }), '.')));
    }
  }

  function renderStats() {
    const rt = stream.runtime;
    const live = rt.status === 'live';
    const state = stream.disabled ? 'disabled' : rt.status;
    fill(stateBadge, badge(state));
    page.dataset.state = state;
    setText(title, stream.name || code);
    codeChip.hidden = !stream.name;
    fill(statCells.state, badge(state));
    setText(statCells.uptime, rt.publisher ? fmtDuration(rt.publisher.uptime_s) : '—');
    setText(statCells.publisher, rt.publisher
      ? `${rt.publisher.protocol}${rt.publisher.remote_addr ? ' from ' + rt.publisher.remote_addr : ''}` : '—');
    setText(statCells.in, live ? fmtKbps(rt.bitrate_in_kbps) : '—');
    setText(statCells.out, live ? fmtKbps(rt.bitrate_out_kbps) : '—');
    const video = rt.tracks.find((t) => t.kind === 'video');
    const audio = rt.tracks.find((t) => t.kind === 'audio');
    setText(statCells.video, video ? fmtVideo(video) : '—');
    setText(statCells.audio, audio ? fmtAudio(audio) : '—');
    const readers = Object.entries(rt.readers);
    const rk = JSON.stringify(rt.readers);
    if (statCells.readers.dataset.key !== rk) {
      statCells.readers.dataset.key = rk;
      fill(statCells.readers, readers.length ? readers.map(([p, n]) => h('span', { class: 'chip', text: `${p} ${n}` })) : '0',
        h('span', { class: 'hint', text: ' (HLS and DASH are not counted)' }));
    }
    setText(statCells.dropped, String(rt.frames_dropped));
    // The ladder's ffmpeg: its state, speed and last error.
    const tc = rt.transcode;
    setText(statCells.ladder, !tc ? '—'
      : `${tc.state}${tc.encoder ? ', ' + tc.encoder : ''}`
        + (tc.state === 'running' ? `, ${tc.fps.toFixed(0)} fps at ${tc.speed.toFixed(2)}x` : '')
        + (tc.restarts ? `, ${tc.restarts} restart(s)` : '')
        + (tc.last_error && tc.state !== 'running' ? ` (${tc.last_error})` : ''));
    setText(statCells.bytes, `${fmtBytes(rt.bytes_in)} / ${fmtBytes(rt.bytes_out)}`);
  }

  function renderPushes() {
    const rt = stream.runtime;
    pushEmpty.hidden = stream.push.length > 0;
    const now = Date.now();
    // Rows are rebuilt each second (relative times move); keep expanded error lists open.
    const open = new Set([...pushBody.querySelectorAll('details[open]')].map((d) => d.closest('tr').dataset.index));
    fill(pushBody, stream.push.map((dest, i) => {
      const st = rt.pushes.find((p) => p.index === i);
      let status;
      if (!dest.enabled) status = badge('disabled');
      else if (st) status = badge(st.status);
      else status = badge('idle', rt.status === 'live' ? 'starting' : 'waits for live');
      const canRetry = st && (st.status === 'reconnecting' || st.status === 'failed');
      const err = st && st.last_errors[0];
      return h('tr', { dataset: { index: String(i), status: st ? st.status : (dest.enabled ? 'idle' : 'disabled') } },
        h('td', { class: 'dest' }, h('span', { class: 'mono', text: dest.url }),
          dest.comment ? h('div', { class: 'hint', text: dest.comment }) : null),
        h('td', {}, status),
        h('td', { text: st ? String(st.attempt) : '—' }),
        h('td', { text: st && st.connected_at ? fmtRelative(st.connected_at, now) : '—', title: st && st.connected_at ? fmtTime(st.connected_at) : '' }),
        h('td', { text: st && st.next_retry_at ? fmtRelative(st.next_retry_at, now) : '—' }),
        h('td', { class: 'errors' }, err
          ? h('details', { open: open.has(String(i)) }, h('summary', { text: `${err.message} (${fmtRelative(err.at, now)})` }),
            h('ul', {}, st.last_errors.map((e) => h('li', {}, h('time', { text: fmtTime(e.at) }), ' ', e.message))))
          : '—'),
        h('td', { text: st && st.status === 'active' ? fmtKbps(st.bitrate_kbps) : '—' }),
        h('td', { class: 'cell-actions' }, h('button', {
          type: 'button', class: 'button small', text: 'Retry now', disabled: !canRetry,
          title: canRetry ? 'Connect again now instead of waiting' : 'Only a reconnecting or failed push can be retried',
          on: { click: (e) => retry(i, e.target) },
        })));
    }));
  }

  // Input rows by index, updated in place (like the sessions): the Switch button must not be
  // replaced under the cursor, and an opened error list stays open.
  const inputRows = new Map();
  // The input a switch was asked for: from the click until the event stream shows it active
  // (`until` is Infinity while the request is in flight).
  let switching = null;
  let restarting = false;

  function inputRow(i) {
    let row = inputRows.get(i);
    if (row) return row;
    const td = (col, props, ...kids) => h('td', Object.assign({ dataset: { col } }, props || {}), ...kids);
    const c = {
      priority: td('priority', { class: 'num' }),
      url: h('span', { class: 'mono' }),
      comment: h('div', { class: 'hint' }),
      kind: td('kind'),
      badges: h('span', { class: 'badges' }),
      retry: h('span', { class: 'hint' }),
      attempts: td('attempts', { class: 'num' }),
      packet: td('packet', { class: 'num' }),
      bitrate: td('bitrate', { class: 'num' }),
      errSummary: h('summary'),
      errList: h('ul'),
      errNone: h('span', { text: '—' }),
      button: h('button', {
        type: 'button', class: 'button small', text: 'Switch to', dataset: { switch: String(i) },
        on: { click: () => switchTo(i) },
      }),
    };
    c.errDetails = h('details', {}, c.errSummary, c.errList);
    row = {
      c,
      key: {},
      tr: h('tr', { dataset: { index: String(i) } },
        c.priority,
        td('source', { class: 'dest' }, c.url, c.comment),
        c.kind,
        td('state', {}, c.badges, c.retry),
        c.attempts,
        c.packet,
        c.bitrate,
        td('error', { class: 'errors' }, c.errDetails, c.errNone),
        h('td', { class: 'cell-actions' }, c.button)),
    };
    inputRows.set(i, row);
    return row;
  }

  /** "priority 1 (file)" for input `idx` of the configuration; "none" for null. */
  function inputLabel(idx, none) {
    if (idx === null || idx === undefined) return none;
    const conf = stream.inputs[idx];
    return conf ? `priority ${conf.priority} (${conf.kind})` : `input ${idx}`;
  }

  const secs = (n) => `${Math.round(n * 10) / 10} s`;

  function renderInputs() {
    const conf = stream.inputs || [];
    inputsCard.hidden = conf.length === 0;
    const rt = stream.runtime.inputs || null;
    const now = Date.now();
    if (switching && ((rt && rt.active === switching.index) || now > switching.until)) switching = null;

    const f = stream.failover;
    setText(inputNote, `Lower priority is preferred. An input silent for ${secs(f.packet_timeout_s)} is down; `
      + `the stream returns to a preferred input after ${secs(f.failback_after_s)} of health; `
      + `reconnects wait ${secs(f.retry.initial_s)} to ${secs(f.retry.max_s)}.`
      + (f.on_demand ? ` On demand: pulled only while someone watches, stopped ${secs(f.close_after_s)} after the last reader.` : ''));
    let status = '';
    if (!rt) status = stream.disabled ? 'The stream is disabled: its inputs are not pulled.' : 'The inputs are not running.';
    else if (rt.pinned !== null && rt.pinned !== undefined) {
      status = `Pinned to ${inputLabel(rt.pinned)} by a switch: no failback until it goes down.`;
    } else if (rt.active === null || rt.active === undefined) {
      status = f.on_demand && rt.inputs.every((x) => x.state === 'stopped')
        ? 'On demand: the inputs are pulled when someone watches.'
        : 'No input delivers media.';
    }
    inputStatus.hidden = !status;
    setText(inputStatus, status);
    restartButton.disabled = !rt || restarting;
    setText(restartButton, restarting ? 'Restarting…' : 'Restart inputs');

    conf.forEach((cfg, i) => {
      const st = rt ? rt.inputs.find((x) => x.index === i) : null;
      const row = inputRow(i);
      const c = row.c;
      if (inputBody.children[i] !== row.tr) inputBody.insertBefore(row.tr, inputBody.children[i] || null);
      const state = st ? st.state : 'stopped';
      const active = Boolean(rt && rt.active === i);
      const pinned = Boolean(rt && rt.pinned === i);
      row.tr.dataset.state = state;
      row.tr.dataset.active = String(active);
      row.tr.dataset.priority = String(cfg.priority);
      row.tr.classList.toggle('current', active);
      row.tr.classList.toggle('off', !cfg.enabled);
      if (active) row.tr.setAttribute('aria-current', 'true');
      else row.tr.removeAttribute('aria-current');
      setText(c.priority, String(cfg.priority));
      setText(c.url, cfg.url);
      setText(c.comment, cfg.comment);
      c.comment.hidden = !cfg.comment;
      setText(c.kind, cfg.kind);
      const k = JSON.stringify([state, cfg.enabled, active, pinned, Boolean(rt)]);
      if (row.key.state !== k) {
        row.key.state = k;
        let main;
        if (!rt) main = badge('stopped', 'not running');
        else if (!cfg.enabled) main = badge('stopped', 'disabled');
        else main = badge(state);
        fill(c.badges, main,
          active ? h('span', { class: 'badge badge-current', text: 'active', title: 'Readers see this input now' }) : null,
          pinned ? h('span', { class: 'badge badge-pinned', text: 'pinned', title: 'Chosen by a switch; kept until it goes down' }) : null);
      }
      const retryAt = st && st.state === 'retrying' && st.next_retry_at;
      setText(c.retry, retryAt ? ` retry ${fmtRelative(retryAt, now)}` : '');
      setText(c.attempts, st ? String(st.attempts) : '—');
      setText(c.packet, st && st.last_packet_at ? fmtRelative(st.last_packet_at, now) : '—');
      c.packet.title = st && st.last_packet_at ? fmtTime(st.last_packet_at) : '';
      setText(c.bitrate, st && st.state === 'up' ? fmtKbps(st.bitrate_kbps) : '—');
      const errors = st ? st.last_errors : [];
      c.errDetails.hidden = errors.length === 0;
      c.errNone.hidden = errors.length > 0;
      if (errors.length) {
        setText(c.errSummary, `${errors[0].message} (${fmtRelative(errors[0].at, now)})`);
        const ek = JSON.stringify(errors);
        if (row.key.errors !== ek) {
          row.key.errors = ek;
          fill(c.errList, errors.map((e) => h('li', {}, h('time', { datetime: e.at, text: fmtTime(e.at) }), ' ', e.message)));
        }
      }

      // The switch API names an input by priority: a shared one is ambiguous.
      const shared = conf.some((o, j) => j !== i && o.enabled && o.priority === cfg.priority);
      let why = '';
      if (!rt) why = 'The inputs are not running';
      else if (active) why = 'Readers see this input now';
      else if (!cfg.enabled) why = 'This input is disabled';
      else if (shared) why = `Another input shares priority ${cfg.priority}: give each a priority of its own to switch by hand`;
      else if (state !== 'up') why = 'Only an input that delivers media can be chosen';
      c.button.disabled = Boolean(why) || switching !== null;
      c.button.title = why || 'Make this input active and keep it until it goes down';
      c.button.setAttribute('aria-label', `Switch to priority ${cfg.priority} (${cfg.url})`);
      setText(c.button, switching && switching.index === i ? 'Switching…' : 'Switch to');
    });
    for (const [i, row] of inputRows) {
      if (i >= conf.length) {
        row.tr.remove();
        inputRows.delete(i);
      }
    }

    // The API keeps the last 32 switches, oldest first; newest first here.
    const hist = rt ? rt.history.slice().reverse() : [];
    historyWrap.hidden = hist.length === 0;
    historyEmpty.hidden = hist.length > 0;
    const hk = JSON.stringify([hist, conf.map((x) => [x.priority, x.kind])]);
    if (historyBody.dataset.key !== hk) {
      historyBody.dataset.key = hk;
      fill(historyBody, hist.map((e) => h('tr', { dataset: { reason: e.reason, from: String(e.from ?? ''), to: String(e.to ?? '') } },
        h('td', { class: 'num', dataset: { at: e.at }, title: fmtTime(e.at) }),
        h('td', {}, inputLabel(e.from, '—'), ' → ', inputLabel(e.to, 'none')),
        h('td', { class: 'reason', text: e.reason }))));
    }
    for (const td of historyBody.querySelectorAll('td[data-at]')) setText(td, fmtRelative(td.dataset.at, now));
  }

  function inputFailure(what, e) {
    // A refusal (409: the input delivers no media, or the stream runs no inputs) stays beside
    // the inputs; the banner would be cleared by the next live update.
    if (e instanceof ApiError && e.status >= 400 && e.status < 500) {
      setText(inputErrorText, `${what}: ${e.message}`);
      inputError.hidden = false;
    } else {
      ctx.showError(e);
    }
  }

  async function switchTo(i) {
    const cfg = stream.inputs[i];
    if (!cfg || switching) return;
    switching = { index: i, until: Infinity };
    inputError.hidden = true;
    renderInputs();
    try {
      await api('POST', `streams/${enc}/switch`, { priority: cfg.priority });
      // The event stream shows the new active input within a second.
      if (switching) switching.until = Date.now() + 5000;
    } catch (e) {
      switching = null;
      inputFailure(`Switch to priority ${cfg.priority} refused`, e);
    }
    if (stream && !closed) renderInputs();
  }

  async function restartInputs() {
    if (!confirm(`Restart every input of ${code}? They reconnect; readers see the stream end and resume.`)) return;
    restarting = true;
    inputError.hidden = true;
    renderInputs();
    try {
      await api('POST', `streams/${enc}/restart`);
    } catch (e) {
      inputFailure('Restart refused', e);
    } finally {
      restarting = false;
      if (stream && !closed) renderInputs();
    }
  }

  // Rows by session id, updated in place: a Kick button must not be replaced under the cursor.
  const sessionRows = new Map();
  const noSessions = h('tr', {}, h('td', { colspan: 7, class: 'muted', text: 'No publisher or readers connected.' }));

  function renderSessions(sessions, total) {
    const now = Date.now();
    const seen = new Set();
    sessions.forEach((s, i) => {
      seen.add(s.id);
      let row = sessionRows.get(s.id);
      if (!row) {
        row = {
          started: h('td', { title: fmtTime(s.started_at) }),
          bytes: h('td'),
        };
        row.tr = h('tr', { dataset: { session: String(s.id), role: s.role } },
          h('td', { class: 'mono', text: String(s.id) }),
          h('td', {}, badge(s.role === 'publisher' ? 'live' : 'idle', s.role)),
          h('td', { text: s.protocol }),
          h('td', { class: 'mono', text: s.remote_addr || '—' }),
          row.started,
          row.bytes,
          h('td', { class: 'cell-actions' }, h('button', {
            type: 'button', class: 'button small danger', text: 'Kick', dataset: { kick: String(s.id) },
            on: { click: (e) => kick(s.id, e.target) },
          })));
        sessionRows.set(s.id, row);
      }
      setText(row.started, fmtRelative(s.started_at, now));
      setText(row.bytes, fmtBytes(s.bytes));
      if (sessionBody.children[i] !== row.tr) sessionBody.insertBefore(row.tr, sessionBody.children[i] || null);
    });
    for (const [id, row] of sessionRows) {
      if (!seen.has(id)) {
        row.tr.remove();
        sessionRows.delete(id);
      }
    }
    if (sessions.length === 0) sessionBody.append(noSessions);
    else noSessions.remove();
    sessionNote.hidden = total <= sessions.length;
    setText(sessionNote, `${total - sessions.length} more sessions not listed.`);
  }

  async function retry(index, button) {
    button.disabled = true;
    try {
      await api('POST', `streams/${enc}/push/${index}/retry`);
    } catch (e) {
      ctx.showError(e);
    }
  }

  async function kick(id, button) {
    button.disabled = true;
    button.textContent = 'Kicking…';
    try {
      await api('DELETE', `sessions/${id}`);
    } catch (e) {
      // Gone already: the next snapshot drops it anyway.
      if (!(e instanceof ApiError && e.status === 404)) {
        ctx.showError(e);
        button.disabled = false;
        button.textContent = 'Kick';
      }
    }
  }

  let recFetched = 0;
  async function renderRecordings(force) {
    // The stream view updates every second; the file list is read from disk every 5 s.
    if (!force && Date.now() - recFetched < 5000) return;
    recFetched = Date.now();
    let r;
    try {
      r = await api('GET', `streams/${enc}/recordings`);
    } catch (e) {
      return;
    }
    if (closed) return;
    recButtons.start.hidden = r.enabled;
    recButtons.stop.hidden = !r.enabled;
    setText(recNote, r.files.length
      ? `${r.files.length} file${r.files.length === 1 ? '' : 's'}, ${fmtBytes(r.total_bytes)}.`
      : (r.enabled ? 'Recorded while live; no file yet.' : 'Not recorded. Turn it on in Edit, or start it now.'));
    const base = mediaBase() + `/live/${enc}/`;
    const ext = (f) => (f.format === 'fmp4' ? 'mp4' : 'ts');
    const window_ = (f) => `?from=${Math.floor(f.id / 1000)}&dur=${Math.ceil(f.duration_s) + 1}`;
    fill(recBody, r.files.slice().reverse().map((f) => h('tr', { dataset: { id: String(f.id) } },
      h('td', { text: fmtTime(f.start) }),
      h('td', {}, fmtDuration(f.duration_s), f.recording ? h('span', { class: 'chip', text: ' recording' }) : null),
      h('td', { text: fmtBytes(f.bytes) }),
      h('td', { class: 'cell-actions' },
        h('a', { class: 'button small', href: base + `rec-${f.id}.${ext(f)}`, download: `${code.replaceAll('/', '_')}-${f.id}.${ext(f)}`, text: 'Download' }),
        ' ',
        h('a', { class: 'button small', href: base + 'index.m3u8' + window_(f), target: '_blank', text: 'Replay (HLS)' }),
        // DASH DVR reads MP4 recordings only.
        f.format === 'fmp4' ? ' ' : null,
        f.format === 'fmp4' ? h('a', { class: 'button small', href: base + 'index.mpd' + window_(f), target: '_blank', text: 'DASH' }) : null),
      h('td', { class: 'cell-actions' }, f.recording ? null : h('button', {
        type: 'button', class: 'button small danger', text: 'Delete',
        on: { click: (e) => deleteRecording(f.id, e.target) },
      })))));
  }

  async function setRecording(action) {
    try {
      await api('POST', `streams/${enc}/recording`, { action });
    } catch (e) {
      ctx.showError(e);
    }
    renderRecordings(true);
  }

  async function deleteRecording(id, button) {
    if (!confirm('Delete this recording?')) return;
    button.disabled = true;
    try {
      await api('DELETE', `streams/${enc}/recordings/${id}`);
    } catch (e) {
      ctx.showError(e);
    }
    renderRecordings(true);
  }

  async function remove() {
    if (!confirm(`Delete stream ${code}? Its publisher and readers are disconnected.`)) return;
    try {
      await api('DELETE', `streams/${enc}`);
      location.hash = '#/';
    } catch (e) {
      ctx.showError(e);
    }
  }

  function show(s) {
    stream = s;
    loading.hidden = true;
    missing.hidden = Boolean(s);
    page.hidden = !s;
    if (!s) {
      preview.stop();
      return;
    }
    renderStats();
    renderUrls();
    renderInputs();
    renderPushes();
    renderRecordings(false);
    refreshPreview();
  }

  // The history first, so the graph is full at once; then live updates.
  api('GET', `streams/${enc}`).then((s) => {
    if (closed) return;
    chart.reset(s.runtime.bitrate_history || []);
    show(s);
  }).catch((e) => {
    if (closed) return;
    if (e instanceof ApiError && e.status === 404) show(null);
    else ctx.showError(e);
  }).finally(() => {
    if (closed) return;
    stopFeed = follow('?stream=' + enc, (snap) => {
      const s = snap.streams[0] || null;
      if (s) chart.push(snap.at, s.runtime.bitrate_in_kbps, s.runtime.bitrate_out_kbps);
      show(s);
      renderSessions(snap.sessions || [], snap.sessions_total || 0);
    }, ctx.feedState);
  });
  server().then((i) => {
    info = i;
    renderUrls();
    refreshPreview();
  }).catch((e) => ctx.showError(e));

  return () => {
    closed = true;
    if (stopFeed) stopFeed();
    preview.stop();
    chart.destroy();
  };
}
