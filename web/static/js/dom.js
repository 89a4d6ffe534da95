// DOM helpers: every value is set as text or attribute, never parsed as HTML.

/** Build an element: h('a', {href: '/x', class: 'y', onclick: fn}, 'text', childNode, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'hidden' || key === 'disabled' || key === 'checked' || key === 'selected') el[key] = Boolean(value);
    else if (key === 'value') el.value = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table: columns [{label, cell: row => node|text, class}] and rows; empty text when no rows. */
export function table(columns, rows, {empty = 'Nothing here yet.', rowAttrs} = {}) {
  if (!rows.length) return h('p', {class: 'empty'}, empty);
  return h('div', {class: 'table-wrap'},
    h('table', {},
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', {class: c.class, scope: 'col'}, c.label)))),
      h('tbody', {}, rows.map((row) => h('tr', rowAttrs ? rowAttrs(row) : {},
        columns.map((c) => h('td', {class: c.class, 'data-label': c.label}, c.cell(row))))))));
}

export function fmtNumber(n, digits = 0) {
  if (n === undefined || n === null || n === '') return '–';
  const v = Number(n);
  if (!Number.isFinite(v)) return String(n);
  return v.toLocaleString('en-US', {maximumFractionDigits: digits});
}

export function fmtTime(seconds) {
  if (!seconds) return '–';
  const d = new Date(Number(seconds) * 1000);
  return d.toLocaleString(undefined, {year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit'});
}

export function fmtDuration(seconds) {
  if (seconds === undefined || seconds === null || seconds === '') return '–';
  const s = Number(seconds);
  if (!Number.isFinite(s)) return String(seconds);
  if (s === 0) return '0 s';
  if (s < 1) return `${fmtNumber(s * 1000, 1)} ms`;
  if (s < 60) return `${fmtNumber(s, 2)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export function fmtAgo(seconds) {
  if (!seconds) return '–';
  const diff = Date.now() / 1000 - Number(seconds);
  if (diff < 60) return `${Math.max(0, Math.round(diff))} s ago`;
  if (diff < 3600) return `${Math.round(diff / 60)} min ago`;
  if (diff < 86400) return `${Math.round(diff / 3600)} h ago`;
  return fmtTime(seconds);
}

export function statusBadge(status) {
  return h('span', {class: `badge status-${String(status || 'unknown').replace(/[^a-z_-]/gi, '')}`}, status || 'unknown');
}

export function pre(value) {
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  return h('pre', {class: 'code'}, text === undefined ? '' : text);
}

let toastTimer = null;
/** A short message at the bottom of the page. */
export function toast(message, kind = 'info') {
  const el = document.getElementById('toast');
  el.textContent = message;
  el.className = `toast toast-${kind}`;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
}
