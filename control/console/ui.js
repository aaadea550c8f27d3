// What every page of the console shares: the guide's names for statuses and types, the
// page's life (polling that ends with the route), dialogs, tables, pagers, selections,
// tag editors, the traffic chart's place.

import * as api from './api.js';
import { ApiError } from './api.js';
import { h, fill, setText, nextId, syncRows, field, showError, errorSlot, select } from './dom.js';

const POLL_MS = 4000;
const PAGE_SIZES = [10, 20, 50];

const SERVICE_STATUS = {
  creating: 'Creating',
  available: 'Connectable',
  failed: 'Failed',
  suspended: 'Suspended',
  deleting: 'Deleting',
  deleted: 'Deleted',
};
const ENDPOINT_STATUS = {
  creating: 'Creating',
  pendingAcceptance: 'Awaiting acceptance',
  accepted: 'Accepted',
  rejected: 'Rejected',
  failed: 'Failed',
  deleting: 'Deleting',
};
const BACKEND_TYPE = { VM: 'Cloud Server', LB: 'Elastic Load Balance', VIP: 'Virtual IP' };
const CLIENT_IDENTITY = [
  ['close', 'Close'],
  ['toa_open', 'TCP TOA'],
  ['proxy_open', 'Proxy Protocol'],
  ['open', 'TCP TOA and Proxy Protocol'],
];
const DURATIONS = [
  ['', 'Unlimited'],
  ['3600', '1 hour'],
  ['86400', '1 day'],
  ['604800', '1 week'],
  ['2592000', '1 month'],
  ['31536000', '1 year'],
];
const EXTENSIONS = DURATIONS.slice(1);

// ---- page life: pollers and timers end when the route changes ----

let life = { alive: true, timers: [] };

// The route before this one (newLife runs at every route change).
let previousHash = '';
let currentHash = '';

function newLife() {
  previousHash = currentHash;
  currentHash = location.hash;
  life.alive = false;
  for (const t of life.timers) clearTimeout(t);
  life = { alive: true, timers: [] };
  return life;
}

/** Run `fn` now and every POLL_MS while the page of `mine` is open (never two at once). */
function poll(fn, mine = life) {
  const tick = async () => {
    if (!mine.alive) return;
    try {
      await fn();
      if (mine.alive) showError(document.getElementById('poll-error'), null);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      // A failed poll is shown by the page's own status line; the next tick retries.
      showError(document.getElementById('poll-error'), e);
    }
    if (mine.alive) mine.timers.push(setTimeout(tick, POLL_MS));
  };
  return tick();
}

// ---- formatting ----

function when(t) {
  if (!t) return '--';
  return t.replace('T', ' ').replace(/Z$/, ' UTC');
}

/** A table's date: to the minute (the full time in the cell's title). */
function setWhen(td, t) {
  setText(td, t ? t.slice(0, 16).replace('T', ' ') : '--');
  td.title = when(t);
}

function statusBadge(kind, status, extra) {
  const names = kind === 'service' ? SERVICE_STATUS : ENDPOINT_STATUS;
  const el = h('span.status');
  updateBadge(el, names, status, extra);
  return el;
}

function updateBadge(el, names, status, extra) {
  const label = (names[status] || status || '--') + (extra ? ` (${extra})` : '');
  setText(el, label);
  el.className = `status status-${status || 'unknown'}`;
}

function tenantOf(permission) {
  return permission.replace(/^iam:domain::/, '');
}

function portsText(ports) {
  return (ports || []).map((p) => `${p.protocol || 'TCP'} ${p.client_port}→${p.server_port}`).join(', ');
}

function int(v) {
  const t = String(v).trim();
  return /^-?\d+$/.test(t) ? Number(t) : t;
}

/** Put an API error next to the control whose name its message mentions, else in `fallback`. */
function placeError(err, rules, fallback) {
  const msg = `${err.message || ''}`.toLowerCase();
  for (const [re, slot] of rules) {
    if (re.test(msg)) {
      showError(slot, err);
      return slot;
    }
  }
  showError(fallback, err);
  return fallback;
}

function clearErrors(root) {
  for (const e of root.querySelectorAll('.field-error, .action-error')) showError(e, null);
}

function actionError() {
  const p = h('p.action-error', { role: 'alert' });
  p.hidden = true;
  return p;
}

