// The VPC Endpoint console: hash routes, pages in the user guide's words (chapters 4-6),
// live state by polling while a page is open. Plain ES modules, no build step.

import * as api from './api.js';
import { ApiError } from './api.js';
import { h, fill, setText, nextId, syncRows, field, showError, errorSlot, select, setOptions } from './dom.js';

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

function newLife() {
  life.alive = false;
  for (const t of life.timers) clearTimeout(t);
  life = { alive: true, timers: [] };
  return life;
}

/** Run `fn` now and every POLL_MS while this page is open (never two at once). */
function poll(fn) {
  const mine = life;
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
  const close = () => {
    dlg.close();
    dlg.remove();
  };
  cancel.addEventListener('click', close);
  dlg.addEventListener('close', () => dlg.remove());
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

// ---- the shell ----

const root = document.getElementById('app');
let shellMain = null;
let closeMenuOutside = () => {};
document.addEventListener('click', (ev) => closeMenuOutside(ev));
document.addEventListener('focusin', (ev) => closeMenuOutside(ev));

function shell() {
  const s = api.current();
  const menuBtn = h('button.user-button', { type: 'button', 'aria-haspopup': 'true', 'aria-expanded': 'false', text: s.userName || 'Account' });
  const menu = h('ul.user-menu', { role: 'menu' },
    h('li', { role: 'none' }, h('a', { href: '#/settings', role: 'menuitem', text: 'My Settings' })),
    h('li', { role: 'none' }, h('button', { type: 'button', role: 'menuitem', text: 'Sign Out', on: { click: () => api.signOut() } })));
  menu.hidden = true;
  const toggle = (open) => {
    menu.hidden = !open;
    menuBtn.setAttribute('aria-expanded', String(open));
  };
  menuBtn.addEventListener('click', () => {
    toggle(menu.hidden);
    if (!menu.hidden) menu.querySelector('a,button').focus();
  });
  menu.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape') {
      toggle(false);
      menuBtn.focus();
    }
  });
  menu.addEventListener('click', () => toggle(false));
  // A click or focus elsewhere closes the menu (one listener for the page's life).
  closeMenuOutside = (ev) => {
    if (!menu.hidden && !menu.parentNode.contains(ev.target)) toggle(false);
  };
  shellMain = h('main#main', { tabindex: '-1' });
  const navLink = (href, text) => h('li', h('a', { href, text }));
  fill(root,
    h('a.skip', { href: '#main', text: 'Skip to content', on: { click: (ev) => { ev.preventDefault(); shellMain.focus(); } } }),
    h('header.topbar',
      h('span.brand', 'VPC Endpoint'),
      h('span.project', { text: `Project ${s.projectId || ''}` }),
      h('div.user', menuBtn, menu)),
    h('div.body',
      h('nav.sidenav', { 'aria-label': 'Network Console' },
        h('p.nav-title', 'Network Console'),
        h('p.nav-group', { id: 'nav-vpcep' }, 'VPC Endpoint'),
        h('ul', { 'aria-labelledby': 'nav-vpcep' },
          navLink('#/services', 'VPC Endpoint Services'),
          navLink('#/endpoints', 'VPC Endpoints'))),
      shellMain));
}

function markNav(hash) {
  for (const a of root.querySelectorAll('.sidenav a')) {
    const on = hash.startsWith(a.getAttribute('href'));
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function page(title, ...kids) {
  const h1 = h('h1', { tabindex: '-1', text: title });
  const pollErr = h('p.action-error#poll-error', { role: 'status' });
  pollErr.hidden = true;
  fill(shellMain, h('div.page-head', h1, h('div.page-actions')), pollErr, ...kids);
  h1.focus();
  return shellMain.querySelector('.page-actions');
}

// ---- routing ----

let signedInRoute = '#/services';

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/services';
  const [path, q = ''] = raw.split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(q) };
}

async function route() {
  newLife();
  for (const d of document.querySelectorAll('dialog')) d.remove();
  if (!api.current()) {
    if (!location.hash.startsWith('#/signin')) signedInRoute = location.hash || '#/services';
    signIn();
    return;
  }
  if (!shellMain || !root.contains(shellMain)) shell();
  markNav(location.hash);
  const { parts, query } = parseHash();
  const [top, id, tab] = parts;
  if (top === 'services' && id === 'create') return createService();
  if (top === 'services' && id) return serviceDetail(id, tab || 'connections');
  if (top === 'services') return servicesList();
  if (top === 'endpoints' && id === 'apply') return applyEndpoint(query.get('category') || 'name');
  if (top === 'endpoints' && id) return endpointDetail(id);
  if (top === 'endpoints') return endpointsList();
  if (top === 'settings') return settings();
  if (top === 'signin') {
    location.hash = '#/services';
    return undefined;
  }
  page('Page not found');
  return undefined;
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// ---- sign-in (guide 6.2) ----

function signIn(reason) {
  shellMain = null;
  const user = h('input', { autocomplete: 'username', name: 'username' });
  const pass = h('input', { type: 'password', autocomplete: 'current-password', name: 'password' });
  const domain = h('input', { name: 'domain' });
  const project = h('input', { name: 'project' });
  const ak = h('input', { autocomplete: 'off', name: 'ak' });
  const sk = h('input', { type: 'password', autocomplete: 'off', name: 'sk' });
  const akProject = h('input', { name: 'ak-project' });
  const pwErr = actionError();
  const akErr = actionError();
  const pwForm = h('form.signin-form', { novalidate: true, 'aria-label': 'Log in with a password' },
    field('Username', user), field('Password', pass),
    field('Domain (optional)', domain), field('Project ID (optional)', project),
    pwErr, h('button.primary', { type: 'submit', text: 'Log In' }));
  const akForm = h('form.signin-form', { novalidate: true, 'aria-label': 'Log in with an access key' },
    field('Access Key ID', ak), field('Secret Access Key', sk), field('Project ID', akProject),
    akErr, h('button.primary', { type: 'submit', text: 'Log In with Access Key' }));
  akForm.hidden = true;
  const tabPw = h('button', { type: 'button', role: 'tab', 'aria-selected': 'true', text: 'Password' });
  const tabAk = h('button', { type: 'button', role: 'tab', 'aria-selected': 'false', text: 'Access Key' });
  const pick = (pw) => {
    pwForm.hidden = !pw;
    akForm.hidden = pw;
    tabPw.setAttribute('aria-selected', String(pw));
    tabAk.setAttribute('aria-selected', String(!pw));
    (pw ? user : ak).focus();
  };
  tabPw.addEventListener('click', () => pick(true));
  tabAk.addEventListener('click', () => pick(false));
  const done = () => {
    const to = signedInRoute && !signedInRoute.startsWith('#/signin') ? signedInRoute : '#/services';
    shellMain = null;
    if (location.hash === to) route();
    else location.hash = to;
  };
  const submit = (form, errSlot, fn) => form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    showError(errSlot, null);
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    try {
      await fn();
      done();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      showError(errSlot, e);
    } finally {
      btn.disabled = false;
    }
  });
  submit(pwForm, pwErr, () => api.signInPassword(user.value.trim(), pass.value, domain.value.trim(), project.value.trim()));
  submit(akForm, akErr, () => api.signInKeys(ak.value.trim(), sk.value, akProject.value.trim()));
  const note = reason === 'expired' || reason === 'unauthorized'
    ? h('p.notice', { role: 'status', text: 'Your session has ended. Please log in again.' }) : null;
  fill(root, h('main.signin', { id: 'main' },
    h('h1', 'VPC Endpoint'),
    h('p.sub', 'Log in to the VPC Endpoint console'),
    note,
    h('div.tabs', { role: 'tablist', 'aria-label': 'Login method' }, tabPw, tabAk),
    pwForm, akForm));
  if (location.hash !== '#/signin') history.replaceState(null, '', '#/signin');
  user.focus();
}

