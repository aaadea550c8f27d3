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

function traffic(kind) {
  // The traffic chart (packets, bytes, active flows, drops over the last minutes) will be
  // drawn here from GET .../vpc-endpoints/{id}/metrics once it exists; nothing is fetched yet.
  return h('section.traffic', { 'aria-label': 'Traffic', 'data-chart': kind },
    h('h2', 'Traffic'),
    h('div.chart-placeholder#traffic-chart', { 'data-metrics': 'pending' },
      h('p.muted', 'Traffic monitoring (packets, bytes, active flows, drops) will be shown here.')));
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