// ---- dialogs ----

/**
 * A modal dialog: `fields` (nodes), an OK button running `onOk` (which may throw an
 * ApiError: shown in the dialog, which stays open). Escape or Cancel closes it.
 */
function dialog({ title, fields = [], okText = 'OK', onOk, errorFor }) {
  const err = actionError();
  const ok = h('button.primary', { type: 'submit', text: okText });
  const cancel = h('button', { type: 'button', text: 'Cancel' });
  const titleId = nextId('dlg');
  const form = h('form.dialog-form', { novalidate: true },
    h('h2', { id: titleId, text: title }), ...fields, err,
    h('div.dialog-actions', ok, cancel));
  const dlg = h('dialog', { 'aria-labelledby': titleId }, form);
  // Focus goes back where it was (the button that opened the dialog) when it closes.
  const opener = document.activeElement;
  const close = () => {
    dlg.close();
    dlg.remove();
  };
  cancel.addEventListener('click', close);
  dlg.addEventListener('close', () => {
    dlg.remove();
    if (opener && opener.isConnected && !document.querySelector('dialog[open]')) opener.focus();
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(dlg);
    ok.disabled = true;
    try {
      await onOk();
      close();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      const slot = errorFor ? errorFor(e) : null;
      showError(slot || err, e);
    } finally {
      ok.disabled = false;
    }
  });
  document.body.append(dlg);
  dlg.showModal();
  const first = dlg.querySelector('input:not([type=hidden]):not([disabled]), select, textarea');
  (first || ok).focus();
  return dlg;
}

function confirmDialog(title, text, onOk) {
  return dialog({ title, fields: [h('p', { text })], okText: 'OK', onOk });
}


// ---- the page's main area (the shell in app.js owns it) ----

let shellMain = null;

function setMain(el) {
  shellMain = el;
}

/** Start a page: its title (focused, for screen readers), a poll error line; its actions bar. */
function page(title, ...kids) {
  const h1 = h('h1', { tabindex: '-1', text: title });
  const pollErr = h('p.action-error#poll-error', { role: 'status' });
  pollErr.hidden = true;
  fill(shellMain, h('div.page-head', h1, h('div.page-actions')), pollErr, ...kids);
  h1.focus();
  return shellMain.querySelector('.page-actions');
}

/** Go to a route (again, if it is the current one). */
function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}

// ---- shared pieces ----

const inventory = {
  async vpcs() {
    return (await api.request('GET', `${api.pid()}/vpcs`)).vpcs || [];
  },
  async subnets(vpcId) {
    return (await api.request('GET', `${api.pid()}/subnets`, { query: { vpc_id: vpcId } })).subnets || [];
  },
  async ports() {
    return (await api.request('GET', `${api.pid()}/ports`)).ports || [];
  },
};

const vpcNames = new Map();
async function loadVpcNames() {
  try {
    for (const v of await inventory.vpcs()) vpcNames.set(v.id, v.name || v.id);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
  }
}
function vpcLabel(id) {
  const n = vpcNames.get(id);
  return n && n !== id ? `${n} (${id})` : id || '--';
}

function pager(onChange) {
  const state = { offset: 0, limit: PAGE_SIZES[0], total: 0 };
  const prev = h('button', { type: 'button', text: 'Previous' });
  const next = h('button', { type: 'button', text: 'Next' });
  const info = h('span.pager-info', { 'aria-live': 'polite' });
  const size = select(PAGE_SIZES.map((n) => [String(n), `${n} per page`]), { 'aria-label': 'Page size' });
  prev.addEventListener('click', () => { state.offset = Math.max(0, state.offset - state.limit); onChange(); });
  next.addEventListener('click', () => { state.offset += state.limit; onChange(); });
  size.addEventListener('change', () => { state.limit = Number(size.value); state.offset = 0; onChange(); });
  const el = h('div.pager', prev, info, next, size);
  state.el = el;
  state.update = (total) => {
    state.total = total;
    if (state.offset >= total && total > 0) {
      state.offset = Math.floor((total - 1) / state.limit) * state.limit;
      onChange();
      return;
    }
    const pages = Math.max(1, Math.ceil(total / state.limit));
    setText(info, `Page ${Math.floor(state.offset / state.limit) + 1} of ${pages} · Total records: ${total}`);
    prev.disabled = state.offset === 0;
    next.disabled = state.offset + state.limit >= total;
  };
  return state;
}