api.onSessionEnd((reason) => {
  newLife();
  for (const d of document.querySelectorAll('dialog')) d.remove();
  if (reason !== 'signout') signedInRoute = location.hash;
  else signedInRoute = '#/services';
  signIn(reason);
});

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

// ---- VPC Endpoint Services (4.1, 5.1, 5.4) ----

async function servicesList() {
  const actions = page('VPC Endpoint Services');
  actions.append(h('button.primary', { type: 'button', text: 'Create Endpoint Service', on: { click: () => go('#/services/create') } }));
  const search = h('input', { type: 'search', id: 'svc-search', placeholder: 'Endpoint service name' });
  const searchForm = h('form.search', { role: 'search', novalidate: true },
    h('label', { for: 'svc-search', text: 'Search by name' }), search, h('button', { type: 'submit', text: 'Search' }));
  const t = table(['Name', 'ID', 'Status', 'Backend Resource Type', 'Connection Approval', 'Port Mapping', 'Created', 'Operation'], { label: 'Endpoint services' });
  const pg = pager(() => refresh());
  shellMain.append(searchForm, t.el, pg.el);
  let name = '';
  searchForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    name = search.value.trim();
    pg.offset = 0;
    refresh();
  });
  const mine = life;
  async function refresh() {
    const r = await api.request('GET', `${api.pid()}/vpc-endpoint-services`, {
      query: { endpoint_service_name: name, limit: pg.limit, offset: pg.offset },
    });
    if (!mine.alive) return;
    const list = r.endpoint_services || [];
    syncRows(t.tbody, list, (s) => s.id, (s) => {
      const err = actionError();
      return h('tr',
        h('td.wrap', h('a.name', { href: `#/services/${encodeURIComponent(s.id)}` })),
        h('td.mono.wrap'), h('td', statusBadge('service', s.status)), h('td'), h('td'), h('td'), h('td'),
        h('td', h('button.link', { type: 'button', text: 'Delete', 'aria-label': `Delete ${s.service_name}`, on: { click: () => deleteService(s, () => refresh()) } }), err));
    }, (tr, s) => {
      const c = tr.cells;
      setText(c[0].firstChild, s.service_name);
      setText(c[1], s.id);
      updateBadge(c[2].firstChild, SERVICE_STATUS, s.status);
      setText(c[3], BACKEND_TYPE[s.server_type] || s.server_type);
      setText(c[4], s.approval_enabled ? 'Enabled' : 'Disabled');
      setText(c[5], portsText(s.ports));
      setWhen(c[6], s.created_at);
    }, name ? 'No endpoint service matches that name.' : 'No endpoint services yet. Click Create Endpoint Service.', t.cols);
    pg.update(r.total_count ?? list.length);
  }
  await poll(refresh);
}

function deleteService(s, after) {
  confirmDialog('Delete Endpoint Service', `Are you sure you want to delete the endpoint service ${s.service_name}? Its endpoints lose their connection.`, async () => {
    await api.request('DELETE', `${api.pid()}/vpc-endpoint-services/${encodeURIComponent(s.id)}`);
    after();
  });
}

