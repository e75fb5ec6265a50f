// The dashboard's shell: the API key, the hash router, and the life of one page (its timers, its errors).

import { ApiError, apiKey, get } from './api.js';
import { formValues, h, message, route } from './dom.js';
import * as deadLetters from './dead_letters.js';
import * as schedules from './schedules.js';
import * as search from './search.js';
import * as tasks from './tasks.js';
import * as uploads from './uploads.js';
import * as webhooks from './webhooks.js';

// '#/<section>/...' -> the page that draws it, given the path's parts after the section
const PAGES = {
  tasks: (view, [id]) => (id ? tasks.detail(view, id) : tasks.list(view)),
  schedules: (view, [id]) => (id ? schedules.detail(view, id) : schedules.list(view)),
  uploads: (view, [id]) => (id ? uploads.detail(view, id) : uploads.list(view)),
  webhooks: (view, [id, , batchId]) => (batchId ? webhooks.batch(view, id, batchId) : id ? webhooks.batches(view, id) : webhooks.list(view)),
  'dead-letters': (view) => deadLetters.list(view),
  search: (view) => search.page(view),
};

const main = document.getElementById('main');
const notice = document.getElementById('notice');
let current = null;

// one page on screen: its timers stop and its late answers are dropped once another page replaces it
class View {
  constructor(path, query) {
    this.path = path;
    this.query = query;
    this.timers = [];
    this.live = true;
  }

  every(fn, ms) {
    const tick = async () => {
      if (!this.live) return;
      if (!document.hidden) await fn();
      if (this.live) this.timers.push(setTimeout(tick, ms));
    };
    this.timers.push(setTimeout(tick, ms));
  }

  show(...nodes) {
    if (this.live) main.replaceChildren(...nodes);
  }

  close() {
    this.live = false;
    this.timers.forEach(clearTimeout);
  }

  // go to the same page with other query parameters (filters, pagination)
  go(query) {
    window.location.hash = route(...this.path, query);
  }

  // an error from the API, shown in `box` (else at the top); a refused key asks for the key again
  fail(err, box) {
    if (!this.live) return;
    if (err.status === 401) {
      apiKey.forget();
      showLogin(err.message);
      return;
    }
    const text = err instanceof ApiError ? err.message : `Unexpected error in the page: ${err}`;
    if (box instanceof Node) box.replaceChildren(message('error', text));
    else flash('error', text);
  }

  // a message at the top of the page (what an action did)
  say(kind, text) {
    if (this.live) flash(kind, text);
  }
}

function flash(kind, text) {
  notice.className = kind;
  notice.textContent = text;
  notice.hidden = !text;
}

function parseHash() {
  const raw = window.location.hash.replace(/^#\/?/, '');
  const [pathPart, queryPart = ''] = raw.split('?');
  const path = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  return { path, query: Object.fromEntries(new URLSearchParams(queryPart)) };
}

function render() {
  if (current) current.close();
  flash('', '');
  if (!apiKey.get()) {
    showLogin();
    return;
  }
  document.getElementById('sign-out').hidden = false;
  const { path, query } = parseHash();
  const section = PAGES[path[0]] ? path[0] : 'tasks';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.section === section);
  current = new View(path.length ? path : [section], query);
  main.replaceChildren();
  Promise.resolve(PAGES[section](current, path.slice(1))).catch((err) => current.fail(err));
}

function showLogin(why) {
  if (current) current.close();
  document.getElementById('sign-out').hidden = true;
  const input = h('input', { name: 'key', type: 'password', autocomplete: 'off', required: true, autofocus: true });
  const status = h('div');
  const form = h('form', { class: 'card login', onsubmit: (e) => login(e, form, status) },
    h('h1', null, 'Sign in'),
    h('p', null, 'The API key of this gateway (one of API_KEYS). It is kept in this browser tab until you close it.'),
    h('label', null, h('span', null, 'API key'), input),
    h('button', { type: 'submit' }, 'Continue'),
    status);
  main.replaceChildren(form);
  if (why) status.replaceChildren(message('error', why));
  input.focus();
}

async function login(event, form, status) {
  event.preventDefault();
  apiKey.set(formValues(form).key || '');
  try {
    await get('/webhook/offline-conversions'); // any call under the key: does the gateway take it?
  } catch (err) {
    if (err.status === 401 || err.status === 429) {
      apiKey.forget();
      status.replaceChildren(message('error', err.message));
      return;
    }
  }
  render();
}

document.getElementById('sign-out').addEventListener('click', () => {
  apiKey.forget();
  render();
});

document.getElementById('quick-search').addEventListener('submit', (event) => {
  event.preventDefault();
  const { client_id: clientId } = formValues(event.target);
  if (clientId) window.location.hash = route('search', { client_id: clientId });
});

window.addEventListener('hashchange', render);
render();
