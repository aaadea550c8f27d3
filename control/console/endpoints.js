// VPC Endpoint > VPC Endpoints: the list, Apply for Endpoint (4.3), an endpoint's page,
// Extend (5.5) and Delete (5.6).

import * as api from './api.js';
import { ApiError } from './api.js';
import { h, fill, setText, nextId, syncRows, field, showError, errorSlot, select, setOptions } from './dom.js';
import {
  DURATIONS,
  ENDPOINT_STATUS,
  EXTENSIONS,
  actionError,
  clearErrors,
  confirmDialog,
  dialog,
  getOrGone,
  go,
  inventory,
  life,
  loadVpcNames,
  page,
  pager,
  placeError,
  poll,
  searchForm,
  setWhen,
  shellMain,
  statusBadge,
  table,
  tagRows,
  tagsTab,
  traffic,
  updateBadge,
  vpcLabel,
  vpcNames,
  when,
} from './ui.js';

// ---- VPC Endpoints (4.3, 5.5, 5.6) ----

async function endpointsList() {
  const actions = page('VPC Endpoints');
  actions.append(h('button.primary', { type: 'button', text: 'Apply for Endpoint', on: { click: selectServiceDialog } }));
  const t = table(['ID', 'Status', 'Endpoint Service Name', 'VPC', 'IP Address', 'Expires', 'Created', 'Operation'], { label: 'Endpoints' });
  const pg = pager(() => refresh());
  let name = '';
  const search = searchForm('ep-search', 'Search by service name', (text) => {
    name = text;
    pg.offset = 0;
    refresh();
  });
  shellMain.append(search, t.el, pg.el);
  const mine = life;
  await loadVpcNames();
  if (!mine.alive) return; // the route changed meanwhile
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
  await poll(refresh, mine);
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
      if (e.status === 404) {
        // Guide 6.5: a service whose whitelist does not hold you is invisible to you.
        nameErr.append(h('span.hint-inline', { text: ' If the service exists, ask its provider to add your tenant ID (see My Settings) to its whitelist.' }));
      }
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
  const flow = traffic('endpoint', path);
  shellMain.append(tagPanel, flow.el);
  await loadVpcNames();
  if (!mine.alive) return; // the route changed meanwhile
  async function refresh() {
    const e = await getOrGone(path, mine, 'Endpoint', '#/endpoints', 'Back to VPC Endpoints');
    if (!e || !mine.alive) return;
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
    await flow.refresh();
  }
  refreshTags.setRefreshAll(refresh);
  await poll(refresh, mine);
}

export {
  endpointsList,
  applyEndpoint,
  endpointDetail,
};