async function createService() {
  page('Create Endpoint Service');
  const name = h('input', { id: 'svc-name', maxlength: '16' });
  const vpc = select([], { id: 'svc-vpc' });
  const stype = select([['interface', 'Interface']], { id: 'svc-type' });
  const approval = h('input', { type: 'checkbox', id: 'svc-approval', checked: true });
  const backendVm = h('input', { type: 'radio', name: 'backend', id: 'backend-vm', value: 'VM', checked: true });
  const backendLb = h('input', { type: 'radio', name: 'backend', id: 'backend-lb', value: 'LB' });
  const subnet = select([], { id: 'svc-subnet' });
  const ecs = select([], { id: 'svc-ecs' });
  const elb = select([], { id: 'svc-elb' });
  const tcpProxy = select(CLIENT_IDENTITY, { id: 'svc-tcp-proxy' });
  const desc = h('textarea', { id: 'svc-desc', rows: '2' });
  const maps = h('div.rows');
  const mapErr = h('p.field-error', { role: 'alert', id: 'svc-ports-error' });
  mapErr.hidden = true;
  const addMap = () => {
    if (maps.children.length >= 50) return;
    const proto = select([['TCP', 'TCP'], ['UDP', 'UDP']], { id: nextId('proto') });
    const sport = h('input', { inputmode: 'numeric', id: nextId('sport') });
    const cport = h('input', { inputmode: 'numeric', id: nextId('cport') });
    const row = h('div.row', field('Protocol', proto), field('Service Port', sport), field('Client Port', cport),
      h('button.link', { type: 'button', text: 'Remove', on: { click: () => row.remove() } }));
    maps.append(row);
    return sport;
  };
  addMap();
  const tags = tagRows();
  const formErr = actionError();
  const vmFields = h('div', field('Subnet', subnet), field('ECS', ecs));
  const lbFields = h('div', field('Elastic Load Balance', elb));
  lbFields.hidden = true;
  const create = h('button.primary', { type: 'submit', text: 'Create Now' });
  const form = h('form.form', { novalidate: true },
    field('Name', name, 'Optional. Up to 16 letters, digits, _ and -. The full name is Region ID.Name.Service ID.'),
    field('VPC', vpc),
    field('Service Type', stype),
    h('div.field.check', approval, h('label', { for: 'svc-approval', text: 'Connection Approval' }),
      h('p.hint', 'Endpoints connecting to this service need your acceptance.')),
    h('fieldset.group', h('legend', 'Port Mapping'), maps,
      h('button', { type: 'button', text: 'Add Port Mapping', on: { click: () => { const f = addMap(); if (f) f.focus(); } } }), mapErr),
    h('fieldset.group', h('legend', 'Backend Resource Type'),
      h('div.radio', backendVm, h('label', { for: 'backend-vm', text: 'Cloud Server' })),
      h('div.radio', backendLb, h('label', { for: 'backend-lb', text: 'Elastic Load Balance' }))),
    vmFields, lbFields,
    field('Client Identity', tcpProxy, 'How the backend learns the client: TOA (TCP option) and/or Proxy Protocol with the endpoint\'s packet ID.'),
    field('Description', desc),
    tags.el,
    formErr,
    h('div.form-actions', create, h('button', { type: 'button', text: 'Cancel', on: { click: () => go('#/services') } })));
  shellMain.append(form);
  name.focus();

  let ports = [];
  const fillBackends = async () => {
    const subs = vpc.value ? await inventory.subnets(vpc.value) : [];
    setOptions(subnet, subs.map((s) => [s.id, `${s.name || s.id} (${s.cidr})`]));
    const mine = ports.filter((p) => p.vpc_id === vpc.value);
    setOptions(ecs, mine.filter((p) => p.server_type === 'VM' && p.subnet_id === subnet.value)
      .map((p) => [p.id, `${p.name || p.id} (${p.ip})`]));
    setOptions(elb, mine.filter((p) => p.server_type === 'LB').map((p) => [p.id, `${p.name || p.id} (${p.ip})`]));
  };
  try {
    const [vpcs, ps] = await Promise.all([inventory.vpcs(), inventory.ports()]);
    ports = ps;
    setOptions(vpc, vpcs.map((v) => [v.id, `${v.name || v.id} (${v.cidr})`]));
    await fillBackends();
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    showError(formErr, e);
  }
  vpc.addEventListener('change', fillBackends);
  subnet.addEventListener('change', fillBackends);
  for (const r of [backendVm, backendLb]) {
    r.addEventListener('change', () => {
      vmFields.hidden = !backendVm.checked;
      lbFields.hidden = backendVm.checked;
    });
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const body = {
      vpc_id: vpc.value,
      service_type: stype.value,
      server_type: backendVm.checked ? 'VM' : 'LB',
      port_id: backendVm.checked ? ecs.value : elb.value,
      approval_enabled: approval.checked,
      tcp_proxy: tcpProxy.value,
      ports: [...maps.querySelectorAll('.row')].map((r) => {
        const [p] = r.querySelectorAll('select');
        const [s, c] = r.querySelectorAll('input');
        return { protocol: p.value, server_port: int(s.value), client_port: int(c.value) };
      }),
    };
    if (name.value.trim()) body.service_name = name.value.trim();
    if (desc.value.trim()) body.description = desc.value.trim();
    const tg = tags.value();
    if (tg.length) body.tags = tg;
    create.disabled = true;
    try {
      const s = await api.request('POST', `${api.pid()}/vpc-endpoint-services`, { body });
      go(`#/services/${encodeURIComponent(s.id)}`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      placeError(e, [
        [/port mapping|service port|client port|client_port|server_port|ports|protocol/, mapErr],
        [/port_id|backend|\bport\b/, errorSlot(backendVm.checked ? ecs : elb)],
        [/service_name|service name|\bname\b/, errorSlot(name)],
        [/vpc/, errorSlot(vpc)],
        [/tcp_proxy/, errorSlot(tcpProxy)],
        [/tag/, tags.err],
        [/description/, errorSlot(desc)],
      ], formErr);
    } finally {
      create.disabled = false;
    }
  });
}

