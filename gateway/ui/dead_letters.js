// The dead-letter queue: messages a consumer gave up on, why, and a button that sends one again.

import { get, post } from './api.js';
import { badge, field, formValues, h, pager, select, table, time } from './dom.js';

const KEYS = [['', 'any queue'], ['score_tasks', 'scoring tasks'], ['conversion_uploads', 'conversion uploads']];
const REPLAYED = [['', 'all'], ['false', 'not replayed'], ['true', 'replayed']];
const PAGE = 50;

export function list(view) {
  const q = view.query;
  const filters = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); view.go(formValues(e.target)); } },
    field('Queue', select('routing_key', KEYS, q.routing_key)),
    field('Replayed', select('replayed', REPLAYED, q.replayed)),
    h('button', { type: 'submit' }, 'Filter'));
  const box = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  view.show(h('h1', null, 'Dead letters'), filters, box);

  const load = async () => {
    try {
      const page = await get('/dead-letters', { routing_key: q.routing_key, replayed: q.replayed, limit: PAGE, offset: q.offset });
      if (!view.live) return;
      box.replaceChildren(
        table([
          ['#', (d) => d.id],
          ['Queue', (d) => d.routing_key],
          ['Reason', (d) => h('span', { class: 'error-text' }, d.reason)],
          ['Message', (d) => body(d.body)],
          ['Dead since', (d) => time(d.created_at)],
          ['Replayed', (d) => (d.replayed_at ? [badge('replayed'), ` ${d.replay_count}× · ${time(d.replayed_at)}`] : '—')],
          ['', (d) => replayButton(view, d, load)],
        ], page.data, 'The dead-letter queue is empty.'),
        pager(page.pagination, (offset) => view.go({ ...q, offset })));
    } catch (err) {
      view.fail(err, box);
    }
  };
  return load();
}

function body(value) {
  const text = typeof value === 'string' ? value : JSON.stringify(value, null, 2);
  return h('details', null, h('summary', null, text.length > 60 ? text.slice(0, 60) + '…' : text), h('pre', null, text));
}

function replayButton(view, d, reload) {
  return h('button', { type: 'button', class: 'small', onclick: async () => {
    try {
      await post(`/dead-letters/${encodeURIComponent(d.id)}/replay`);
      view.say('info', `Dead letter #${d.id} was sent again to ${d.routing_key}.`);
      await reload();
    } catch (err) {
      view.fail(err);
    }
  } }, 'Replay');
}
