// Scoring tasks: the list with live progress, and one task's status, charts and result.

import { get, post } from './api.js';
import { bars, split } from './charts.js';
import { badge, field, formValues, h, link, pager, progress, select, table, time } from './dom.js';

const STATUSES = [['', 'any status'], ['pending', 'pending'], ['running', 'running'], ['completed', 'completed'], ['failed', 'failed']];
const ACTIVE = new Set(['pending', 'running']);
const PAGE = 50;
const enc = encodeURIComponent;

export function list(view) {
  const q = view.query;
  const filters = h('form', { class: 'filters', onsubmit: (e) => { e.preventDefault(); view.go(formValues(e.target)); } },
    field('Status', select('status', STATUSES, q.status)),
    field('Counter', h('input', { name: 'counter', inputmode: 'numeric', value: q.counter || '' })),
    field('Day', h('input', { name: 'date', type: 'date', value: q.date || '' })),
    h('button', { type: 'submit' }, 'Filter'));
  const box = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  view.show(h('h1', null, 'Scoring tasks'), filters, box);
  let active = false;

  const load = async () => {
    try {
      const page = await get('/tasks', { status: q.status, counter: q.counter, date: q.date, limit: PAGE, offset: q.offset });
      if (!view.live) return;
      active = page.data.some((t) => ACTIVE.has(t.status));
      box.replaceChildren(
        table([
          ['Task', (t) => link(t.task_id.slice(0, 8), 'tasks', t.task_id)],
          ['Counter', (t) => t.counter],
          ['Day', (t) => h('span', { class: 'nowrap' }, t.date)],
          ['Status', (t) => badge(t.status)],
          ['Progress', (t) => progress(t.progress, t.message)],
          ['Level 4+', (t) => (t.level4_visits ?? '—')],
          ['Visits', (t) => (t.total_visits ?? '—')],
          ['Created', (t) => time(t.created_at)],
          ['Finished', (t) => time(t.finished_at)],
          ['', (t) => (t.status === 'failed' ? retryButton(view, t.task_id, load) : t.error ? h('span', { class: 'error-text' }, t.error) : '')],
        ], page.data, 'No tasks match. Submit one with POST /tasks or the CLI.'),
        pager(page.pagination, (offset) => view.go({ ...q, offset })));
    } catch (err) {
      view.fail(err, box);
    }
  };
  view.every(async () => { if (active) await load(); }, 2000);
  return load();
}

function retryButton(view, taskId, after) {
  return h('button', { type: 'button', class: 'small', onclick: async () => {
    try {
      await post(`/tasks/${enc(taskId)}/retry`);
      view.say('info', `Task ${taskId} is pending again.`);
      await after();
    } catch (err) {
      view.fail(err);
    }
  } }, 'Retry');
}

export function detail(view, taskId) {
  const statusBox = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  const charts = h('div', { class: 'charts' });
  const results = h('div', { class: 'card' });
  view.show(
    h('h1', null, 'Task ', h('code', null, taskId)),
    h('p', null, link('← all tasks', 'tasks'), ' · ', link('uploads of this task', 'uploads', { task_id: taskId })),
    statusBox, charts, results);
  let final = false;

  const loadStatus = async () => {
    try {
      const s = await get(`/tasks/${enc(taskId)}/status`);
      if (!view.live) return;
      statusBox.replaceChildren(statusCard(view, taskId, s, loadStatus));
      if (!final && !ACTIVE.has(s.status)) {
        final = true;
        if (s.status === 'completed') {
          loadCharts(view, taskId, charts);
          resultTable(view, taskId, results);
        }
      }
    } catch (err) {
      final = true;
      view.fail(err, statusBox);
    }
  };
  view.every(async () => { if (!final) await loadStatus(); }, 1500);
  return loadStatus();
}

function statusCard(view, taskId, s, reload) {
  const facts = [
    ['Status', badge(s.status)],
    ['Progress', progress(s.progress, s.message)],
    ['Visits in the day', s.total_visits ?? '—'],
    ['Model', s.model_version ?? '—'],
    ['Started', time(s.started_at)],
    ['Finished', time(s.finished_at)],
  ];
  if (s.attempts) facts.push(['Attempts', s.attempts]);
  if (s.next_attempt_at) facts.push(['Next attempt', time(s.next_attempt_at)]);
  if (s.last_error) facts.push(['Last error', h('span', { class: 'error-text' }, s.last_error)]);
  if (s.error) facts.push(['Error', h('span', { class: 'error-text' }, s.error)]);
  return h('div', null,
    h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    s.status === 'failed' ? retryButton(view, taskId, reload) : null);
}

async function loadCharts(view, taskId, box) {
  box.replaceChildren(h('p', { class: 'muted' }, 'Loading charts…'));
  try {
    const s = await get(`/tasks/${enc(taskId)}/summary`);
    if (!view.live) return;
    const hours = Array.from({ length: 24 }, (_, i) => String(i));
    const edges = s.score_histogram.edges;
    const bins = s.score_histogram.counts.map((_, i) => `${Number(edges[i]).toFixed(1)}`);
    box.replaceChildren(
      h('figure', { class: 'card' }, h('figcaption', null, `Level-4+ visits by hour of day (${s.level4_visits} of ${s.total_visits} visits)`),
        bars(hours, s.by_hour, { title: 'Level-4+ visits by hour of day', labelEvery: 2 })),
      h('figure', { class: 'card' }, h('figcaption', null, 'Score distribution of level-4+ visits'),
        bars(bins, s.score_histogram.counts, { title: 'Score distribution' })),
      h('figure', { class: 'card' }, h('figcaption', null, 'Level-4+ visits: desktop vs mobile'),
        split(devices(s.by_device || {}), { title: 'Desktop vs mobile' })));
  } catch (err) {
    view.fail(err, box);
  }
}

// desktop and mobile, and visits whose device is not known (scored before it was kept) when there are any
function devices(counts) {
  const parts = [['desktop', counts.desktop ?? 0], ['mobile', counts.mobile ?? 0]];
  if (counts.unknown) parts.push(['unknown', counts.unknown]);
  return parts;
}

function resultTable(view, taskId, box) {
  const state = { offset: 0, clientId: '' };
  const input = h('input', { name: 'client_id', placeholder: 'clientId, exactly', inputmode: 'numeric' });
  const rows = h('div');
  const form = h('form', { class: 'filters', onsubmit: (e) => {
    e.preventDefault();
    state.clientId = input.value.trim();
    state.offset = 0;
    load();
  } }, field('Find a visitor', input), h('button', { type: 'submit' }, 'Search'));
  box.replaceChildren(h('h2', null, 'Level-4+ visits'), form, rows);

  const load = async () => {
    try {
      const page = await get(`/tasks/${enc(taskId)}/result`, { limit: PAGE, offset: state.offset, client_id: state.clientId });
      if (!view.live) return;
      rows.replaceChildren(
        table([
          ['visitId', (r) => h('code', null, r.visitId)],
          ['clientId', (r) => h('code', null, r.clientId)],
          ['Started', (r) => r.dateTime],
          ['Duration, s', (r) => r.visitDuration],
          ['Score', (r) => Number(r.score).toFixed(3)],
        ], page.data, state.clientId ? `No level-4+ visit of clientId ${state.clientId}.` : 'No level-4+ visits.'),
        pager(page.pagination, (offset) => { state.offset = offset; load(); }));
    } catch (err) {
      view.fail(err, rows);
    }
  };
  return load();
}