async function serviceDetail(id, tab) {
  const base = `${api.pid()}/vpc-endpoint-services/${encodeURIComponent(id)}`;
  const actions = page('Endpoint Service');
  const h1 = shellMain.querySelector('h1');
  let svc = null;
  const delErr = actionError();
  actions.append(
    h('button', { type: 'button', text: 'Delete', on: { click: () => svc && deleteService(svc, () => go('#/services')) } }),
    delErr);
  shellMain.prepend(h('nav.crumbs', { 'aria-label': 'Breadcrumb' },
    h('a', { href: '#/services', text: 'VPC Endpoint Services' }), ' / ', h('span', { text: id })));

  // Basic Information (Table 5-1).
  const v = {};
  const dd = (key) => { v[key] = h('span.value'); return v[key]; };
  const row = (label, key, ...extra) => [h('dt', { text: label }), h('dd.with-actions', dd(key), ...extra)];
  const backendLabel = h('dt', 'Cloud Server');
  const associate = h('button.link', { type: 'button', text: 'Associate', on: { click: () => associateDialog() } });
  associate.hidden = true;
  const statusDd = h('span.status');
  const approvalBtn = h('button.link', { type: 'button', text: 'Change', 'aria-label': 'Change connection approval', on: { click: () => changeApproval() } });
  const proxyBtn = h('button.link', { type: 'button', text: 'Modify', 'aria-label': 'Modify client identity', on: { click: () => changeProxy() } });
  const descBtn = h('button.link', { type: 'button', text: 'Modify', 'aria-label': 'Modify description', on: { click: () => changeDescription() } });
  const reason = h('span.reason');
  const info = h('section.info', { 'aria-label': 'Basic Information' },
    h('h2', 'Basic Information'),
    h('dl.props',
      row('Name', 'name'),
      row('ID', 'id'),
      row('Backend Resource Type', 'type'),
      backendLabel, h('dd.with-actions', dd('backend'), associate),
      row('VPC', 'vpc'),
      h('dt', 'Status'), h('dd.with-actions', statusDd, reason),
      row('Connection Approval', 'approval', approvalBtn),
      row('Service Type', 'stype'),
      row('NIC', 'nic'),
      row('Client Identity', 'proxy', proxyBtn),
      row('Description', 'desc', descBtn),
      row('Created', 'created')));
  const tabs = [
    ['connections', 'Connection Management'],
    ['permissions', 'Permission Management'],
    ['ports', 'Port Mapping'],
    ['tags', 'Tags'],
  ];
  const tablist = h('div.tabs', { role: 'tablist', 'aria-label': 'Endpoint service details' },
    tabs.map(([k, label]) => h('a', {
      role: 'tab', href: `#/services/${encodeURIComponent(id)}/${k}`, 'aria-selected': String(k === tab), text: label,
    })));
  const panel = h('section.tab-panel', { role: 'tabpanel', 'aria-label': (tabs.find(([k]) => k === tab) || tabs[0])[1] });
  shellMain.append(info, tablist, panel);

  const portCache = new Map();
  async function portOf(portId) {
    if (!portId) return null;
    if (!portCache.has(portId)) {
      try {
        portCache.set(portId, (await api.request('GET', `${api.pid()}/ports/${encodeURIComponent(portId)}`)).port);
      } catch (e) {
        if (!(e instanceof ApiError) || e.status !== 404) throw e;
        portCache.set(portId, null);
      }
    }
    return portCache.get(portId);
  }
  await loadVpcNames();

  const mine = life;
  async function refreshInfo() {
    let s;
    try {
      s = await api.request('GET', base);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) {
        if (mine.alive) fill(shellMain, h('h1', 'Endpoint service not found'), h('p', h('a', { href: '#/services', text: 'Back to VPC Endpoint Services' })));
        mine.alive = false;
        return;
      }
      throw e;
    }
    if (!mine.alive) return;
    svc = s;
    setText(h1, s.service_name);
    setText(v.name, s.service_name);
    setText(v.id, s.id);
    setText(v.type, BACKEND_TYPE[s.server_type] || s.server_type);
    setText(backendLabel, s.server_type === 'LB' ? 'Elastic Load Balance' : 'Cloud Server');
    const port = s.status === 'suspended' ? null : await portOf(s.port_id);
    setText(v.backend, port ? `${port.name || port.id} (${port.id})` : '--');
    associate.hidden = s.status !== 'suspended';
    setText(v.vpc, vpcLabel(s.vpc_id));
    updateBadge(statusDd, SERVICE_STATUS, s.status);
    setText(reason, (s.error || []).map((e) => e.message || e.code).join('; '));
    setText(v.approval, s.approval_enabled ? 'Enabled' : 'Disabled');
    setText(v.stype, s.service_type === 'gateway' ? 'Gateway' : 'Interface');
    setText(v.nic, port ? port.ip : s.ip || '--');
    setText(v.proxy, (CLIENT_IDENTITY.find(([k]) => k === s.tcp_proxy) || [0, s.tcp_proxy])[1]);
    setText(v.desc, s.description || '--');
    setText(v.created, when(s.created_at));
  }

  const put = (body) => api.request('PUT', base, { body });
  function changeApproval() {
    const box = h('input', { type: 'checkbox', id: nextId('appr'), checked: svc.approval_enabled });
    dialog({
      title: 'Connection Approval',
      fields: [h('div.field.check', box, h('label', { for: box.id, text: 'Connection Approval' }))],
      onOk: async () => { await put({ approval_enabled: box.checked }); await refreshInfo(); },
    });
  }
  function changeProxy() {
    const s = select(CLIENT_IDENTITY, { id: nextId('proxy') });
    s.value = svc.tcp_proxy;
    dialog({
      title: 'Modify Client Identity',
      fields: [field('Client Identity', s)],
      onOk: async () => { await put({ tcp_proxy: s.value }); await refreshInfo(); },
    });
  }
  function changeDescription() {
    const t = h('textarea', { id: nextId('desc'), rows: '3' });
    t.value = svc.description || '';
    dialog({
      title: 'Modify Description',
      fields: [field('Description', t)],
      errorFor: () => errorSlot(t),
      onOk: async () => { await put({ description: t.value.trim() }); await refreshInfo(); },
    });
  }
  async function associateDialog() {
    // Guide 6.7: a new backend of the same type as the original one.
    const lb = svc.server_type === 'LB';
    const ports = (await inventory.ports()).filter((p) => p.vpc_id === svc.vpc_id && p.server_type === svc.server_type);
    const subs = await inventory.subnets(svc.vpc_id);
    const subnet = select(subs.map((s) => [s.id, `${s.name || s.id} (${s.cidr})`]), { id: nextId('asub') });
    const target = select([], { id: nextId('aport') });
    const fillPorts = () => setOptions(target, ports.filter((p) => lb || p.subnet_id === subnet.value)
      .map((p) => [p.id, `${p.name || p.id} (${p.ip})`]));
    fillPorts();
    subnet.addEventListener('change', fillPorts);
    dialog({
      title: 'Associate',
      fields: lb ? [field('Elastic Load Balance', target)] : [field('Subnet', subnet), field('ECS', target)],
      errorFor: () => errorSlot(target),
      onOk: async () => {
        await put({ port_id: target.value });
        portCache.clear();
        await refreshInfo();
      },
    });
  }

  const tabRefresh = {
    connections: connectionsTab,
    permissions: permissionsTab,
    ports: portsTab,
    tags: (p) => tagsTab(p, 'endpoint_service', id, () => svc && svc.tags),
  }[tab] || connectionsTab;
  const refreshTab = tabRefresh(panel, base, () => svc, refreshInfo);
  if (refreshTab.setRefreshAll) refreshTab.setRefreshAll(refreshInfo);
  await poll(async () => {
    await refreshInfo();
    if (mine.alive) await refreshTab();
  });
}

function connectionsTab(panel, base) {
  const err = actionError();
  const acceptBtn = h('button', { type: 'button', text: 'Accept', disabled: true });
  const rejectBtn = h('button', { type: 'button', text: 'Reject', disabled: true });
  const sel = selection('connections', () => {
    acceptBtn.disabled = rejectBtn.disabled = sel.selected.size === 0;
  });
  const t = table([sel.all, 'Endpoint ID', 'Packet ID', 'Status', 'Owner', 'Description', 'Created', 'Operation'], { label: 'Connections' });
  const statusFilter = select([['', 'All statuses'], ...Object.entries(ENDPOINT_STATUS).filter(([k]) => ['pendingAcceptance', 'accepted', 'rejected', 'failed'].includes(k))], { id: 'conn-status' });
  panel.append(
    h('div.toolbar', acceptBtn, rejectBtn,
      h('label', { for: 'conn-status', text: 'Status' }), statusFilter, err),
    t.el, traffic('connections'));
  const decide = async (action, ids, slot) => {
    showError(slot, null);
    const failed = [];
    for (const epId of ids) {
      try {
        await api.request('POST', `${base}/connections/action`, { body: { action, endpoints: [epId] } });
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        failed.push(e);
      }
    }
    if (failed.length) {
      const e = failed[0];
      showError(slot, failed.length > 1 ? new ApiError(e.status, e.code, `${e.message} (${failed.length} of ${ids.length} failed)`) : e);
    }
    await refresh();
  };
  acceptBtn.addEventListener('click', async () => { await decide('receive', [...sel.selected], err); sel.clear(); });
  rejectBtn.addEventListener('click', async () => { await decide('reject', [...sel.selected], err); sel.clear(); });
  statusFilter.addEventListener('change', () => refresh());
  const editDesc = (c) => {
    const t2 = h('textarea', { id: nextId('cdesc'), rows: '3' });
    t2.value = c.description || '';
    dialog({
      title: 'Edit Description',
      fields: [field('Description', t2)],
      errorFor: () => errorSlot(t2),
      onOk: async () => {
        await api.request('PUT', `${base}/connections/description`, { body: { connections: [{ id: c.id, description: t2.value.trim() }] } });
        await refresh();
      },
    });
  };
  const mine = life;
  async function refresh() {
    const r = await api.request('GET', `${base}/connections`, { query: { status: statusFilter.value, limit: 1000 } });
    if (!mine.alive) return;
    const list = r.connections || [];
    syncRows(t.tbody, list, (c) => c.id, (c) => {
      const rowErr = actionError();
      return h('tr',
        h('td', sel.box(c.id, c.id)), h('td.mono'), h('td.mono'), h('td', statusBadge('endpoint', c.status)), h('td.mono'), h('td.wrap'), h('td'),
        h('td.ops',
          h('button.link', { type: 'button', text: 'Accept', 'aria-label': `Accept ${c.id}`, on: { click: () => decide('receive', [c.id], rowErr) } }),
          h('button.link', { type: 'button', text: 'Reject', 'aria-label': `Reject ${c.id}`, on: { click: () => decide('reject', [c.id], rowErr) } }),
          h('button.link', { type: 'button', text: 'Edit Description', 'aria-label': `Edit description of ${c.id}`, on: { click: () => editDesc(c) } }),
          rowErr));
    }, (tr, c) => {
      const cells = tr.cells;
      setText(cells[1], c.id);
      setText(cells[2], c.marker_id);
      updateBadge(cells[3].firstChild, ENDPOINT_STATUS, c.status);
      setText(cells[4], c.domain_id);
      setText(cells[5], c.description || '');
      setWhen(cells[6], c.created_at);
    }, 'No endpoint has connected to this service yet.', t.cols);
    sel.prune(new Set(list.map((c) => c.id)));
  }
  return refresh;
}

