// Create and edit a stream. Errors from the API that name a field (`error.field`, e.g.
// `push[1].url`, `inputs[0].priority`, `failover.packet_timeout_s`) are shown beside that
// field; others above the buttons. The stream key is write-only: the form can set, generate
// or remove it, never read it back.

import { api, ApiError } from './api.js';
import { h, fill, streamHref, copyButton } from './dom.js';

const PROTOCOLS = [
  ['hls', 'HLS', 'HTTP Live Streaming playlists'],
  ['dash', 'DASH', 'MPEG-DASH manifests'],
  ['rtmp', 'RTMP play', 'RTMP and RTMPS players'],
  ['srt', 'SRT play', 'SRT players'],
  ['rtsp', 'RTSP play', 'RTSP players'],
  ['mpegts', 'MPEG-TS', 'MPEG-TS over HTTP'],
];

/** A random key of letters and digits (what `stream_key` accepts without escaping). */
function generateKey() {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789';
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

export function mountForm(view, { code }, ctx) {
  const editing = code !== undefined;
  const fields = new Map();
  let closed = false;

  /** A labelled control registered under its API field path. */
  function field(path, label, control, help) {
    const error = h('span', { class: 'field-error', hidden: true, dataset: { errorFor: path } });
    const wrap = h('label', { class: 'field', dataset: { field: path } },
      h('span', { class: 'label', text: label }), control,
      help ? h('span', { class: 'help', text: help }) : null, error);
    fields.set(path, { wrap, control, error });
    return wrap;
  }

  const codeInput = h('input', { name: 'code', autocomplete: 'off', spellcheck: 'false', class: 'mono', placeholder: 'e.g. studio-1' });
  const nameInput = h('input', { name: 'name', autocomplete: 'off', placeholder: 'Shown in the dashboard' });
  const descInput = h('textarea', { name: 'description', rows: 2 });
  const tagsInput = h('input', { name: 'tags', autocomplete: 'off', placeholder: 'comma, separated' });
  const disabledInput = h('input', { type: 'checkbox', name: 'disabled' });
  const protoInputs = {};
  for (const [k] of PROTOCOLS) protoInputs[k] = h('input', { type: 'checkbox', name: 'protocol-' + k, checked: true });

  // Stream key: a mode (keep / set / remove / none) and the new value.
  const keyInput = h('input', { name: 'stream_key', autocomplete: 'off', spellcheck: 'false', class: 'mono', placeholder: 'letters, digits and - _ . ~' });
  const keyModes = h('div', { class: 'radios' });
  const keyEntry = h('div', { class: 'key-entry', hidden: true }, keyInput,
    h('button', { type: 'button', class: 'button', text: 'Generate', on: { click: () => { keyInput.value = generateKey(); keyInput.focus(); keyInput.select(); } } }));
  const keyNote = h('p', { class: 'help' });
  let keyMode = 'none';
  function setKeyModes(hasKey) {
    const modes = hasKey
      ? [['keep', 'Keep the current key'], ['set', 'Set a new key'], ['remove', 'Remove the key (anyone may publish)']]
      : [['none', 'No key (anyone may publish)'], ['set', 'Require a key']];
    keyMode = modes[0][0];
    fill(keyModes, modes.map(([m, label]) => h('label', { class: 'radio' },
      h('input', { type: 'radio', name: 'key-mode', value: m, checked: m === keyMode, on: { change: () => { keyMode = m; syncKey(); } } }),
      ' ', label)));
    keyNote.textContent = hasKey
      ? 'A key is set. It is write-only: the gateway never shows it again.'
      : 'Without a key anyone who can reach the ingest port may publish to this code.';
    syncKey();
  }
  function syncKey() {
    keyEntry.hidden = keyMode !== 'set';
    if (keyMode === 'set' && !keyInput.value) keyInput.value = generateKey();
  }
  const keyField = h('div', { class: 'field', dataset: { field: 'stream_key' } },
    h('span', { class: 'label', text: 'Stream key' }), keyNote, keyModes, keyEntry,
    h('span', { class: 'help', text: 'Publishers add ?key=… to the URL. Copy a new key before saving: it is not shown afterwards.' }),
    h('span', { class: 'field-error', hidden: true, dataset: { errorFor: 'stream_key' } }));
  fields.set('stream_key', { wrap: keyField, control: keyInput, error: keyField.lastChild });

  // Push destinations.
  const pushList = h('div', { class: 'push-list' });
  const pushRows = [];
  function addPush(p) {
    const d = p || {};
    const retry = d.retry || {};
    const row = { el: null, inputs: {} };
    const i = () => pushRows.indexOf(row);
    const inp = (k, props) => {
      row.inputs[k] = h('input', props);
      return row.inputs[k];
    };
    const url = inp('url', { class: 'mono', placeholder: 'rtmp://host/app/key or rtmps://…', value: d.url || '', autocomplete: 'off', spellcheck: 'false' });
    const enabled = inp('enabled', { type: 'checkbox', checked: d.enabled !== false });
    const comment = inp('comment', { value: d.comment || '', placeholder: 'e.g. YouTube' });
    const timeout = inp('timeout_s', { type: 'number', min: 1, max: 300, step: 1, value: d.timeout_s ?? '', placeholder: '10' });
    const initial = inp('retry.initial_s', { type: 'number', min: 0.1, step: 0.1, value: retry.initial_s ?? '', placeholder: '1' });
    const max = inp('retry.max_s', { type: 'number', min: 0.1, step: 0.1, value: retry.max_s ?? '', placeholder: '30' });
    const limit = inp('limit', { type: 'number', min: 0, step: 1, value: d.limit ?? '', placeholder: '0 = forever' });
    const rendition = inp('rendition', { value: d.rendition || '', placeholder: 'the stream itself', autocomplete: 'off' });
    const err = (k) => h('span', { class: 'field-error', hidden: true, dataset: { errorFor: k } });
    const sub = (k, label, control) => h('label', { class: 'field', dataset: { sub: k } },
      h('span', { class: 'label', text: label }), control, err(k));
    row.el = h('div', { class: 'push-row' },
      h('div', { class: 'push-main' },
        sub('url', 'Destination URL', url),
        sub('comment', 'Comment', comment),
        h('label', { class: 'check' }, enabled, ' Enabled'),
        h('button', { type: 'button', class: 'button small danger', text: 'Remove', on: { click: () => {
          pushRows.splice(i(), 1);
          row.el.remove();
        } } })),
      h('details', { class: 'advanced' }, h('summary', { text: 'Timeout, retries and rendition' }),
        h('div', { class: 'row4' },
          sub('timeout_s', 'Connect timeout (s)', timeout),
          sub('retry.initial_s', 'First retry after (s)', initial),
          sub('retry.max_s', 'Longest wait (s)', max),
          sub('limit', 'Give up after attempts', limit)),
        sub('rendition', 'Rendition (a rung of the ladder, e.g. 720p)', rendition)));
    pushRows.push(row);
    pushList.append(row.el);
    return row;
  }

  // Inputs (sources the gateway pulls, by priority) and their failover settings.
  const inputList = h('div', { class: 'input-list' });
  const inputRows = [];
  const isRtsp = (url) => /^rtsps?:\/\//i.test(url.trim());
  function addInput(p) {
    const d = p || {};
    const row = { el: null, inputs: {} };
    const i = () => inputRows.indexOf(row);
    const err = (k) => h('span', { class: 'field-error', hidden: true, dataset: { errorFor: k } });
    const sub = (k, label, control) => h('label', { class: 'field', dataset: { sub: k } },
      h('span', { class: 'label', text: label }), control, err(k));
    const url = h('input', { class: 'mono', placeholder: 'rtsp://camera/stream, udp://:5000, srt://host:port, file:///path', value: d.url || '', autocomplete: 'off', spellcheck: 'false' });
    const priority = h('input', { type: 'number', min: 0, max: 1000, step: 1, value: d.priority ?? '', placeholder: String(inputRows.length) });
    const comment = h('input', { value: d.comment || '', placeholder: 'e.g. Backup encoder' });
    const enabled = h('input', { type: 'checkbox', checked: d.enabled !== false });
    const transport = h('select', {},
      h('option', { value: 'tcp', text: 'TCP (interleaved)' }),
      h('option', { value: 'udp', text: 'UDP' }));
    transport.value = d.rtsp_transport === 'udp' ? 'udp' : 'tcp';
    const rtsp = h('div', { class: 'input-rtsp', hidden: !isRtsp(url.value) }, sub('rtsp_transport', 'RTSP transport', transport));
    url.addEventListener('input', () => { rtsp.hidden = !isRtsp(url.value); });
    Object.assign(row.inputs, { url, priority, comment, enabled, rtsp_transport: transport });
    row.el = h('div', { class: 'input-row' },
      h('div', { class: 'input-main' },
        sub('url', 'Source URL', url),
        sub('priority', 'Priority', priority),
        sub('comment', 'Comment', comment),
        h('label', { class: 'check' }, enabled, ' Enabled'),
        h('button', { type: 'button', class: 'button small danger', text: 'Remove', on: { click: () => {
          inputRows.splice(i(), 1);
          row.el.remove();
          syncFailover();
        } } })),
      rtsp);
    inputRows.push(row);
    inputList.append(row.el);
    syncFailover();
    return row;
  }

  const numInput = (name, props) => h('input', Object.assign({ type: 'number', name, step: 'any' }, props));
  const failoverInputs = {
    packet_timeout_s: numInput('packet_timeout_s', { min: 1, max: 3600, placeholder: '30' }),
    failback_after_s: numInput('failback_after_s', { min: 0, max: 86400, placeholder: '10' }),
    'retry.initial_s': numInput('failover-retry-initial', { min: 0.1, max: 3600, placeholder: '1' }),
    'retry.max_s': numInput('failover-retry-max', { min: 0.1, max: 3600, placeholder: '10' }),
    close_after_s: numInput('close_after_s', { min: 1, max: 86400, placeholder: '10' }),
  };
  const onDemandInput = h('input', { type: 'checkbox', name: 'on_demand' });
  const fo = (k, label, help) => field('failover.' + k, label, failoverInputs[k], help);
  const failoverBlock = h('details', { class: 'advanced failover', dataset: { field: 'failover' } },
    h('summary', { text: 'Failover and reconnects' }),
    h('div', { class: 'row4' },
      fo('packet_timeout_s', 'Down after silence (s)'),
      fo('failback_after_s', 'Fail back after (s)'),
      fo('retry.initial_s', 'First reconnect after (s)'),
      fo('retry.max_s', 'Longest wait (s)')),
    h('div', { class: 'row4' },
      h('label', { class: 'check', dataset: { field: 'failover.on_demand' } }, onDemandInput, ' On demand: pull only while someone watches'),
      fo('close_after_s', 'Stop after no reader (s)')),
    h('p', { class: 'help', text: 'A preferred input must stay healthy for the fail-back time before the stream returns to it. An empty field keeps its current value, or the default for a new stream (30, 10, 1, 10 and 10 s).' }),
    h('span', { class: 'field-error', hidden: true, dataset: { errorFor: 'failover' } }));
  function syncFailover() {
    failoverBlock.hidden = inputRows.length === 0;
  }
  syncFailover();

  // Recording to disk: the API's seconds and bytes, shown in minutes, days and GiB.
  const recEnabled = h('input', { type: 'checkbox', name: 'recording_enabled' });
  const recInputs = {
    rotate_min: numInput('rotate_min', { min: 1 / 60, max: 1440, placeholder: '10' }),
    max_age_days: numInput('max_age_days', { min: 0, max: 3650, placeholder: 'keep' }),
    max_gib: numInput('max_gib', { min: 0, max: 1048576, placeholder: 'no limit' }),
  };
  const recSchedule = h('input', { name: 'recording_schedule', placeholder: 'always, or e.g. 08:00-18:00, 22:00-02:00' });
  const recFormat = h('select', { name: 'recording_format' },
    h('option', { value: 'ts', text: 'MPEG-TS (.ts)' }),
    h('option', { value: 'fmp4', text: 'fragmented MP4 (.mp4)' }));
  const recBlock = h('section', { dataset: { field: 'recording' } },
    h('h2', { text: 'Recording' }),
    h('label', { class: 'check', dataset: { field: 'recording.enabled' } }, recEnabled, ' Record every publish to disk (replayable with ?ago= and dur=)'),
    h('div', { class: 'row4' },
      field('recording.format', 'Files', recFormat),
      field('recording.rotate_s', 'New file every (min)', recInputs.rotate_min),
      field('recording.max_age_s', 'Delete after (days)', recInputs.max_age_days),
      field('recording.max_bytes', 'Keep at most (GiB)', recInputs.max_gib)),
    field('recording.schedule', 'Only between (UTC)', recSchedule, 'Daily windows, comma-separated; empty records whenever the stream is live.'),
    h('span', { class: 'field-error', hidden: true, dataset: { errorFor: 'recording' } }));

  // Renditions: the ladder's rung names, best first; a rung given fields through the API
  // (size, bitrate) keeps them when its name stays in the list.
  const tcEnabled = h('input', { type: 'checkbox', name: 'transcode_enabled' });
  const tcRungs = h('input', { name: 'transcode_profiles', placeholder: 'source, 720p, 480p, 360p' });
  const tcHw = h('select', { name: 'transcode_hwaccel' },
    ...['auto', 'none', 'nvenc', 'vaapi', 'qsv'].map((v) => h('option', { value: v, text: v === 'none' ? 'none (x264)' : v })));
  let tcKept = [];
  let tcRest = {};
  const tcBlock = h('section', { dataset: { field: 'transcode' } },
    h('h2', { text: 'Renditions' }),
    h('label', { class: 'check', dataset: { field: 'transcode.enabled' } }, tcEnabled, ' Make an ABR ladder while live (ffmpeg; each rung also plays as <code>_<name>)'),
    h('div', { class: 'row4' },
      field('transcode.profiles', 'Rungs', tcRungs, 'Presets 1080p, 720p, 480p, 360p, 240p, and source for the stream itself; comma-separated, best first.'),
      field('transcode.hwaccel', 'Encoder', tcHw)),
    h('span', { class: 'field-error', hidden: true, dataset: { errorFor: 'transcode' } }));

  const formError = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const saveButton = h('button', { type: 'submit', class: 'button primary', text: editing ? 'Save changes' : 'Create stream' });
  const form = h('form', { class: 'card form', novalidate: true },
    h('section', {},
      h('h2', { text: 'Stream' }),
      editing
        ? h('div', { class: 'field' }, h('span', { class: 'label', text: 'Code' }), h('span', { class: 'mono code-static', text: code }))
        : field('code', 'Code', codeInput, 'Part of every URL: letters, digits, - and _, up to 128.'),
      field('name', 'Name', nameInput),
      field('description', 'Description', descInput),
      field('tags', 'Tags', tagsInput),
      h('label', { class: 'check', dataset: { field: 'disabled' } }, disabledInput, ' Disabled: refuse publishers and players')),
    h('section', {}, h('h2', { text: 'Security' }), keyField),
    h('section', { dataset: { field: 'inputs' } },
      h('h2', { text: 'Inputs' }),
      h('p', { class: 'help', text: 'Sources the gateway pulls, lower priority first; when the active one goes silent it switches to the next. Without inputs, whoever publishes to the code is the source; add publish:// to keep an encoder as one of the inputs. Saved URLs are shown with their secrets masked; leave them as they are to keep them.' }),
      inputList,
      h('span', { class: 'field-error', hidden: true, dataset: { errorFor: 'inputs' } }),
      failoverBlock,
      h('button', { type: 'button', class: 'button', text: 'Add input', on: { click: () => addInput().inputs.url.focus() } })),
    h('section', {},
      h('h2', { text: 'Outputs' }),
      h('div', { class: 'switches', dataset: { field: 'protocols' } }, PROTOCOLS.map(([k, label, help]) => h('label', { class: 'switch', title: help },
        protoInputs[k], h('span', { text: label })))),
      h('span', { class: 'field-error', hidden: true, dataset: { errorFor: 'protocols' } })),
    h('section', { dataset: { field: 'push' } },
      h('h2', { text: 'Push destinations' }),
      h('p', { class: 'help', text: 'The stream is re-published to each enabled destination while it is live. Saved URLs are shown with their key masked; leave them as they are to keep them.' }),
      pushList,
      h('span', { class: 'field-error', hidden: true, dataset: { errorFor: 'push' } }),
      h('button', { type: 'button', class: 'button', text: 'Add destination', on: { click: () => addPush().inputs.url.focus() } })),
    recBlock,
    tcBlock,
    formError,
    h('div', { class: 'actions end' },
      h('a', { class: 'button', href: editing ? streamHref(code) : '#/', text: 'Cancel' }),
      saveButton));
  form.addEventListener('submit', submit);

  fill(view,
    h('div', { class: 'page-head' }, h('div', {},
      h('h1', { text: editing ? 'Edit stream' : 'New stream' }),
      editing ? h('p', { class: 'subtitle' }, h('a', { href: streamHref(code), text: code })) : null)),
    form);

  if (editing) {
    form.hidden = true;
    api('GET', `streams/${encodeURIComponent(code)}`).then((s) => {
      if (closed) return;
      nameInput.value = s.name;
      descInput.value = s.description;
      tagsInput.value = s.tags.join(', ');
      disabledInput.checked = s.disabled;
      for (const [k] of PROTOCOLS) protoInputs[k].checked = s.protocols[k];
      for (const p of s.push) addPush(p);
      for (const p of s.inputs || []) addInput(p);
      if (s.failover) {
        for (const [k, input] of Object.entries(failoverInputs)) {
          const v = k.startsWith('retry.') ? s.failover.retry[k.slice(6)] : s.failover[k];
          input.value = v ?? '';
        }
        onDemandInput.checked = s.failover.on_demand;
      }
      if (s.recording) {
        recEnabled.checked = s.recording.enabled;
        recFormat.value = s.recording.format || 'ts';
        recInputs.rotate_min.value = s.recording.rotate_s / 60;
        recInputs.max_age_days.value = s.recording.max_age_s ? s.recording.max_age_s / 86400 : '';
        recInputs.max_gib.value = s.recording.max_bytes ? s.recording.max_bytes / 2 ** 30 : '';
        recSchedule.value = (s.recording.schedule || []).join(', ');
      }
      if (s.transcode) {
        const { enabled, profiles, hwaccel, ...rest } = s.transcode;
        tcEnabled.checked = enabled;
        tcKept = profiles;
        tcRest = rest;
        tcRungs.value = profiles.map((p) => p.name).join(', ');
        tcHw.value = hwaccel;
      }
      setKeyModes(s.has_stream_key);
      form.hidden = false;
      if (!s.persistent) {
        formError.hidden = false;
        formError.textContent = 'This stream exists only while it is live (created by publishing); saving stores it.';
      }
    }).catch((e) => ctx.showError(e));
  } else {
    setKeyModes(false);
    codeInput.focus();
  }

  function clearErrors() {
    for (const el of form.querySelectorAll('.field-error')) {
      el.hidden = true;
      el.textContent = '';
    }
    for (const el of form.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
    formError.hidden = true;
  }

  /** Where an API field path is shown: the exact control, or the closest parent path's. */
  function locate(path) {
    const m = /^(push|inputs)\[(\d+)\]\.?(.*)$/.exec(path);
    const rows = m && (m[1] === 'push' ? pushRows : inputRows);
    if (m && rows[Number(m[2])]) {
      const row = rows[Number(m[2])];
      let sub = m[3];
      while (sub && !row.inputs[sub]) sub = sub.replace(/(\.[^.]*|\[\d+\])$/, '');
      sub = sub || 'url';
      return { control: row.inputs[sub], error: row.el.querySelector(`[data-error-for="${sub}"]`) };
    }
    let p = path;
    while (p) {
      if (fields.has(p)) return fields.get(p);
      const el = form.querySelector(`[data-error-for="${CSS.escape(p)}"]`);
      if (el) return { control: null, error: el };
      const shorter = p.replace(/(\.[^.]*|\[\d+\])$/, '');
      if (shorter === p) break;
      p = shorter;
    }
    return null;
  }

  function showFieldError(e) {
    const where = e.field && locate(e.field);
    const prefix = e.field + ': ';
    const text = e.field && e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
    if (!where) {
      formError.hidden = false;
      formError.textContent = e.message;
      formError.scrollIntoView({ block: 'nearest' });
      return;
    }
    where.error.hidden = false;
    where.error.textContent = text;
    if (where.control) {
      const details = where.control.closest('details');
      if (details) details.open = true;
      where.control.setAttribute('aria-invalid', 'true');
      where.control.focus();
    }
    where.error.scrollIntoView({ block: 'nearest' });
  }

  function num(input) {
    return input.value.trim() === '' ? undefined : Number(input.value);
  }

  function body() {
    const b = {
      name: nameInput.value.trim(),
      description: descInput.value,
      tags: tagsInput.value.split(',').map((t) => t.trim()).filter(Boolean),
      disabled: disabledInput.checked,
      protocols: Object.fromEntries(PROTOCOLS.map(([k]) => [k, protoInputs[k].checked])),
      push: pushRows.map((r) => {
        const p = {
          url: r.inputs.url.value.trim(),
          enabled: r.inputs.enabled.checked,
          comment: r.inputs.comment.value,
          rendition: r.inputs.rendition.value.trim(),
        };
        const timeout = num(r.inputs.timeout_s);
        const initial = num(r.inputs['retry.initial_s']);
        const max = num(r.inputs['retry.max_s']);
        const limit = num(r.inputs.limit);
        if (timeout !== undefined) p.timeout_s = timeout;
        if (limit !== undefined) p.limit = limit;
        if (initial !== undefined || max !== undefined) {
          p.retry = {};
          if (initial !== undefined) p.retry.initial_s = initial;
          if (max !== undefined) p.retry.max_s = max;
        }
        return p;
      }),
    };
    b.inputs = inputRows.map((r) => {
      const url = r.inputs.url.value.trim();
      const p = { url, enabled: r.inputs.enabled.checked, comment: r.inputs.comment.value };
      const priority = num(r.inputs.priority);
      if (priority !== undefined) p.priority = priority;
      if (isRtsp(url)) p.rtsp_transport = r.inputs.rtsp_transport.value;
      return p;
    });
    if (inputRows.length) {
      const f = { on_demand: onDemandInput.checked };
      for (const k of ['packet_timeout_s', 'failback_after_s', 'close_after_s']) {
        const v = num(failoverInputs[k]);
        if (v !== undefined) f[k] = v;
      }
      const initial = num(failoverInputs['retry.initial_s']);
      const max = num(failoverInputs['retry.max_s']);
      if (initial !== undefined || max !== undefined) {
        f.retry = {};
        if (initial !== undefined) f.retry.initial_s = initial;
        if (max !== undefined) f.retry.max_s = max;
      }
      b.failover = f;
    }
    const rec = { enabled: recEnabled.checked, format: recFormat.value };
    const rotate = num(recInputs.rotate_min);
    const days = num(recInputs.max_age_days);
    const gib = num(recInputs.max_gib);
    if (rotate !== undefined) rec.rotate_s = rotate * 60;
    rec.max_age_s = days === undefined ? 0 : days * 86400;
    rec.max_bytes = gib === undefined ? 0 : Math.round(gib * 2 ** 30);
    rec.schedule = recSchedule.value.split(',').map((w) => w.trim()).filter(Boolean);
    b.recording = rec;
    const rungs = tcRungs.value.split(',').map((w) => w.trim()).filter(Boolean);
    // Audio, overlays and cadence set through the API go back unchanged.
    b.transcode = {
      ...tcRest,
      enabled: tcEnabled.checked,
      hwaccel: tcHw.value,
      profiles: rungs.map((n) => tcKept.find((p) => p.name === n) || { name: n }),
    };
    if (keyMode === 'set') b.stream_key = keyInput.value.trim();
    else if (keyMode === 'remove') b.stream_key = null;
    if (!editing) b.code = codeInput.value.trim();
    return b;
  }

  async function submit(ev) {
    ev.preventDefault();
    clearErrors();
    const b = body();
    saveButton.disabled = true;
    try {
      const saved = editing
        ? await api('PATCH', `streams/${encodeURIComponent(code)}`, b)
        : await api('POST', 'streams', b);
      if (closed) return;
      if (typeof b.stream_key === 'string') showKeyOnce(saved.code, b.stream_key);
      else location.hash = streamHref(saved.code);
    } catch (e) {
      if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 403) showFieldError(e);
      else ctx.showError(e);
    } finally {
      saveButton.disabled = false;
    }
  }

  /** After saving a new key: the one time it is shown, with a copy button. */
  function showKeyOnce(savedCode, key) {
    fill(view, h('div', { class: 'card key-once' },
      h('h1', { text: 'Stream saved' }),
      h('p', { text: 'The stream key, shown this once. Copy it into the encoder now: the gateway does not show it again.' }),
      h('div', { class: 'key-entry' }, h('input', { class: 'mono', id: 'saved-key', value: key, readOnly: true, on: { focus: (e) => e.target.select() } }), copyButton(key)),
      h('div', { class: 'actions' }, h('a', { class: 'button primary', href: streamHref(savedCode), text: 'Open the stream' }))));
  }

  return () => {
    closed = true;
  };
}
