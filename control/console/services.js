// VPC Endpoint > VPC Endpoint Services: the list (5.1, 5.4), Create Endpoint Service (4.1),
// a service's page with Connection Management (4.4, 5.2), Permission Management (4.2),
// Port Mapping (5.3) and Tags, and Associate (6.7).

import * as api from './api.js';
import { ApiError } from './api.js';
import { h, fill, setText, nextId, syncRows, field, showError, errorSlot, select, setOptions } from './dom.js';
import {
  BACKEND_TYPE,
  arrowTabs,
  CLIENT_IDENTITY,
  ENDPOINT_STATUS,
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
  page,
  previousHash,
  pager,
  placeError,
  poll,
  portsText,
  searchForm,
  selection,
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
  when,
} from './ui.js';

// ---- VPC Endpoint Services (4.1, 5.1, 5.4) ----

async function servicesList() {
  const actions = page('VPC Endpoint Services');
  actions.append(h('button.primary', { type: 'button', text: 'Create Endpoint Service', on: { click: () => go('#/services/create') } }));
  const t = table(['Name', 'ID', 'Status', 'Backend Resource Type', 'Connection Approval', 'Port Mapping', 'Created', 'Operation'], { label: 'Endpoint services' });
  const pg = pager(() => refresh());
  let name = '';
  const search = searchForm('svc-search', 'Search by name', (text) => {
    name = text;
    pg.offset = 0;
    refresh();
  });
  shellMain.append(search, t.el, pg.el);
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
  await poll(refresh, mine);
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
    // Table 4-1: at most 50 port mappings at a time.
    if (maps.children.length >= 50) {
      showError(mapErr, { code: '', message: 'A maximum of 50 port mappings can be added at a time.' });
      return null;
    }
    const proto = select([['TCP', 'TCP'], ['UDP', 'UDP']], { id: nextId('proto') });
    const sport = h('input', { inputmode: 'numeric', id: nextId('sport') });
    const cport = h('input', { inputmode: 'numeric', id: nextId('cport') });
    const row = h('div.row', field('Protocol', proto), field('Service Port', sport), field('Client Port', cport),
      h('button.link', { type: 'button', text: 'Remove', on: { click: () => { row.remove(); showError(mapErr, null); } } }));
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
  actions.append(
    h('button', { type: 'button', text: 'Delete', on: { click: () => svc && deleteService(svc, () => go('#/services')) } }));
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
  const tablist = arrowTabs(h('div.tabs', { role: 'tablist', 'aria-label': 'Endpoint service details' },
    tabs.map(([k, label]) => h('a', {
      role: 'tab', href: `#/services/${encodeURIComponent(id)}/${k}`, 'aria-selected': String(k === tab), text: label,
    }))));
  const panel = h('section.tab-panel', { role: 'tabpanel', 'aria-label': (tabs.find(([k]) => k === tab) || tabs[0])[1] });
  shellMain.append(info, tablist, panel);
  // Another tab of the same service: the focus stays on the tab bar, not back at the title.
  if (previousHash.startsWith(`#/services/${encodeURIComponent(id)}/`) || previousHash === `#/services/${encodeURIComponent(id)}`) {
    tablist.querySelector('[aria-selected="true"]').focus();
  }

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
  const mine = life;
  await loadVpcNames();
  if (!mine.alive) return; // the route changed meanwhile

  async function refreshInfo() {
    const s = await getOrGone(base, mine, 'Endpoint service', '#/services', 'Back to VPC Endpoint Services');
    if (!s || !mine.alive) return;
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
  }, mine);
}

function connectionsTab(panel, base) {
  const flow = traffic('connections', base);
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
    t.el, flow.el);
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
        h('td', sel.box(c.id, c.id)), h('td.mono.wrap'), h('td.mono'), h('td', statusBadge('endpoint', c.status)), h('td.mono'), h('td.text'), h('td'),
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
    if (mine.alive) await flow.refresh();
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

export {
  servicesList,
  createService,
  serviceDetail,
};