function permissionsTab(panel, base) {
  const err = actionError();
  const delBtn = h('button', { type: 'button', text: 'Delete', disabled: true });
  const sel = selection('authorized tenants', () => { delBtn.disabled = sel.selected.size === 0; });
  const addBtn = h('button.primary', { type: 'button', text: 'Add More' });
  const t = table([sel.all, 'Authorized Tenant ID', 'Description', 'Created', 'Operation'], { label: 'Whitelist' });
  panel.append(h('p.hint', 'Tenants on the whitelist can see this endpoint service and connect to it. Enter * to allow every tenant. Tenants find their ID under My Settings.'),
    h('div.toolbar', addBtn, delBtn, err), t.el);
  // GET .../permissions carries no description (API.md 6.4: only the batch answers do), so
  // the descriptions this page has seen are kept for its life.
  const known = new Map();
  const remove = async (ids, slot) => {
    await api.request('POST', `${base}/permissions/batch-delete`, { body: { permissions: ids.map((x) => ({ id: x })) } });
    showError(slot, null);
    await refresh();
  };
  addBtn.addEventListener('click', () => {
    const tenant = h('input', { id: nextId('tenant') });
    const desc = h('input', { id: nextId('pdesc') });
    dialog({
      title: 'Add More',
      fields: [field('Authorized Tenant ID', tenant, 'A tenant (domain) ID, *, or organizations:orgPath::<path>.'), field('Description', desc)],
      errorFor: (e) => (/description/i.test(e.message) ? errorSlot(desc) : errorSlot(tenant)),
      onOk: async () => {
        const raw = tenant.value.trim();
        const org = raw.startsWith('organizations:');
        const permission = org || raw.startsWith('iam:') ? raw : `iam:domain::${raw}`;
        const entry = { permission };
        if (desc.value.trim()) entry.description = desc.value.trim();
        const r = await api.request('POST', `${base}/permissions/batch-create`, { body: { permissions: [entry], permission_type: org ? 'orgPath' : 'domainId' } });
        for (const p of (r && r.permissions) || []) if (p.id && p.description) known.set(p.id, p.description);
        await refresh();
      },
    });
  });
  delBtn.addEventListener('click', () => {
    const ids = [...sel.selected];
    confirmDialog('Delete', `Are you sure you want to delete ${ids.length} authorized tenant(s) from the whitelist?`, async () => {
      await remove(ids, err);
      sel.clear();
    });
  });
  const mine = life;
  async function refresh() {
    const r = await api.request('GET', `${base}/permissions`, { query: { limit: 500 } });
    if (!mine.alive) return;
    const list = r.permissions || [];
    syncRows(t.tbody, list, (p) => p.id, (p) => h('tr',
      h('td', sel.box(p.id, tenantOf(p.permission))), h('td.mono'), h('td.wrap'), h('td'),
      h('td', h('button.link', {
        type: 'button', text: 'Delete', 'aria-label': `Delete ${tenantOf(p.permission)}`,
        on: { click: () => confirmDialog('Delete', `Are you sure you want to delete ${tenantOf(p.permission)} from the whitelist?`, () => remove([p.id], err)) },
      }))), (tr, p) => {
      setText(tr.cells[1], tenantOf(p.permission));
      setText(tr.cells[2], p.description || known.get(p.id) || '');
      setWhen(tr.cells[3], p.created_at);
    }, 'The whitelist is empty: only your own tenant can see this service.', t.cols);
    sel.prune(new Set(list.map((p) => p.id)));
  }
  return refresh;
}