function table(headers, opts = {}) {
  const tbody = h('tbody');
  const t = h('table.grid', opts.label ? { 'aria-label': opts.label } : {},
    h('thead', h('tr', headers.map((x) => (x instanceof Node ? h('th', { scope: 'col' }, x) : h('th', { scope: 'col', text: x }))))),
    tbody);
  return { el: h('div.table-wrap', t), tbody, cols: headers.length };
}

/** Left and right arrows (Home, End) move along a tablist, as the ARIA tabs pattern has it. */
function arrowTabs(tablist) {
  tablist.addEventListener('keydown', (ev) => {
    const tabs = [...tablist.querySelectorAll('[role=tab]')];
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[ev.key];
    if (next === undefined) return;
    ev.preventDefault();
    tabs[(next + tabs.length) % tabs.length].focus();
  });
  return tablist;
}

/** A checkbox column: a "select all" box and the set of selected keys. */
function selection(label, onChange) {
  const selected = new Set();
  const all = h('input', { type: 'checkbox', 'aria-label': `Select all ${label}` });
  const boxes = new Map();
  all.addEventListener('change', () => {
    for (const [k, b] of boxes) {
      b.checked = all.checked;
      if (all.checked) selected.add(k); else selected.delete(k);
    }
    onChange();
  });
  return {
    selected,
    all,
    box(key, name) {
      const b = h('input', { type: 'checkbox', 'aria-label': `Select ${name}` });
      b.addEventListener('change', () => {
        if (b.checked) selected.add(key); else selected.delete(key);
        onChange();
      });
      boxes.set(key, b);
      return b;
    },
    prune(keys) {
      for (const k of [...selected]) if (!keys.has(k)) selected.delete(k);
      for (const k of [...boxes.keys()]) if (!keys.has(k)) boxes.delete(k);
      all.checked = boxes.size > 0 && selected.size === boxes.size;
      onChange();
    },
    clear() {
      selected.clear();
      for (const b of boxes.values()) b.checked = false;
      all.checked = false;
      onChange();
    },
  };
}

/** Rows of key/value tag inputs with Add Tag. */
function tagRows() {
  const rows = h('div.rows');
  const err = h('p.field-error', { role: 'alert' });
  err.hidden = true;
  const add = () => {
    const k = h('input', { id: nextId('tagk') });
    const v = h('input', { id: nextId('tagv') });
    const row = h('div.row', field('Tag key', k), field('Tag value', v),
      h('button.link', { type: 'button', text: 'Remove', on: { click: () => row.remove() } }));
    rows.append(row);
    k.focus();
  };
  const el = h('fieldset.group', h('legend', 'Tags'), rows,
    h('button', { type: 'button', text: 'Add Tag', on: { click: add } }), err);
  return {
    el,
    err,
    value() {
      return [...rows.querySelectorAll('.row')].map((r) => {
        const [k, v] = r.querySelectorAll('input');
        return { key: k.value.trim(), value: v.value.trim() };
      }).filter((t) => t.key || t.value);
    },
  };
}

// A list's search form: a labelled search box; `onSearch(text)` on submit.
function searchForm(id, label, onSearch) {
  const input = h('input', { type: 'search', id, placeholder: 'Endpoint service name' });
  const form = h('form.search', { role: 'search', novalidate: true },
    h('label', { for: id, text: label }), input, h('button', { type: 'submit', text: 'Search' }));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    onSearch(input.value.trim());
  });
  return form;
}

// GET `path` for a detail page. A 404 replaces the page with "`what` not found" and a link
// `back` (and ends the page's life): then null.
async function getOrGone(path, mine, what, back, backText) {
  try {
    return await api.request('GET', path);
  } catch (x) {
    if (x instanceof ApiError && x.status === 404) {
      if (mine.alive) fill(shellMain, h('h1', `${what} not found`), h('p', h('a', { href: back, text: backText })));
      mine.alive = false;
      return null;
    }
    throw x;
  }
}

// ---- traffic ----

const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, ...kids) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  for (const k of kids) el.append(k);
  return el;
}

