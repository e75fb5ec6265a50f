// Building the page. Data only ever reaches the page as text nodes and attribute values, never as HTML.

export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function setAttrs(node, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else if (name === 'class') node.setAttribute('class', value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  return node;
}

// a link inside the dashboard: always a '#/...' route built from encoded parts
export function link(text, ...parts) {
  return h('a', { href: route(...parts) }, text);
}

export function route(...parts) {
  let query = '';
  if (parts.length && typeof parts[parts.length - 1] === 'object') query = toQuery(parts.pop());
  return '#/' + parts.map((p) => encodeURIComponent(String(p))).join('/') + query;
}

export function toQuery(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== '' && v !== null && v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}

export function time(value) {
  if (!value) return '—';
  const when = new Date(value);
  if (Number.isNaN(when.getTime())) return String(value);
  return h('span', { class: 'time', title: String(value) }, when.toISOString().slice(0, 19).replace('T', ' ') + ' UTC');
}

// a moment in a counter's own time zone ("2026-11-27 03:00 Europe/Moscow"), UTC in its tooltip
export function zonedTime(value, zone) {
  if (!value) return '—';
  const when = new Date(value);
  if (Number.isNaN(when.getTime())) return String(value);
  let parts;
  try {
    parts = Object.fromEntries(new Intl.DateTimeFormat('en-GB', { timeZone: zone, year: 'numeric', month: '2-digit',
      day: '2-digit', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).formatToParts(when).map((p) => [p.type, p.value]));
  } catch {
    return time(value); // a zone this browser does not know
  }
  const utc = when.toISOString().slice(0, 16).replace('T', ' ') + ' UTC';
  return h('span', { class: 'time', title: utc }, `${parts.year}-${parts.month}-${parts.day} ${parts.hour}:${parts.minute} `,
    h('span', { class: 'zone' }, zone));
}

export function badge(status) {
  const word = status === null || status === undefined ? 'unknown' : String(status);
  return h('span', { class: 'badge', 'data-status': word }, word);
}

export function progress(percent, message) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  const bar = h('span', { class: 'fill' });
  bar.style.width = value + '%';
  return h('div', { class: 'progress', role: 'progressbar', 'aria-valuenow': value, 'aria-valuemin': 0,
    'aria-valuemax': 100 }, h('span', { class: 'track' }, bar), h('span', { class: 'label' },
    `${value}%${message ? ' · ' + message : ''}`));
}

export function table(columns, rows, empty = 'Nothing here yet.') {
  if (!rows.length) return h('p', { class: 'muted empty' }, empty);
  return h('table', null,
    h('thead', null, h('tr', null, columns.map(([title]) => h('th', null, title)))),
    h('tbody', null, rows.map((row) => h('tr', null, columns.map(([, cell]) => h('td', null, cell(row)))))));
}

// previous / next over a `{data, pagination}` answer; `go(offset)` loads another page
export function pager(pagination, go) {
  const { total, limit, offset, has_more: more } = pagination;
  const first = total ? offset + 1 : 0;
  const last = Math.min(offset + limit, total);
  return h('div', { class: 'pager' },
    h('button', { type: 'button', disabled: offset <= 0, onclick: () => go(Math.max(0, offset - limit)) }, '← Previous'),
    h('span', { class: 'range' }, `${first}–${last} of ${total}`),
    h('button', { type: 'button', disabled: !more, onclick: () => go(offset + limit) }, 'Next →'));
}

export function field(label, input) {
  return h('label', null, h('span', null, label), input);
}

export function select(name, options, value) {
  return h('select', { name }, options.map(([v, text]) => h('option', { value: v, selected: v === (value || '') }, text)));
}

// form fields as an object of strings (empty ones left out)
export function formValues(form) {
  const values = {};
  for (const [k, v] of new FormData(form).entries()) if (String(v).trim() !== '') values[k] = String(v).trim();
  return values;
}

export function message(kind, text) {
  return h('p', { class: `message ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, text);
}