function portsTab(panel, base, getSvc, refreshInfo) {
  const addBtn = h('button.primary', { type: 'button', text: 'Add Port Mapping' });
  const err = actionError();
  const t = table(['Protocol', 'Service Port', 'Client Port', 'Operation'], { label: 'Port mappings' });
  panel.append(h('div.toolbar', addBtn, err), t.el);
  const key = (m) => `${m.protocol || 'TCP'}:${m.server_port}:${m.client_port}`;
  const save = async (ports) => {
    await api.request('PUT', base, { body: { ports } });
    await refreshInfo();
    await refresh();
  };
  const edit = (orig) => {
    const proto = select([['TCP', 'TCP'], ['UDP', 'UDP']], { id: nextId('mproto') });
    const sport = h('input', { id: nextId('msport'), inputmode: 'numeric' });
    const cport = h('input', { id: nextId('mcport'), inputmode: 'numeric' });
    if (orig) {
      proto.value = orig.protocol || 'TCP';
      sport.value = orig.server_port;
      cport.value = orig.client_port;
    }
    dialog({
      title: orig ? 'Modify Port Mapping' : 'Add Port Mapping',
      fields: [field('Protocol', proto), field('Service Port', sport), field('Client Port', cport)],
      errorFor: (e) => (/client/i.test(e.message) ? errorSlot(cport) : /service|server/i.test(e.message) ? errorSlot(sport) : null),
      onOk: async () => {
        const cur = (getSvc().ports || []).map((m) => ({ protocol: m.protocol || 'TCP', server_port: m.server_port, client_port: m.client_port }));
        const next = { protocol: proto.value, server_port: int(sport.value), client_port: int(cport.value) };
        const ports = orig ? cur.map((m) => (key(m) === key(orig) ? next : m)) : [...cur, next];
        await save(ports);
      },
    });
  };
  addBtn.addEventListener('click', () => edit(null));
  const mine = life;
  async function refresh() {
    const s = getSvc();
    if (!s || !mine.alive) return;
    syncRows(t.tbody, s.ports || [], key, (m) => h('tr', h('td'), h('td'), h('td'),
      h('td.ops',
        h('button.link', { type: 'button', text: 'Modify', 'aria-label': `Modify ${key(m)}`, on: { click: () => edit(m) } }),
        h('button.link', {
          type: 'button', text: 'Delete', 'aria-label': `Delete ${key(m)}`,
          on: {
            click: () => confirmDialog('Delete Port Mapping', `Are you sure you want to delete the port mapping ${m.protocol || 'TCP'} ${m.server_port} → ${m.client_port}?`,
              () => save((getSvc().ports || []).filter((x) => key(x) !== key(m)))),
          },
        }))), (tr, m) => {
      setText(tr.cells[0], m.protocol || 'TCP');
      setText(tr.cells[1], m.server_port);
      setText(tr.cells[2], m.client_port);
    }, 'No port mappings.', t.cols);
  }
  return refresh;
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

// ---- VPC Endpoints (4.3, 5.5, 5.6) ----

async function endpointsList() {
  const actions = page('VPC Endpoints');
  actions.append(h('button.primary', { type: 'button', text: 'Apply for Endpoint', on: { click: selectServiceDialog } }));
  const search = h('input', { type: 'search', id: 'ep-search', placeholder: 'Endpoint service name' });
  const searchForm = h('form.search', { role: 'search', novalidate: true },
    h('label', { for: 'ep-search', text: 'Search by service name' }), search, h('button', { type: 'submit', text: 'Search' }));
  const t = table(['ID', 'Status', 'Endpoint Service Name', 'VPC', 'IP Address', 'Expires', 'Created', 'Operation'], { label: 'Endpoints' });
  const pg = pager(() => refresh());
  shellMain.append(searchForm, t.el, pg.el);
  let name = '';
  searchForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    name = search.value.trim();
    pg.offset = 0;
    refresh();
  });
  await loadVpcNames();
  const mine = life;
  async function refresh() {
    const r = await api.request('GET', `${api.pid()}/vpc-endpoints`, { query: { endpoint_service_name: name, limit: pg.limit, offset: pg.offset } });
    if (!mine.alive) return;
    const list = r.endpoints || [];
    syncRows(t.tbody, list, (e) => e.id, (e) => h('tr',
      h('td.wrap', h('a.mono', { href: `#/endpoints/${encodeURIComponent(e.id)}` })),
      h('td', statusBadge('endpoint', e.status)), h('td.wrap'), h('td'), h('td.mono'), h('td'), h('td'),
      h('td.ops',
        h('button.link', { type: 'button', text: 'Extend', 'aria-label': `Extend ${e.id}`, on: { click: () => extendDialog(e, refresh) } }),
        h('button.link', { type: 'button', text: 'Delete', 'aria-label': `Delete ${e.id}`, on: { click: () => deleteEndpoint(e, refresh) } }))), (tr, e) => {
      const c = tr.cells;
      setText(c[0].firstChild, e.id);
      updateBadge(c[1].firstChild, ENDPOINT_STATUS, e.status, frozen(e) ? 'Expired' : '');
      setText(c[2], e.endpoint_service_name);
      setText(c[3], vpcNames.get(e.vpc_id) || e.vpc_id);
      c[3].title = e.vpc_id;
      setText(c[4], e.ip || '--');
      if (e.expires_at) setWhen(c[5], e.expires_at); else setText(c[5], 'Never');
      setWhen(c[6], e.created_at);
    }, name ? 'No endpoint matches that service name.' : 'No endpoints yet. Click Apply for Endpoint.', t.cols);
    pg.update(r.total_count ?? list.length);
  }
  await poll(refresh);
}

function frozen(e) {
  return (e.active_status || []).includes('frozen');
}

function extendDialog(e, after) {
  const s = select(EXTENSIONS, { id: nextId('ext') });
  s.value = '31536000';
  dialog({
    title: 'Extend',
    fields: [h('p', { text: `Endpoint ${e.id}. Expires: ${e.expires_at ? when(e.expires_at) : 'never'}.` }), field('Extension Period', s)],
    errorFor: () => errorSlot(s),
    onOk: async () => {
      await api.request('PUT', `${api.pid()}/vpc-endpoints/${encodeURIComponent(e.id)}/expiry`, { body: { duration: Number(s.value) } });
      await after();
    },
  });
}

function deleteEndpoint(e, after) {
  confirmDialog('Delete Endpoint', `Are you sure you want to delete the endpoint ${e.id}? Its connection to ${e.endpoint_service_name} ends.`, async () => {
    await api.request('DELETE', `${api.pid()}/vpc-endpoints/${encodeURIComponent(e.id)}`);
    await after();
  });
}

function selectServiceDialog() {
  const byName = h('input', { type: 'radio', name: 'category', id: 'cat-name', value: 'name', checked: true });
  const cloud = h('input', { type: 'radio', name: 'category', id: 'cat-cloud', value: 'cloud' });
  dialog({
    title: 'Select Service',
    okText: 'Apply Now',
    fields: [h('fieldset.group', h('legend', 'Service Category'),
      h('div.radio', byName, h('label', { for: 'cat-name', text: 'Find a service by name' }),
        h('p.hint', 'A private service: yours, or one whose provider added your tenant ID to its whitelist.')),
      h('div.radio', cloud, h('label', { for: 'cat-cloud', text: 'Cloud services' }),
        h('p.hint', 'A cloud service offered by the operator, such as object or file storage.')))],
    onOk: async () => { go(`#/endpoints/apply?category=${byName.checked ? 'name' : 'cloud'}`); },
  });
}