function count(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)} k`;
  return String(Math.round(n));
}

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function dropsOf(totals) {
  return Object.values(totals.drops || {}).reduce((a, b) => a + b, 0);
}

// Rates per second between consecutive samples (the samples are running totals).
function rates(samples, pick) {
  const out = [];
  for (let i = 1; i < samples.length; i += 1) {
    const dt = Math.max(1, samples[i].at - samples[i - 1].at);
    out.push({ at: samples[i].at, v: Math.max(0, pick(samples[i]) - pick(samples[i - 1])) / dt });
  }
  return out;
}

// A line chart of `series` ([{ name, cls, points: [{at, v}] }]) over the last samples.
function lineChart(series, unit) {
  const W = 560; const H = 140; const L = 48; const B = 18;
  const all = series.flatMap((s) => s.points);
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': `${series.map((s) => s.name).join(', ')} (${unit})` });
  if (all.length < 1) {
    g.append(svg('text', { x: W / 2, y: H / 2, class: 'chart-empty', 'text-anchor': 'middle' }, 'No samples yet: the chart starts with the second (one every 10 s), once the endpoint carries traffic'));
    return g;
  }
  const t0 = Math.min(...all.map((p) => p.at)); const t1 = Math.max(...all.map((p) => p.at));
  const top = Math.max(1, ...all.map((p) => p.v));
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - 8);
  const y = (v) => H - B - (v / top) * (H - B - 8);
  g.append(svg('line', { x1: L, y1: H - B, x2: W - 8, y2: H - B, class: 'axis' }));
  g.append(svg('text', { x: L - 4, y: 12, class: 'tick', 'text-anchor': 'end' }, count(top)));
  g.append(svg('text', { x: L - 4, y: H - B, class: 'tick', 'text-anchor': 'end' }, '0'));
  g.append(svg('text', { x: W - 8, y: H - 4, class: 'tick', 'text-anchor': 'end' }, 'now'));
  g.append(svg('text', { x: L, y: H - 4, class: 'tick' }, `${Math.round((t1 - t0) / 60)} min ago`));
  for (const s of series) {
    const pts = s.points.map((p) => `${x(p.at).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
    g.append(svg('polyline', { points: pts, class: `line ${s.cls}` }));
  }
  return g;
}

function legend(series) {
  return h('p.legend', ...series.map((s) => h(`span.key.${s.cls}`, s.name)));
}

function totalsList(t) {
  const dl = h('dl.props.traffic-totals');
  const add = (k, v) => dl.append(h('dt', k), h('dd', v));
  add('Packets (to service / to client)', `${count(t.packets_to_service)} / ${count(t.packets_to_client)}`);
  add('Bytes (to service / to client)', `${bytes(t.bytes_to_service)} / ${bytes(t.bytes_to_client)}`);
  add('Active Flows', count(t.active_flows));
  add('Flows Opened', count(t.flows_opened));
  const drops = Object.entries(t.drops || {});
  add('Drops', drops.length ? drops.map(([r, n]) => `${r.replaceAll('_', ' ')}: ${count(n)}`).join(', ') : '0');
  add('Resets (to service / to client)', `${count(t.resets_to_service)} / ${count(t.resets_to_client)}`);
  return dl;
}

