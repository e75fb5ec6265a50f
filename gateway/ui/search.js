// Search conversion rows across uploads and webhook batches by visitor or order identifiers.

import { get } from './api.js';
import { badge, field, formValues, h, link, pager, table, time } from './dom.js';

const FIELDS = [['client_id', 'ClientID'], ['user_id', 'User id'], ['yclid', 'yclid'], ['purchase_id', 'Purchase id'], ['crm_id', 'CRM id']];
const PAGE = 50;

export function page(view) {
  const q = view.query;
  const form = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); view.go(formValues(e.target)); } },
    FIELDS.map(([name, label]) => field(label, h('input', { name, value: q[name] || '' }))),
    h('button', { type: 'submit' }, 'Search'));
  const box = h('div', { class: 'card' });
  view.show(h('h1', null, 'Search conversions'), form, box);
  if (!FIELDS.some(([name]) => q[name])) {
    box.replaceChildren(h('p', { class: 'muted' }, 'Give at least one identifier.'));
    return undefined;
  }
  const load = async () => {
    try {
      const filters = Object.fromEntries(FIELDS.map(([name]) => [name, q[name]]));
      const found = await get('/search', { ...filters, limit: PAGE, offset: q.offset });
      if (!view.live) return;
      box.replaceChildren(
        table([
          ['Where', where],
          ['Row', (r) => r.row],
          ['ClientID', (r) => r.client_id ?? ''],
          ['User id', (r) => r.user_id ?? ''],
          ['yclid', (r) => r.yclid ?? ''],
          ['Purchase', (r) => r.purchase_id ?? ''],
          ['CRM id', (r) => r.crm_id ?? ''],
          ['Goal', (r) => r.target ?? ''],
          ['Status', (r) => badge(r.status)],
          ['Error', (r) => (r.error ? h('span', { class: 'error-text' }, r.error) : '')],
          ['Created', (r) => time(r.created_at)],
        ], found.data, 'No conversion matches.'),
        pager(found.pagination, (offset) => view.go({ ...q, offset })));
    } catch (err) {
      view.fail(err, box);
    }
  };
  return load();
}

function where(r) {
  if (r.kind === 'webhook_batch' && r.webhook_id) return link(`batch ${r.batch_id.slice(0, 8)}`, 'webhooks', r.webhook_id, 'batches', r.batch_id);
  const id = r.upload_id || r.batch_id;
  return id ? link(`upload ${id.slice(0, 8)}`, 'uploads', id) : '—';
}