async function applyEndpoint(category) {
  page('Apply for Endpoint');
  shellMain.prepend(h('nav.crumbs', { 'aria-label': 'Breadcrumb' }, h('a', { href: '#/endpoints', text: 'VPC Endpoints' }), ' / Apply for Endpoint'));
  const catName = h('input', { type: 'radio', name: 'svc-category', id: 'apply-cat-name', checked: category !== 'cloud' });
  const catCloud = h('input', { type: 'radio', name: 'svc-category', id: 'apply-cat-cloud', checked: category === 'cloud' });
  const svcName = h('input', { id: 'ep-service-name', autocomplete: 'off' });
  const verifyBtn = h('button', { type: 'button', text: 'Verify' });
  const verified = h('p.verified', { role: 'status' });
  const nameErr = h('p.field-error', { role: 'alert', id: 'ep-service-name-error' });
  nameErr.hidden = true;
  svcName.setAttribute('aria-describedby', 'ep-service-name-error');
  const nameSection = h('div.field',
    h('label', { for: 'ep-service-name', text: 'Endpoint Service Name' }),
    h('div.inline', svcName, verifyBtn), verified, nameErr);
  const cloudTable = table(['', 'Service Name', 'Type', 'Created'], { label: 'Cloud Services' });
  const cloudErr = h('p.field-error', { role: 'alert' });
  cloudErr.hidden = true;
  const cloudSection = h('fieldset.group', h('legend', 'Cloud Services'), cloudTable.el, cloudErr);
  const vpc = select([], { id: 'ep-vpc' });
  const subnet = select([], { id: 'ep-subnet' });
  const auto = h('input', { type: 'radio', name: 'node-ip', id: 'ip-auto', checked: true });
  const manual = h('input', { type: 'radio', name: 'node-ip', id: 'ip-manual' });
  const ip = h('input', { id: 'ep-ip', inputmode: 'decimal' });
  const ipField = field('IP Address', ip);
  ipField.hidden = true;
  const dns = h('input', { type: 'checkbox', id: 'ep-dns' });
  const duration = select(DURATIONS, { id: 'ep-duration' });
  const wlOn = h('input', { type: 'checkbox', id: 'ep-wl-on' });
  const wl = h('textarea', { id: 'ep-whitelist', rows: '3', placeholder: '10.0.0.0/24' });
  const wlField = field('Whitelist', wl, 'IPv4 addresses or CIDR blocks allowed to use the endpoint, one per line.');
  wlField.hidden = true;
  const desc = h('textarea', { id: 'ep-desc', rows: '2' });
  const tags = tagRows();
  const formErr = actionError();
  const applyBtn = h('button.primary', { type: 'submit', text: 'Apply Now' });
  const ifaceOnly = h('div',
    field('Subnet', subnet),
    h('fieldset.group', h('legend', 'Node IP Address'),
      h('div.radio', auto, h('label', { for: 'ip-auto', text: 'Automatic' })),
      h('div.radio', manual, h('label', { for: 'ip-manual', text: 'Manual' })),
      ipField),
    h('div.field.check', dns, h('label', { for: 'ep-dns', text: 'Internal Network Domain Name' }),
      h('p.hint', 'Create a private domain name for the endpoint once the connection is accepted.')),
    h('div.field.check', wlOn, h('label', { for: 'ep-wl-on', text: 'Access Control (source whitelist)' })),
    wlField);
  const form = h('form.form', { novalidate: true },
    h('fieldset.group', h('legend', 'Service Category'),
      h('div.radio', catName, h('label', { for: 'apply-cat-name', text: 'Find a service by name' })),
      h('div.radio', catCloud, h('label', { for: 'apply-cat-cloud', text: 'Cloud services' }))),
    nameSection, cloudSection,
    field('VPC', vpc),
    ifaceOnly,
    field('Required Duration', duration),
    field('Description', desc),
    tags.el,
    formErr,
    h('div.form-actions', applyBtn, h('button', { type: 'button', text: 'Cancel', on: { click: () => go('#/endpoints') } })));
  shellMain.append(form);

  let chosen = null; // {id, service_name, service_type}
  const showCategory = () => {
    nameSection.hidden = !catName.checked;
    cloudSection.hidden = catName.checked;
    chosen = null;
    setText(verified, '');
    ifaceOnly.hidden = false;
    if (catCloud.checked) {
      const r = cloudTable.tbody.querySelector('input[type=radio]:checked');
      if (r) chosen = JSON.parse(r.dataset.svc);
      ifaceOnly.hidden = true;
    }
  };
  catName.addEventListener('change', showCategory);
  catCloud.addEventListener('change', showCategory);
  const verify = async () => {
    showError(nameErr, null);
    setText(verified, '');
    chosen = null;
    try {
      const d = await api.request('GET', `${api.pid()}/vpc-endpoint-services/describe`, { query: { endpoint_service_name: svcName.value.trim() } });
      chosen = d;
      setText(verified, `Verified: ${d.service_name} (${d.service_type === 'gateway' ? 'Gateway' : 'Interface'}, ID ${d.id})`);
      ifaceOnly.hidden = d.service_type === 'gateway';
      return true;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      showError(nameErr, e);
      return false;
    }
  };
  verifyBtn.addEventListener('click', verify);
  svcName.addEventListener('input', () => { chosen = null; setText(verified, ''); });
  svcName.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      verify();
    }
  });
  for (const r of [auto, manual]) r.addEventListener('change', () => { ipField.hidden = !manual.checked; if (manual.checked) ip.focus(); });
  wlOn.addEventListener('change', () => { wlField.hidden = !wlOn.checked; });
  const fillSubnets = async () => {
    const subs = vpc.value ? await inventory.subnets(vpc.value) : [];
    setOptions(subnet, subs.filter((s) => String(s.ip_version || 4) === '4').map((s) => [s.id, `${s.name || s.id} (${s.cidr})`]));
  };
  vpc.addEventListener('change', fillSubnets);
  try {
    const [vpcs, pub] = await Promise.all([
      inventory.vpcs(),
      api.request('GET', `${api.pid()}/vpc-endpoint-services/public`, { query: { limit: 1000 } }),
    ]);
    setOptions(vpc, vpcs.map((v) => [v.id, `${v.name || v.id} (${v.cidr})`]));
    await fillSubnets();
    const gw = (pub.endpoint_services || []).filter((s) => s.service_type === 'gateway');
    syncRows(cloudTable.tbody, gw, (s) => s.id, (s) => {
      const r = h('input', { type: 'radio', name: 'cloud-service', id: nextId('cs'), 'aria-label': s.service_name });
      r.dataset.svc = JSON.stringify(s);
      r.addEventListener('change', () => { chosen = s; });
      return h('tr', h('td', r), h('td', h('label', { for: r.id, text: s.service_name })), h('td', 'Gateway'), h('td', { text: when(s.created_at) }));
    }, () => {}, 'No cloud services are offered in this region.', cloudTable.cols);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    showError(formErr, e);
  }
  showCategory();
  (catName.checked ? svcName : catCloud).focus();

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    if (catName.checked && !chosen && !(await verify())) {
      svcName.focus();
      return;
    }
    if (!chosen) {
      showError(cloudErr, { code: 'console', message: 'Select a cloud service.' });
      return;
    }
    const gateway = chosen.service_type === 'gateway';
    const body = { endpoint_service_id: chosen.id, vpc_id: vpc.value };
    if (!gateway) {
      body.subnet_id = subnet.value;
      body.enable_dns = dns.checked;
      if (manual.checked) body.port_ip = ip.value.trim();
      if (wlOn.checked) {
        body.enable_whitelist = true;
        body.whitelist = wl.value.split(/[\s,]+/).filter(Boolean);
      }
    }
    if (duration.value) body.duration = Number(duration.value);
    if (desc.value.trim()) body.description = desc.value.trim();
    const tg = tags.value();
    if (tg.length) body.tags = tg;
    applyBtn.disabled = true;
    try {
      const e = await api.request('POST', `${api.pid()}/vpc-endpoints`, { body });
      go(`#/endpoints/${encodeURIComponent(e.id)}`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      placeError(e, [
        [/port_ip|port ip|ip address|\bip\b/, errorSlot(ip)],
        [/whitelist/, errorSlot(wl)],
        [/subnet/, errorSlot(subnet)],
        [/vpc/, errorSlot(vpc)],
        [/duration/, errorSlot(duration)],
        [/tag/, tags.err],
        [/description/, errorSlot(desc)],
        [/service|permission/, catName.checked ? nameErr : cloudErr],
      ], formErr);
    } finally {
      applyBtn.disabled = false;
    }
  });
}

