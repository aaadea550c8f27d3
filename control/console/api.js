// The API client of the console: the session (a token from POST /v3/auth/tokens, or an
// AK/SK pair that signs each request with SDK-HMAC-SHA256 through WebCrypto, exactly as the
// official SDK does: API.md section 3), and one request function that turns error answers
// into ApiError {status, code, message, requestId}.

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const STORE_KEY = 'vpcep.console.session';
const enc = new TextEncoder();

/** An error answer of the API (or of the network). */
export class ApiError extends Error {
  constructor(status, code, message, requestId) {
    super(message);
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }
}

function hex(buf) {
  return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function sha256Hex(bytes) {
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

async function hmacHex(key, msg) {
  const k = await crypto.subtle.importKey('raw', enc.encode(key), { name: 'HMAC', hash: 'SHA-256' },
    false, ['sign']);
  return hex(await crypto.subtle.sign('HMAC', k, enc.encode(msg)));
}

/** Percent-encode every byte but A-Z a-z 0-9 - . _ ~ (upper-case hex), as the SDK's quote(s, safe='~'). */
export function quote(s) {
  return Array.from(enc.encode(s), (b) => {
    const c = String.fromCharCode(b);
    return /[A-Za-z0-9\-._~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }).join('');
}

function pctDecode(s) {
  // %XX only; '+' stays '+'.
  const bytes = [];
  for (let i = 0; i < s.length; i += 1) {
    if (s[i] === '%' && /^[0-9A-Fa-f]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      for (const b of enc.encode(s[i])) bytes.push(b);
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/** The canonical query string of [[key, value], ...]: sorted, encoded; also the wire query. */
export function canonicalQuery(pairs) {
  return pairs
    .map(([k, v]) => [String(k), String(v)])
    .sort((a, b) => (a[0] === b[0] ? cmp(a[1], b[1]) : cmp(a[0], b[0])))
    .map(([k, v]) => `${quote(k)}=${quote(v)}`)
    .join('&');
}

function cmp(a, b) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function canonicalUri(path) {
  const p = pctDecode(path).split('/').map(quote).join('/');
  return p.endsWith('/') ? p : `${p}/`;
}

/**
 * Sign a request: `target` is the request-target (path and query as on the wire),
 * `headers` [[name, value], ...] (every header whose name has no '_' is signed), `body` a
 * string or ''. Returns {authorization, canonicalRequest, stringToSign}.
 */
export async function sign({ ak, sk, method, target, headers, body }) {
  const [path, query = ''] = target.split(/\?(.*)/s);
  const pairs = query
    ? query.split('&').filter(Boolean).map((kv) => {
      const [k, v = ''] = kv.split(/=(.*)/s);
      return [pctDecode(k), pctDecode(v)];
    })
    : [];
  const signed = headers
    .filter(([n]) => !n.includes('_') && n.toLowerCase() !== 'authorization')
    .map(([n, v]) => [n.toLowerCase(), String(v).trim()])
    .sort((a, b) => cmp(a[0], b[0]));
  const names = signed.map(([n]) => n).join(';');
  const xdate = signed.find(([n]) => n === 'x-sdk-date')[1];
  const payload = body ? await sha256Hex(enc.encode(body)) : EMPTY_SHA256;
  const canonicalRequest = [
    method.toUpperCase(),
    canonicalUri(path),
    canonicalQuery(pairs),
    signed.map(([n, v]) => `${n}:${v}\n`).join(''),
    names,
    payload,
  ].join('\n');
  const stringToSign = `SDK-HMAC-SHA256\n${xdate}\n${await sha256Hex(enc.encode(canonicalRequest))}`;
  const signature = await hmacHex(sk, stringToSign);
  return {
    authorization: `SDK-HMAC-SHA256 Access=${ak}, SignedHeaders=${names}, Signature=${signature}`,
    canonicalRequest,
    stringToSign,
  };
}

function sdkDate(d = new Date()) {
  return d.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

function nonce() {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return hex(b);
}

// The session. A token (and who it belongs to) is kept in sessionStorage so a reload keeps
// it; an AK/SK pair only in memory (a reload signs out).
let session = null;
let expiryTimer = null;
const listeners = new Set();

/** Called with (reason) when the session ends: 'signout', 'expired' or 'unauthorized'. */
export function onSessionEnd(fn) {
  listeners.add(fn);
}

export function current() {
  return session;
}

function start(s) {
  session = s;
  if (s.mode === 'token') sessionStorage.setItem(STORE_KEY, JSON.stringify(s));
  clearTimeout(expiryTimer);
  if (s.expiresAt) {
    const ms = Date.parse(s.expiresAt) - Date.now();
    // setTimeout holds 32 bits of milliseconds; a far expiry needs no timer.
    if (ms < 2 ** 31 - 1) expiryTimer = setTimeout(() => end('expired'), Math.max(ms, 0));
  }
}

function end(reason) {
  const had = session !== null;
  session = null;
  clearTimeout(expiryTimer);
  sessionStorage.removeItem(STORE_KEY);
  if (had) for (const fn of listeners) fn(reason);
}

/** Restore a token session from sessionStorage (a reload); false if none or expired. */
export function restore() {
  try {
    const s = JSON.parse(sessionStorage.getItem(STORE_KEY) || 'null');
    if (s && s.mode === 'token' && s.token && (!s.expiresAt || Date.parse(s.expiresAt) > Date.now())) {
      start(s);
      return true;
    }
  } catch (_) {
    // A damaged entry: start signed out.
  }
  sessionStorage.removeItem(STORE_KEY);
  return false;
}

async function decodeError(resp) {
  const text = await resp.text();
  let code = String(resp.status);
  let message = text || resp.statusText;
  try {
    const j = JSON.parse(text);
    const e = j.error && typeof j.error === 'object' ? j.error : j;
    code = e.error_code || e.code || code;
    message = e.error_msg || e.message || message;
  } catch (_) {
    // Not JSON: the text is the message.
  }
  return new ApiError(resp.status, code, message, resp.headers.get('X-Request-Id'));
}

/** Password sign-in (guide 6.2): POST /v3/auth/tokens. */
export async function signInPassword(user, password, domain, projectId) {
  const u = { name: user, password };
  if (domain) u.domain = { name: domain };
  const body = { auth: { identity: { methods: ['password'], password: { user: u } } } };
  if (projectId) body.auth.scope = { project: { id: projectId } };
  const resp = await fetch('/v3/auth/tokens', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json;charset=utf-8' },
    body: JSON.stringify(body),
    credentials: 'omit',
  });
  if (!resp.ok) throw await decodeError(resp);
  const token = resp.headers.get('X-Subject-Token');
  if (!token) throw new ApiError(resp.status, 'console', 'The answer carried no X-Subject-Token header.');
  const t = (await resp.json()).token || {};
  start({
    mode: 'token',
    token,
    expiresAt: t.expires_at,
    userName: (t.user && t.user.name) || user,
    domainId: t.user && t.user.domain && t.user.domain.id,
    domainName: t.user && t.user.domain && t.user.domain.name,
    projectId: t.project && t.project.id,
    projectName: t.project && t.project.name,
  });
}

/** Operator sign-in with an access key: checked by one signed read (the quotas). */
export async function signInKeys(ak, sk, projectId) {
  if (!globalThis.crypto || !crypto.subtle) {
    // WebCrypto exists only in secure contexts: https, or http on loopback.
    throw new ApiError(0, 'console', 'Signing with an access key needs the console over https.');
  }
  session = { mode: 'aksk', ak, sk, projectId, userName: ak };
  try {
    await request('GET', `/v1/${encodeURIComponent(projectId)}/quotas`, { quiet: true });
  } catch (e) {
    session = null;
    throw e;
  }
  start(session);
}

/** Sign out: the token is revoked (DELETE /v3/auth/tokens), the session forgotten. */
export async function signOut() {
  const s = session;
  if (s && s.mode === 'token') {
    try {
      await fetch('/v3/auth/tokens', {
        method: 'DELETE',
        headers: { 'X-Auth-Token': s.token, 'X-Subject-Token': s.token },
        credentials: 'omit',
      });
    } catch (_) {
      // Signed out locally whatever the server said.
    }
  }
  end('signout');
}

/** Tell listeners the session is gone (after a 401). */
function unauthorized() {
  end('unauthorized');
}

/**
 * One API call. `path` starts with '/'; `query` is an object (unset values skipped);
 * `body` is JSON-encoded. Resolves to the decoded JSON (null for 204), rejects with ApiError.
 */
export async function request(method, path, { query, body, quiet } = {}) {
  const s = session;
  if (!s) throw new ApiError(401, 'console', 'Not signed in.');
  const pairs = Object.entries(query || {}).filter(([, v]) => v !== undefined && v !== null && v !== '');
  const qs = canonicalQuery(pairs);
  const target = qs ? `${path}?${qs}` : path;
  const text = body === undefined ? '' : JSON.stringify(body);
  const headers = [['Content-Type', text ? 'application/json;charset=utf-8' : 'application/json']];
  if (s.mode === 'token') {
    headers.push(['X-Auth-Token', s.token]);
  } else {
    headers.push(['Host', location.host], ['X-Project-Id', s.projectId], ['X-Sdk-Date', sdkDate()]);
    if (method !== 'GET') headers.push(['X-Request-Nonce', nonce()]);
    const { authorization } = await sign({ ak: s.ak, sk: s.sk, method, target, headers, body: text });
    headers.push(['Authorization', authorization]);
  }
  let resp;
  try {
    resp = await fetch(target, {
      method,
      // Host is the browser's to send (and it sends location.host, as signed).
      headers: headers.filter(([n]) => n !== 'Host'),
      body: text || undefined,
      credentials: 'omit',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'network', `The server could not be reached (${e.message}).`);
  }
  if (resp.status === 401 && !quiet && session === s) {
    const err = await decodeError(resp);
    unauthorized();
    throw err;
  }
  if (!resp.ok) throw await decodeError(resp);
  if (resp.status === 204) return null;
  const t = await resp.text();
  return t ? JSON.parse(t) : null;
}

/** The project path prefix of the session: /v1/{project_id}. */
export function pid() {
  return `/v1/${encodeURIComponent(session ? session.projectId : '')}`;
}