// The traffic section of an endpoint's page (`kind` 'endpoint': totals and charts of the
// last hour from GET .../vpc-endpoints/{id}/metrics) or of a service's Connection
// Management tab ('connections': each connection's totals from GET
// .../vpc-endpoint-services/{id}/metrics). `resource` is the endpoint's or the service's
// path; `el` is the section; `refresh()` reads again.
function traffic(kind, resource) {
  const body = h('div.traffic-body', h('p.muted', 'Loading traffic...'));
  const el = h('section.traffic', { 'aria-label': 'Traffic', 'data-chart': kind }, h('h2', 'Traffic'), body);
  const path = `${resource}/metrics`;
  const byConnection = table(['Endpoint ID', 'Packets (to service / to client)', 'Bytes (to service / to client)', 'Active Flows', 'Drops'], { label: 'Traffic by connection' });
  async function refresh() {
    const m = await api.request('GET', path);
    if (kind === 'endpoint') {
      const s = m.samples || [];
      const packets = [
        { name: 'Packets/s to service', cls: 'to-service', points: rates(s, (x) => x.packets_to_service) },
        { name: 'Packets/s to client', cls: 'to-client', points: rates(s, (x) => x.packets_to_client) },
      ];
      const flows = [
        { name: 'Active flows', cls: 'flows', points: s.map((x) => ({ at: x.at, v: x.active_flows })) },
        { name: 'Drops/s', cls: 'drops', points: rates(s, (x) => x.drops) },
      ];
      fill(body, totalsList(m.totals),
        lineChart(packets, 'packets per second'), legend(packets),
        lineChart(flows, 'flows, drops per second'), legend(flows),
        h('p.muted', `Samples every ${m.interval_secs} s over the last hour; figures of the node that carries the endpoint.`));
    } else {
      const cells = (c) => [
        h('td', h('code', c.endpoint_id)),
        h('td', `${count(c.totals.packets_to_service)} / ${count(c.totals.packets_to_client)}`),
        h('td', `${bytes(c.totals.bytes_to_service)} / ${bytes(c.totals.bytes_to_client)}`),
        h('td', count(c.totals.active_flows)),
        h('td', count(dropsOf(c.totals)))];
      syncRows(byConnection.tbody, m.connections || [], (c) => c.endpoint_id,
        () => h('tr'), (tr, c) => fill(tr, ...cells(c)), 'No traffic yet.', byConnection.cols);
      fill(body, totalsList(m.totals), byConnection.el);
    }
  }
  return { el, refresh };
}

function tagsTab(panel, resourceType, id, getTags) {
  const addBtn = h('button.primary', { type: 'button', text: 'Add Tag' });
  const err = actionError();
  const t = table(['Key', 'Value', 'Operation'], { label: 'Tags' });
  panel.append(h('div.toolbar', addBtn, err), t.el);
  const path = `${api.pid()}/${resourceType}/${encodeURIComponent(id)}/tags/action`;
  addBtn.addEventListener('click', () => {
    const k = h('input', { id: nextId('tk') });
    const v = h('input', { id: nextId('tv') });
    dialog({
      title: 'Add Tag',
      fields: [field('Key', k), field('Value', v)],
      errorFor: (e) => (/value/i.test(e.message) ? errorSlot(v) : errorSlot(k)),
      onOk: async () => {
        await api.request('POST', path, { body: { action: 'create', tags: [{ key: k.value.trim(), value: v.value.trim() }] } });
        await refreshAll();
      },
    });
  });
  let refreshAll = async () => {};
  const mine = life;
  async function refresh() {
    if (!mine.alive) return;
    const tags = (getTags() || []).filter((x) => !x.key.startsWith('vpcep:'));
    syncRows(t.tbody, tags, (x) => x.key, (x) => h('tr', h('td'), h('td'),
      h('td', h('button.link', {
        type: 'button', text: 'Delete', 'aria-label': `Delete tag ${x.key}`,
        on: {
          click: () => confirmDialog('Delete Tag', `Are you sure you want to delete the tag ${x.key}?`, async () => {
            await api.request('POST', path, { body: { action: 'delete', tags: [{ key: x.key }] } });
            await refreshAll();
          }),
        },
      }))), (tr, x) => {
      setText(tr.cells[0], x.key);
      setText(tr.cells[1], x.value);
    }, 'No tags.', t.cols);
  }
  const f = async () => refresh();
  f.setRefreshAll = (fn) => { refreshAll = async () => { await fn(); await refresh(); }; };
  return f;
}

export {
  arrowTabs,
  previousHash,
  BACKEND_TYPE,
  CLIENT_IDENTITY,
  DURATIONS,
  ENDPOINT_STATUS,
  EXTENSIONS,
  PAGE_SIZES,
  POLL_MS,
  SERVICE_STATUS,
  actionError,
  clearErrors,
  confirmDialog,
  dialog,
  getOrGone,
  go,
  int,
  inventory,
  life,
  loadVpcNames,
  newLife,
  page,
  pager,
  placeError,
  poll,
  portsText,
  searchForm,
  selection,
  setMain,
  setWhen,
  shellMain,
  statusBadge,
  table,
  tagRows,
  tagsTab,
  tenantOf,
  traffic,
  updateBadge,
  vpcLabel,
  vpcNames,
  when,
};
