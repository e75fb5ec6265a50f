// Webhooks: create, rotate the secret (shown once), deactivate; a webhook's batches and one batch.

import { get, patch, post } from './api.js';
import { badge, field, formValues, h, link, pager, select, table, time } from './dom.js';
import { BATCH_STATUSES, batchCard } from './uploads.js';

const BASE = '/webhook/offline-conversions';
const SOURCES = [['json', 'JSON (your own sender)'], ['amocrm', 'amoCRM'], ['bitrix24', 'Bitrix24']];
const PAGE = 50;
const enc = encodeURIComponent;

export function list(view) {
  const secretBox = h('div');
  const box = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  const load = async () => {
    try {
      const hooks = await get(BASE);
      if (!view.live) return;
      box.replaceChildren(table([
        ['Name', (w) => link(w.name, 'webhooks', w.webhook_id)],
        ['Source', (w) => w.source],
        ['Counter', (w) => w.counter_id],
        ['State', (w) => badge(w.is_active ? 'active' : 'inactive')],
        ['Created', (w) => time(w.created_at)],
        ['URL', (w) => h('code', { class: 'url' }, w.url)],
        ['', (w) => actions(view, w, secretBox, load)],
      ], hooks, 'No webhooks yet: create one below.'));
    } catch (err) {
      view.fail(err, box);
    }
  };
  view.show(h('h1', null, 'Webhooks'), secretBox, box, createForm(view, secretBox, load));
  return load();
}

function actions(view, w, secretBox, reload) {
  const rotate = async () => {
    if (!window.confirm(`Rotate the secret of "${w.name}"? Senders using the old secret will be refused.`)) return;
    try {
      showSecret(secretBox, w.name, await post(`${BASE}/${enc(w.webhook_id)}/rotate-secret`));
    } catch (err) {
      view.fail(err);
    }
  };
  const toggle = async () => {
    if (w.is_active && !window.confirm(`Deactivate "${w.name}"? Its sender will be refused until you activate it.`)) return;
    try {
      await patch(`${BASE}/${enc(w.webhook_id)}`, { is_active: !w.is_active });
      view.say('info', `Webhook "${w.name}" is ${w.is_active ? 'deactivated' : 'active again'}.`);
      await reload();
    } catch (err) {
      view.fail(err);
    }
  };
  return h('span', { class: 'actions' },
    link('Batches', 'webhooks', w.webhook_id),
    h('button', { type: 'button', class: 'small', onclick: rotate }, 'Rotate secret'),
    h('button', { type: 'button', class: 'small', onclick: toggle }, w.is_active ? 'Deactivate' : 'Activate'));
}

// the secret is shown once, here, and never again by the API
function showSecret(box, name, answer) {
  box.replaceChildren(h('div', { class: 'card secret', role: 'status' },
    h('h2', null, `New secret of "${name}"`),
    h('p', null, 'Copy it now: it is not shown again. Send it as the X-Webhook-Secret header (a CRM uses the URL with it).'),
    h('dl', { class: 'facts' },
      h('dt', null, 'Secret'), h('dd', null, h('code', { class: 'secret-value' }, answer.secret)),
      h('dt', null, 'URL'), h('dd', null, h('code', null, answer.url))),
    h('button', { type: 'button', class: 'small', onclick: () => box.replaceChildren() }, 'I have copied it')));
}

function createForm(view, secretBox, reload) {
  const status = h('div');
  const form = h('form', { class: 'card create', onsubmit: async (event) => {
    event.preventDefault();
    const values = formValues(form);
    const body = { name: values.name, counter_id: Number(values.counter_id), token: values.token, source: values.source };
    if (values.description) body.description = values.description;
    try {
      if (values.mapping) body.mapping = JSON.parse(values.mapping);
    } catch (err) {
      status.replaceChildren(h('p', { class: 'message error' }, `The mapping is not JSON: ${err.message}`));
      return;
    }
    try {
      const answer = await post(BASE, body);
      form.reset();
      status.replaceChildren();
      showSecret(secretBox, values.name, answer);
      await reload();
    } catch (err) {
      view.fail(err, status);
    }
  } },
  h('h2', null, 'New webhook'),
  h('div', { class: 'grid' },
    field('Name', h('input', { name: 'name', required: true })),
    field('Counter', h('input', { name: 'counter_id', required: true, inputmode: 'numeric' })),
    field('Metrika OAuth token', h('input', { name: 'token', type: 'password', required: true, autocomplete: 'off' })),
    field('Source', select('source', SOURCES, 'json')),
    field('Description', h('input', { name: 'description' })),
    field('CRM mapping (JSON, CRM sources only)', h('textarea', { name: 'mapping', rows: 2 }))),
  h('button', { type: 'submit' }, 'Create webhook'),
  status);
  return form;
}

export function batches(view, webhookId) {
  const q = view.query;
  const filters = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); view.go(formValues(e.target)); } },
    field('Status', select('status', BATCH_STATUSES, q.status)),
    field('Since', h('input', { name: 'since', type: 'datetime-local', value: q.since || '' })),
    field('Until', h('input', { name: 'until', type: 'datetime-local', value: q.until || '' })),
    h('button', { type: 'submit' }, 'Filter'));
  const box = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  view.show(h('h1', null, 'Batches of webhook ', h('code', null, webhookId)), h('p', null, link('← all webhooks', 'webhooks')), filters, box);
  const load = async () => {
    try {
      const page = await get(`${BASE}/${enc(webhookId)}/batches`,
        { status: q.status, since: utc(q.since), until: utc(q.until), limit: PAGE, offset: q.offset });
      if (!view.live) return;
      box.replaceChildren(
        table([
          ['Batch', (b) => link(b.batch_id.slice(0, 8), 'webhooks', webhookId, 'batches', b.batch_id)],
          ['Status', (b) => badge(b.status)],
          ['Rows', (b) => b.total],
          ['Sent', (b) => b.processed ?? '—'],
          ['Received', (b) => time(b.received_at)],
          ['Finished', (b) => time(b.finished_at)],
        ], page.data, 'No batches match.'),
        pager(page.pagination, (offset) => view.go({ ...q, offset })));
    } catch (err) {
      view.fail(err, box);
    }
  };
  return load();
}

// a datetime-local value (the browser's time) as ISO 8601 UTC
function utc(local) {
  if (!local) return undefined;
  const when = new Date(local);
  return Number.isNaN(when.getTime()) ? local : when.toISOString();
}

export function batch(view, webhookId, batchId) {
  view.show(h('h1', null, 'Batch ', h('code', null, batchId)),
    h('p', null, link('← batches of this webhook', 'webhooks', webhookId)),
    batchCard(view, batchId, `${BASE}/${enc(webhookId)}/batches/${enc(batchId)}/retry`));
}
