// The VPC Endpoint console: the shell (navigation pane, user menu), hash routes, sign-in
// (6.2), My Settings (6.6). Pages in the user guide's words (chapters 4-6), live state by
// polling while a page is open. Plain ES modules, no build step.

import * as api from './api.js';
import { ApiError } from './api.js';
import { h, fill, field, showError } from './dom.js';
import {
  actionError,
  arrowTabs,
  newLife,
  page,
  setMain,
  shellMain,
  when,
} from './ui.js';
import { servicesList, createService, serviceDetail } from './services.js';
import { endpointsList, applyEndpoint, endpointDetail } from './endpoints.js';

// ---- the shell ----

const root = document.getElementById('app');
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
  setMain(h('main#main', { tabindex: '-1' }));
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


// ---- sign-in (guide 6.2) ----

function signIn(reason) {
  setMain(null);
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
    setMain(null);
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
    arrowTabs(h('div.tabs', { role: 'tablist', 'aria-label': 'Login method' }, tabPw, tabAk)),
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
