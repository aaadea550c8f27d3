// Small DOM helpers: elements built with DOM APIs only (the CSP allows no inline script,
// no inline style, no eval), rows kept in place across refreshes (focus and selection
// survive the poll).

/** h('tag.class#id', {attrs, on: {event: fn}}, ...children) */
export function h(spec, props, ...kids) {
  const m = /^([a-z0-9]+)((?:[.#][\w-]+)*)$/.exec(spec);
  const el = document.createElement(m ? m[1] : spec);
  if (m) {
    for (const part of m[2].match(/[.#][\w-]+/g) || []) {
      if (part[0] === '.') el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  if (props && (typeof props !== 'object' || props instanceof Node || Array.isArray(props))) {
    kids.unshift(props);
    props = null;
  }
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'text') el.textContent = v;
    else if (k === 'class') el.className = v;
    else if (k === 'for') el.htmlFor = v;
    else if (k in el && typeof v !== 'string') el[k] = v;
    else if (k === 'value') el.value = v;
    else if (k === 'style') throw new Error('no style attributes (CSP)');
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, kids);
  return el;
}

function append(el, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === null || k === undefined || k === false) continue;
    el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

/** Replace the children of `el`. */
export function fill(el, ...kids) {
  el.replaceChildren();
  append(el, kids);
  return el;
}

/** Set text only when it changed (no needless DOM churn during polling). */
export function setText(el, text) {
  const t = text === null || text === undefined ? '' : String(text);
  if (el.textContent !== t) el.textContent = t;
}

let uid = 0;
/** A fresh element id. */
export function nextId(prefix = 'f') {
  uid += 1;
  return `${prefix}-${uid}`;
}

/**
 * Keep the rows of `tbody` in step with `items`: rows are keyed by `key(item)`, built once
 * by `build(item)` (returns a <tr>) and brought up to date by `update(tr, item)`.
 */
export function syncRows(tbody, items, key, build, update, emptyText, cols) {
  const have = new Map();
  for (const tr of tbody.querySelectorAll(':scope > tr[data-key]')) have.set(tr.dataset.key, tr);
  const empty = tbody.querySelector(':scope > tr.empty');
  if (empty) empty.remove();
  let prev = null;
  const keep = new Set();
  for (const item of items) {
    const k = String(key(item));
    keep.add(k);
    let tr = have.get(k);
    if (!tr) {
      tr = build(item);
      tr.dataset.key = k;
    }
    update(tr, item);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== tr) tbody.insertBefore(tr, want);
    prev = tr;
  }
  for (const [k, tr] of have) if (!keep.has(k)) tr.remove();
  if (!items.length && emptyText) {
    tbody.append(h('tr.empty', h('td', { colSpan: cols || 1, text: emptyText })));
  }
}

/** A labelled field: <div class=field><label for>...</label>control<p class=field-error></div> */
export function field(label, control, hint) {
  if (!control.id) control.id = nextId('f');
  const err = h('p.field-error', { role: 'alert', id: `${control.id}-error` });
  control.setAttribute('aria-describedby', err.id);
  return h('div.field', h('label', { for: control.id, text: label }), control,
    hint ? h('p.hint', { text: hint }) : null, err);
}

/** Show an API error (or clear it with null) in the error slot of a field or action. */
export function showError(slot, err) {
  if (!slot) return;
  if (!err) {
    setText(slot, '');
    slot.hidden = true;
    return;
  }
  slot.hidden = false;
  slot.replaceChildren();
  if (err.code) slot.append(h('strong.code', { text: err.code }), ' ');
  slot.append(err.message || String(err));
}

/** The error slot belonging to a control built with `field`. */
export function errorSlot(control) {
  return document.getElementById(`${control.id}-error`);
}

/** A <select> with options [[value, label], ...]. */
export function select(options, props) {
  const s = h('select', props || {});
  setOptions(s, options);
  return s;
}

/** Replace the options of a <select>, keeping the selected value when it still exists. */
export function setOptions(s, options) {
  const cur = s.value;
  s.replaceChildren(...options.map(([v, l]) => h('option', { value: v, text: l })));
  if (options.some(([v]) => v === cur)) s.value = cur;
}