async function endpointDetail(id) {
  const path = `${api.pid()}/vpc-endpoints/${encodeURIComponent(id)}`;
  const actions = page('Endpoint');
  const h1 = shellMain.querySelector('h1');
  let ep = null;
  const mine = life;
  actions.append(
    h('button', { type: 'button', text: 'Extend', on: { click: () => ep && extendDialog(ep, refresh) } }),
    h('button', { type: 'button', text: 'Delete', on: { click: () => ep && deleteEndpoint(ep, async () => go('#/endpoints')) } }));
  shellMain.prepend(h('nav.crumbs', { 'aria-label': 'Breadcrumb' }, h('a', { href: '#/endpoints', text: 'VPC Endpoints' }), ' / ', h('span', { text: id })));
  const v = {};
  const row = (label, key) => [h('dt', { text: label }), (v[key] = h('dd'))];
  const statusEl = h('span.status');
  const reason = h('span.reason#status-reason');
  const wlBtn = h('button.link', { type: 'button', text: 'Modify', 'aria-label': 'Modify whitelist', on: { click: () => ep && whitelistDialog() } });
  function whitelistDialog() {
    const on = h('input', { type: 'checkbox', id: nextId('wlon'), checked: ep.enable_whitelist });
    const list = h('textarea', { id: nextId('wl'), rows: '4' });
    list.value = (ep.whitelist || []).join('\n');
    dialog({
      title: 'Modify Whitelist',
      fields: [h('div.field.check', on, h('label', { for: on.id, text: 'Access Control (source whitelist)' })),
        field('Whitelist', list, 'IPv4 addresses or CIDR blocks allowed to use the endpoint, one per line.')],
      errorFor: () => errorSlot(list),
      onOk: async () => {
        await api.request('PUT', path, { body: { enable_whitelist: on.checked, whitelist: list.value.split(/[\s,]+/).filter(Boolean) } });
        await refresh();
      },
    });
  }
  shellMain.append(h('section.info', { 'aria-label': 'Basic Information' },
    h('h2', 'Basic Information'),
    h('dl.props',
      row('ID', 'id'),
      h('dt', 'Status'), h('dd.with-actions', statusEl, reason),
      row('Endpoint Service Name', 'svc'),
      row('Service Type', 'stype'),
      row('VPC', 'vpc'),
      row('Subnet', 'subnet'),
      row('IP Address', 'ip'),
      row('Internal Network Domain Name', 'dns'),
      row('Packet ID', 'marker'),
      row('Expires', 'expires'),
      h('dt', 'Whitelist'), h('dd.with-actions', (v.wl = h('span.value')), wlBtn),
      row('Description', 'desc'),
      row('Created', 'created'))));
  const tagPanel = h('section.tab-panel', { 'aria-label': 'Tags' }, h('h2', 'Tags'));
  const refreshTags = tagsTab(tagPanel, 'endpoint', id, () => ep && ep.tags);
  shellMain.append(tagPanel, traffic('endpoint'));
  await loadVpcNames();
  async function refresh() {
    let e;
    try {
      e = await api.request('GET', path);
    } catch (x) {
      if (x instanceof ApiError && x.status === 404) {
        if (mine.alive) fill(shellMain, h('h1', 'Endpoint not found'), h('p', h('a', { href: '#/endpoints', text: 'Back to VPC Endpoints' })));
        mine.alive = false;
        return;
      }
      throw x;
    }
    if (!mine.alive) return;
    ep = e;
    setText(h1, `Endpoint ${e.id}`);
    setText(v.id, e.id);
    updateBadge(statusEl, ENDPOINT_STATUS, e.status, frozen(e) ? 'Expired' : '');
    let why = '';
    if (e.status === 'failed') why = (e.error || []).map((x) => x.error_message || x.message || x.error_code).join('; ') || 'The endpoint could not connect to the endpoint service.';
    else if (e.status === 'rejected') why = 'The owner of the endpoint service rejected the connection.';
    else if (e.status === 'pendingAcceptance') why = 'Waiting for the owner of the endpoint service to accept the connection.';
    if (frozen(e)) why = `${why ? `${why} ` : ''}Suspended: the required duration ended on ${when(e.expires_at)}. Extend it to carry traffic again.`;
    setText(reason, why);
    setText(v.svc, e.endpoint_service_name);
    setText(v.stype, e.service_type === 'gateway' ? 'Gateway' : 'Interface');
    setText(v.vpc, vpcLabel(e.vpc_id));
    setText(v.subnet, e.subnet_id || '--');
    setText(v.ip, e.ip || '--');
    setText(v.dns, e.enable_dns ? ((e.dns_names || []).join(', ') || 'Created once the connection is accepted') : 'Not enabled');
    setText(v.marker, e.marker_id);
    setText(v.expires, e.expires_at ? when(e.expires_at) : 'Never');
    setText(v.wl, e.enable_whitelist ? (e.whitelist || []).join(', ') || '(empty: no source allowed)' : 'Disabled');
    setText(v.desc, e.description || '--');
    setText(v.created, when(e.created_at));
    await refreshTags();
  }
  refreshTags.setRefreshAll(refresh);
  await poll(refresh);
}

// ---- My Settings (6.6) ----

async function settings() {
  page('My Settings');
  const s = api.current();
  let domainId = s.domainId;
  if (!domainId) {
    // AK/SK sessions: the tenant ID is the domain of the project's own resources.
    try {
      const r = await api.request('GET', `${api.pid()}/vpc-endpoint-services`, { query: { limit: 1 } });
      domainId = ((r.endpoint_services || [])[0] || {}).domain_id;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
    }
  }
  const copy = (text, label) => h('button.link', {
    type: 'button', text: 'Copy', 'aria-label': `Copy ${label}`,
    on: { click: () => navigator.clipboard && navigator.clipboard.writeText(text).catch(() => {}) },
  });
  const row = (label, value, id) => [h('dt', { text: label }),
    h('dd.with-actions', h('span.mono', { id, text: value || '--' }), value ? copy(value, label) : null)];
  shellMain.append(h('section.info', { 'aria-label': 'Account' },
    h('h2', 'Account'),
    h('dl.props',
      row('Username', s.userName, 'settings-user'),
      row('Tenant ID', domainId || (s.mode === 'aksk' ? 'Not known for an access key sign-in until the project owns a service' : ''), 'settings-tenant-id'),
      row('Domain Name', s.domainName, 'settings-domain-name'),
      row('Project ID', s.projectId, 'settings-project-id'),
      row('Project Name', s.projectName, 'settings-project-name'),
      row('Login Method', s.mode === 'token' ? 'Password' : 'Access key', 'settings-method'),
      row('Session Expires', s.expiresAt ? when(s.expiresAt) : '--', 'settings-expires'))),
  h('p.hint', 'Give your Tenant ID to a service provider: they add it to the whitelist of their endpoint service (Permission Management > Add More).'));
}

// ---- start ----

window.addEventListener('hashchange', route);
window.addEventListener('error', (ev) => {
  // A bug of the console, not of the API: say so where the user looks.
  const main = document.getElementById('main');
  if (main) main.prepend(h('p.action-error', { role: 'alert', text: `The console hit an error: ${ev.message}` }));
});
api.restore();
route();
