// Uploads of offline conversions (bulk from a task, single), and one batch's status with its row errors; the
// batch part serves webhook batches too.

import { get, post } from './api.js';
import { badge, field, formValues, h, link, pager, select, table, time } from './dom.js';

export const BATCH_STATUSES = [['', 'any status'], ['accepted', 'accepted'], ['pending', 'pending'], ['uploaded', 'uploaded'],
  ['processing', 'processing'], ['completed', 'completed'], ['error', 'error']];
const FINAL = new Set(['completed', 'processed', 'error']);
const IN_FLIGHT = new Set(['uploaded', 'processing']);
const PAGE = 50;
const enc = encodeURIComponent;

export function list(view) {
  const q = view.query;
  const filters = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); view.go(formValues(e.target)); } },
    field('Task', h('input', { name: 'task_id', value: q.task_id || '', placeholder: 'task id', size: 36 })),
    field('Status', select('status', BATCH_STATUSES, q.status)),
    h('button', { type: 'submit' }, 'Filter'));
  const box = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  view.show(h('h1', null, 'Uploads'), filters, box);
  let active = false;

  const load = async () => {
    try {
      const page = await get('/conversions', { task_id: q.task_id, status: q.status, limit: PAGE, offset: q.offset });
      if (!view.live) return;
      active = page.data.some((u) => !FINAL.has(u.status));
      box.replaceChildren(
        table([
          ['Upload', (u) => link(u.upload_id.slice(0, 8), 'uploads', u.upload_id)],
          ['Task', (u) => (u.task_id ? link(u.task_id.slice(0, 8), 'tasks', u.task_id) : '—')],
          ['Counter', (u) => u.counter],
          ['Goal', (u) => u.target ?? '—'],
          ['Status', (u) => badge(u.status)],
          ['Rows', (u) => u.total],
          ['Created', (u) => time(u.created_at)],
          ['Finished', (u) => time(u.finished_at)],
        ], page.data, 'No uploads match. POST /conversions/bulk uploads a task\'s visits.'),
        pager(page.pagination, (offset) => view.go({ ...q, offset })));
    } catch (err) {
      view.fail(err, box);
    }
  };
  view.every(async () => { if (active) await load(); }, 3000);
  return load();
}

export function detail(view, uploadId) {
  view.show(h('h1', null, 'Upload ', h('code', null, uploadId)), h('p', null, link('← all uploads', 'uploads')),
    batchCard(view, uploadId, `/conversions/${enc(uploadId)}/retry`));
}

// a batch's status (GET /conversions/{id}/status, readable by API key for every kind of batch), its row
// errors, and a button that sends its failed rows again
export function batchCard(view, batchId, retryPath) {
  const box = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  let final = false;
  const load = async () => {
    try {
      const s = await get(`/conversions/${enc(batchId)}/status`);
      if (!view.live) return;
      final = FINAL.has(s.status);
      // no retry while a file is with Metrika: its answer decides what failed
      const retry = IN_FLIGHT.has(s.status) ? null : retryButton(view, retryPath, load);
      box.replaceChildren(statusFacts(s), retry, rowErrors(s.errors || []));
    } catch (err) {
      final = true;
      view.fail(err, box);
    }
  };
  view.every(async () => { if (!final) await load(); }, 2000);
  load();
  return box;
}

function statusFacts(s) {
  const facts = [
    ['Status', badge(s.status)],
    ['Rows sent to Metrika', `${s.processed ?? 0} of ${s.total ?? 0}`],
    ['Attempts', s.attempts ?? 0],
  ];
  if (s.next_attempt_at) facts.push(['Next attempt', time(s.next_attempt_at)]);
  if (s.last_error) facts.push(['Last error', h('span', { class: 'error-text' }, s.last_error)]);
  return h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

function rowErrors(errors) {
  return h('div', null, h('h2', null, 'Row errors and notes'),
    table([
      ['Row', (e) => (e.index ?? 'batch')],
      ['Reason', (e) => e.reason],
      ['', (e) => (e.status ? badge(e.status) : '')],
    ], errors, 'No row failed.'));
}

function retryButton(view, path, reload) {
  return h('button', { type: 'button', class: 'retry', onclick: async () => {
    try {
      const answer = await post(path);
      view.say('info', answer.retried ? `Sending ${answer.retried} failed row(s) again.` : 'Trying it now.');
      await reload();
    } catch (err) {
      view.fail(err);
    }
  } }, 'Retry failed rows');
}
