// The inspector page: asks for a token (kept in sessionStorage only), opens the
// agent's WebSocket with the `bearer.TOKEN` subprotocol, subscribes to the
// inspection feed, and keeps the list, the chart, the log and the supervisor
// view up to date. Test hooks live on window.inspector.
'use strict';

(function () {
  const TOKEN_KEY = 'sandboxd.token';
  const LOG_ROWS = 500;
  const $ = (id) => document.getElementById(id);
  const state = {
    ws: null,
    nextId: 1,
    pending: new Map(),
    sandboxes: new Map(),
    selected: null,
    /** Live entries of the selected sandbox that arrived before its history. */
    buffered: null,
    lastSeq: 0,
    chart: null,
    graph: null,
    listDirty: false,
  };
  const hooks = (window.inspector = { ready: false, connected: false, trail: [], selected: null, errors: [] });

  // ---- token & connection ----

  function askToken(message) {
    $('main').hidden = true;
    $('logout').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    $('token').focus();
  }

  $('login').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim();
    if (!/^[\x21-\x7e]{1,512}$/.test(token)) return askToken('That does not look like a token.');
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token').value = '';
    connect(token);
  });

  $('logout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.ws) state.ws.close(1000);
    askToken();
  });

  function setConn(text, ok) {
    const c = $('conn');
    c.textContent = text;
    c.className = `conn ${ok ? 'ok' : 'bad'}`;
  }

  function connect(token) {
    $('login').hidden = true;
    setConn('connecting…', false);
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1`;
    let opened = false;
    let ws;
    try {
      ws = new WebSocket(url, ['sandboxd.v1', `bearer.${token}`]);
    } catch (err) {
      return askToken('The token cannot be sent as a WebSocket subprotocol.');
    }
    state.ws = ws;
    ws.addEventListener('open', () => {
      opened = true;
      hooks.connected = true;
      setConn('connected', true);
      $('main').hidden = false;
      $('logout').hidden = false;
      start().catch((err) => showError(err));
    });
    ws.addEventListener('message', (ev) => onMessage(ev.data));
    ws.addEventListener('close', (ev) => {
      hooks.connected = false;
      for (const p of state.pending.values()) p.reject(new Error('connection closed'));
      state.pending.clear();
      if (state.ws !== ws) return;
      if (!opened) {
        // The handshake was refused: the browser does not say why; a bad token is the usual reason.
        sessionStorage.removeItem(TOKEN_KEY);
        return askToken('The agent refused the connection (wrong token?).');
      }
      setConn(`disconnected (${ev.code}); retrying…`, false);
      setTimeout(() => {
        const t = sessionStorage.getItem(TOKEN_KEY);
        if (t && state.ws === ws) connect(t);
      }, 1500);
    });
  }

  function call(method, params) {
    return new Promise((resolve, reject) => {
      const id = state.nextId++;
      state.pending.set(id, { resolve, reject });
      state.ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params: params || {} }));
    });
  }

  function onMessage(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof msg.method === 'string') {
      if (msg.method === 'inspect.event') onEntry(msg.params);
      else if (msg.method === 'inspect.gap') resync();
      return;
    }
    const p = state.pending.get(msg.id);
    if (!p) return;
    state.pending.delete(msg.id);
    if (msg.error) p.reject(Object.assign(new Error(msg.error.message), { data: msg.error.data }));
    else p.resolve(msg.result);
  }

  // ---- start-up ----

  async function start() {
    if (state.graph === null) {
      const res = await fetch('/inspect/graph.json');
      state.graph = await res.json();
      state.chart = await window.StateChart.create($('chart'), state.graph);
      // Full size keeps labels readable; the view follows the current state ("Fit" shows it all).
    }
    const sub = await call('inspect.subscribe', {});
    state.sandboxes.clear();
    for (const s of sub.sandboxes) state.sandboxes.set(s.sandboxId, s);
    renderList();
    await refreshSupervisor();
    if (state.selected !== null) await select(state.selected);
    hooks.ready = true;
    document.body.dataset.ready = 'true';
  }

  async function resync() {
    const { sandboxes } = await call('inspect.list', {});
    state.sandboxes.clear();
    for (const s of sandboxes) state.sandboxes.set(s.sandboxId, s);
    renderList();
    if (state.selected !== null) await select(state.selected);
  }

  // ---- entries ----

  function onEntry(entry) {
    let s = state.sandboxes.get(entry.sandboxId);
    if (s === undefined) {
      s = { sandboxId: entry.sandboxId, teamId: '?', createdAt: entry.at, status: 'creating', step: 'creating', lastEvent: null, stopped: false };
      state.sandboxes.set(entry.sandboxId, s);
      fetchTeams();
    }
    if (entry.kind === 'snapshot') {
      s.status = entry.status;
      s.step = entry.step;
    } else if (entry.kind === 'event') s.lastEvent = { type: entry.type, at: entry.at };
    else if (entry.kind === 'actor' && entry.state === 'stopped') s.stopped = true;
    scheduleList();
    if (entry.sandboxId !== state.selected) return;
    if (state.buffered !== null) state.buffered.push(entry);
    else applyEntry(entry);
  }

  // New sandboxes arrive without their team (it is in the summaries only): one list call per burst.
  let teamsPending = false;
  function fetchTeams() {
    if (teamsPending) return;
    teamsPending = true;
    setTimeout(() => {
      call('inspect.list', {}).then(({ sandboxes }) => {
        teamsPending = false;
        for (const x of sandboxes) {
          const known = state.sandboxes.get(x.sandboxId);
          if (known && known.teamId === '?') known.teamId = x.teamId;
        }
        scheduleList();
      }, () => (teamsPending = false));
    }, 200);
  }

  let lastEventType;
  function applyEntry(entry) {
    if (entry.seq <= state.lastSeq) return;
    state.lastSeq = entry.seq;
    addLogRow(entry);
    if (entry.kind === 'event') lastEventType = entry.type;
    if (entry.kind === 'snapshot') showSnapshot(entry);
  }

  function showSnapshot(entry) {
    const leaves = state.chart.show(entry.value, lastEventType);
    const text = leaves.map((l) => l.replace(/^sandbox\./, '')).join(' + ');
    $('current').textContent = `${text} (${entry.status})`;
    // What the page actually shows, read back from the drawing.
    const drawn = [...document.querySelectorAll('#chart svg .state.active')].map((g) => g.getAttribute('data-id'));
    hooks.trail.push(drawn.join('+'));
  }

  async function select(sandboxId) {
    state.selected = sandboxId;
    hooks.selected = sandboxId;
    hooks.trail = [];
    state.buffered = [];
    state.lastSeq = 0;
    lastEventType = undefined;
    $('log').tBodies[0].textContent = '';
    $('selected').textContent = sandboxId;
    renderList();
    let history = [];
    try {
      history = (await call('inspect.history', { sandboxId })).entries;
    } catch (err) {
      showError(err);
    }
    if (state.selected !== sandboxId) return;
    const live = state.buffered;
    state.buffered = null;
    for (const e of history) applyEntry(e);
    for (const e of live) applyEntry(e);
  }

  // ---- rendering ----

  function scheduleList() {
    if (state.listDirty) return;
    state.listDirty = true;
    requestAnimationFrame(() => {
      state.listDirty = false;
      renderList();
    });
  }

  function age(ms) {
    const s = Math.max(0, Math.floor((Date.now() - ms) / 1000));
    if (s < 60) return `${s}s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  }

  const busy = new Set(['creating', 'pausing', 'resuming', 'snapshotting', 'flattening', 'destroying']);

  /** Updates rows in place (a row that is rebuilt under the pointer swallows clicks). */
  const rowsById = new Map();
  function renderList() {
    const body = $('sandboxes').tBodies[0];
    const rows = [...state.sandboxes.values()].sort((a, b) => b.createdAt - a.createdAt).slice(0, 1000);
    $('count').textContent = `(${state.sandboxes.size})`;
    $('empty').hidden = rows.length > 0;
    const keep = new Set(rows.map((s) => s.sandboxId));
    for (const [id, tr] of rowsById) {
      if (!keep.has(id)) {
        tr.remove();
        rowsById.delete(id);
      }
    }
    let prev = null;
    for (const s of rows) {
      let tr = rowsById.get(s.sandboxId);
      if (tr === undefined) {
        tr = document.createElement('tr');
        tr.tabIndex = 0;
        tr.dataset.id = s.sandboxId;
        for (let i = 0; i < 6; i++) tr.appendChild(document.createElement('td'));
        const badge = document.createElement('span');
        tr.cells[2].appendChild(badge);
        rowsById.set(s.sandboxId, tr);
      }
      const selected = String(s.sandboxId === state.selected);
      if (tr.getAttribute('aria-selected') !== selected) tr.setAttribute('aria-selected', selected);
      const badge = tr.cells[2].firstChild;
      const cls = `status${busy.has(s.status) ? ' busy' : ''}${s.status === 'error' ? ' error' : ''}`;
      if (badge.className !== cls) badge.className = cls;
      const texts = [
        s.sandboxId,
        s.teamId,
        s.stopped && s.status !== 'destroyed' ? `${s.status} (stopped)` : s.status,
        s.step,
        age(s.createdAt),
        s.lastEvent ? `${s.lastEvent.type} (${age(s.lastEvent.at)} ago)` : '–',
      ];
      texts.forEach((text, i) => {
        const target = i === 2 ? badge : tr.cells[i];
        if (target.textContent !== text) target.textContent = text;
      });
      const want = prev === null ? body.firstChild : prev.nextSibling;
      if (want !== tr) body.insertBefore(tr, want);
      prev = tr;
    }
  }

  $('sandboxes').addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr[data-id]');
    if (tr) select(tr.dataset.id);
  });
  $('sandboxes').addEventListener('keydown', (ev) => {
    const tr = ev.target.closest('tr[data-id]');
    if (tr && (ev.key === 'Enter' || ev.key === ' ')) {
      ev.preventDefault();
      select(tr.dataset.id);
    }
  });

  function time(ms) {
    const d = new Date(ms);
    return `${d.toLocaleTimeString([], { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`;
  }

  function addLogRow(entry) {
    const body = $('log').tBodies[0];
    const tr = document.createElement('tr');
    tr.className = `kind-${entry.kind}`;
    let what = '';
    let payload = '';
    if (entry.kind === 'event') {
      what = entry.from ? `${entry.type} ← ${entry.from}` : entry.type;
      payload = entry.payload && Object.keys(entry.payload).length > 0 ? JSON.stringify(entry.payload) : '';
    } else if (entry.kind === 'snapshot') {
      what = `→ ${entry.step}`;
      payload = `status ${entry.status}${entry.tags.length ? `, tags ${entry.tags.join(', ')}` : ''}`;
    } else what = `actor ${entry.state}`;
    for (const [cls, text] of [['time', time(entry.at)], ['seq', String(entry.seq)], ['kind', entry.kind], ['what', what], ['payload', payload]]) {
      const td = document.createElement('td');
      td.className = cls;
      td.textContent = text;
      tr.appendChild(td);
    }
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > LOG_ROWS) body.deleteRow(body.rows.length - 1);
  }

  async function refreshSupervisor() {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    let info;
    try {
      info = await call('agent.info', {});
    } catch {
      return;
    }
    const dl = $('supervisor');
    dl.textContent = '';
    const counts = Object.entries(info.sandboxes).map(([k, v]) => `${k} ${v}`).join(' · ') || 'none';
    const rows = [
      ['Draining', info.draining ? 'YES — creates and resumes refused' : 'no'],
      ['Sandboxes', counts],
      ['Slots', `${info.capacity.slotsInUse} / ${info.capacity.slots} in use`],
      ['Backends', `disk ${info.backends.disk}, network ${info.backends.network}`],
      ['Version', info.version],
    ];
    for (const [k, v] of rows) {
      const dt = document.createElement('dt');
      dt.textContent = k;
      const dd = document.createElement('dd');
      dd.textContent = v;
      if (k === 'Draining' && info.draining) dd.className = 'error';
      dl.append(dt, dd);
    }
  }

  function showError(err) {
    hooks.errors.push(String(err && err.message ? err.message : err));
    setConn(`error: ${err && err.message ? err.message : err}`, false);
  }

  setInterval(refreshSupervisor, 2000);
  setInterval(scheduleList, 1000);
  $('zoom-in').addEventListener('click', () => state.chart && state.chart.zoom(1.25));
  $('zoom-out').addEventListener('click', () => state.chart && state.chart.zoom(0.8));
  $('zoom-fit').addEventListener('click', () => state.chart && state.chart.fit());

  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) connect(saved);
  else askToken();
})();
