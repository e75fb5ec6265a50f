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
          ['Day', (t) => dayOf(t)],
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

// a day, a backfill's range, or a re-score's run
function dayOf(t) {
  if (t.kind === 'backfill') return [h('span', { class: 'nowrap' }, `${t.date} – ${t.date_to}`), ' ', h('span', { class: 'muted' }, 'backfill')];
  return [h('span', { class: 'nowrap' }, t.date), t.run > 1 ? [' ', h('span', { class: 'muted' }, `run ${t.run}`)] : null];
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
  const run = view.query.run; // the results of this run of the day (?run=N); else the run the day serves
  const statusBox = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  const daysBox = h('div', { class: 'card', hidden: true });
  const runsBox = h('div', { class: 'card', hidden: true });
  const charts = h('div', { class: 'charts' });
  const results = h('div', { class: 'card', hidden: true });
  view.show(
    h('h1', null, 'Task ', h('code', null, taskId)),
    h('p', null, link('← all tasks', 'tasks'), ' · ', link('uploads of this task', 'uploads', { task_id: taskId })),
    statusBox, daysBox, runsBox, charts, results);
  let runsOpen = false;
  let shown = '';
  let last = null;
  let resultsOf = null; // the run whose results are on the page (its number, or 'served:N')

  const loadStatus = async (force) => {
    try {
      const s = await get(`/tasks/${enc(taskId)}/status`);
      if (!view.live) return;
      last = s;
      const text = JSON.stringify(s);
      if (force || text !== shown) { // redrawn only when it changed: a click is never lost to a poll
        statusBox.replaceChildren(statusCard(view, taskId, s, () => loadStatus(true)));
        if (s.kind === 'backfill') {
          daysBox.hidden = false;
          daysBox.replaceChildren(...daysTable(s));
        }
      }
      shown = text;
      if (s.kind !== 'backfill' && s.latest_run > 1) runsOpen = await loadRuns(view, taskId, s, run, runsBox);
      // results: of the run asked for, else of the run the day serves (again when a re-score completes); of a
      // backfill, its completed days' once every day has ended
      const completedDays = (s.days || []).filter((d) => d.status === 'completed').length;
      const want = run ? String(run)
        : s.kind === 'backfill' ? (!ACTIVE.has(s.status) && completedDays ? `days:${completedDays}` : null)
          : s.served_run ? `served:${s.served_run}` : null;
      if (want && want !== resultsOf) {
        resultsOf = want;
        loadCharts(view, taskId, charts, run);
        resultTable(view, taskId, results, s, run);
      }
    } catch (err) {
      last = null;
      view.fail(err, statusBox);
    }
  };
  view.every(async () => { if (last && (ACTIVE.has(last.status) || runsOpen)) await loadStatus(false); }, 1500);
  return loadStatus(true);
}

function statusCard(view, taskId, s, reload) {
  const facts = [['Status', badge(s.status)], ['Progress', progress(s.progress, s.message)]];
  if (s.kind === 'backfill') {
    const days = s.days || [];
    facts.unshift(['Backfill', `${s.date} – ${s.date_to} (${days.length} days)`]);
    facts.push(['Level-4+ visits', days.reduce((n, d) => n + (d.level4_visits || 0), 0)]);
  } else {
    facts.unshift(['Day', s.date ?? '—']);
    if (s.parent_id) facts.push(['Backfill', link(s.parent_id.slice(0, 8), 'tasks', s.parent_id)]);
    if (s.run) {
      const served = s.served_run ? `; results serve run ${s.served_run}` : '';
      facts.push(['Run', `${s.run} of ${s.latest_run ?? s.run}${served}`]);
    }
    if (s.rescore_of) facts.push(['Re-score of', link(s.rescore_of.slice(0, 8), 'tasks', s.rescore_of)]);
  }
  if (s.kind === 'backfill') facts.push(['Visits in its completed days', s.total_visits ?? '—']);
  else facts.push(['Visits in the day', s.total_visits ?? '—'], ['Model', s.model_version ?? '—']);
  facts.push(
    ['Started', time(s.started_at)],
    ['Finished', time(s.finished_at)],
  );
  if (s.attempts) facts.push(['Attempts', s.attempts]);
  if (s.next_attempt_at) facts.push(['Next attempt', time(s.next_attempt_at)]);
  if (s.last_error) facts.push(['Last error', h('span', { class: 'error-text' }, s.last_error)]);
  if (s.error) facts.push(['Error', h('span', { class: 'error-text' }, s.error)]);
  const failedDays = s.kind === 'backfill' && (s.days || []).some((d) => d.status === 'failed');
  return h('div', null,
    h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    h('div', { class: 'actions' },
      s.status === 'failed' || failedDays ? retryButton(view, taskId, reload) : null,
      s.kind !== 'backfill' && s.served_run ? rescoreButton(view, taskId, s, reload) : null));
}

function rescoreButton(view, taskId, s, after) {
  return h('button', { type: 'button', class: 'retry', onclick: async () => {
    try {
      const answer = await post(`/tasks/${enc(taskId)}/rescore`);
      view.say('info', `Run ${answer.run} of ${s.date} is pending (task ${answer.task_id.slice(0, 8)}); ` +
        `its result is served once it completes.`);
      await after();
    } catch (err) {
      view.fail(err);
    }
  } }, 'Re-score');
}

// a backfill's days: each day's status and progress (of its latest run; completed once a run completed)
function daysTable(s) {
  return [h('h2', null, 'Days'),
    table([
      ['Day', (d) => h('span', { class: 'nowrap' }, d.date)],
      ['Task', (d) => link(d.task_id.slice(0, 8), 'tasks', d.task_id)],
      ['Status', (d) => badge(d.status)],
      ['Progress', (d) => progress(d.progress)],
      ['Runs', (d) => (d.latest_run > 1 ? `${d.latest_run} (serves ${d.served_run ?? '—'})` : d.latest_run)],
      ['Level 4+', (d) => d.level4_visits ?? '—'],
      ['', (d) => (d.error ? h('span', { class: 'error-text' }, d.error) : '')],
    ], s.days || [], 'This backfill has no days.')];
}

// the runs of a day (the day's first task and its re-scores), from GET /tasks of that day; true while one is
// pending or running
async function loadRuns(view, taskId, s, shownRun, box) {
  const root = s.rescore_of || taskId;
  const family = [];
  for (let offset = 0, pages = 0; pages < 10; pages += 1) {
    const page = await get('/tasks', { date: s.date, limit: 1000, offset });
    family.push(...page.data.filter((t) => t.task_id === root || t.rescore_of === root));
    if (!page.pagination.has_more) break;
    offset += page.pagination.limit;
  }
  if (!view.live) return false;
  family.sort((a, b) => a.run - b.run);
  const served = s.served_run;
  const resultsRun = Number(shownRun) || served;
  const text = JSON.stringify([family, resultsRun]);
  if (box.dataset.shown === text) return family.some((t) => ACTIVE.has(t.status)); // unchanged: not redrawn
  box.dataset.shown = text;
  box.hidden = false;
  box.replaceChildren(h('h2', null, 'Runs of this day'),
    table([
      ['Run', (t) => h('span', { class: t.task_id === taskId ? 'current' : '' }, t.run, t.task_id === taskId ? ' (this task)' : '')],
      ['Task', (t) => link(t.task_id.slice(0, 8), 'tasks', t.task_id)],
      ['Status', (t) => badge(t.status)],
      ['Progress', (t) => progress(t.progress, t.message)],
      ['Level 4+', (t) => t.level4_visits ?? '—'],
      ['Finished', (t) => time(t.finished_at)],
      ['Results', (t) => (t.status !== 'completed' ? '—'
        : t.run === resultsRun ? h('span', { class: 'current' }, t.run === served ? 'shown (served)' : 'shown')
          : link(t.run === served ? 'results (served)' : 'results', 'tasks', taskId, { run: t.run }))],
    ], family, 'No runs found.'));
  return family.some((t) => ACTIVE.has(t.status));
}

async function loadCharts(view, taskId, box, run) {
  box.replaceChildren(h('p', { class: 'muted' }, 'Loading charts…'));
  try {
    const s = await get(`/tasks/${enc(taskId)}/summary`, { run });
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

function resultTable(view, taskId, box, status, run) {
  const state = { offset: 0, clientId: '' };
  const input = h('input', { name: 'client_id', placeholder: 'clientId, exactly', inputmode: 'numeric' });
  const rows = h('div');
  const form = h('form', { class: 'filters', onsubmit: (e) => {
    e.preventDefault();
    state.clientId = input.value.trim();
    state.offset = 0;
    load();
  } }, field('Find a visitor', input), h('button', { type: 'submit' }, 'Search'));
  const which = run || (status.latest_run > 1 ? status.served_run : null);
  box.hidden = false;
  box.replaceChildren(h('h2', null, 'Level-4+ visits', which ? ` of run ${which}` : ''), form, rows);

  const load = async () => {
    try {
      const page = await get(`/tasks/${enc(taskId)}/result`, { limit: PAGE, offset: state.offset, client_id: state.clientId, run });
      if (!view.live) return;
      rows.replaceChildren(
        table([
          ...(status.kind === 'backfill' ? [['Day', (r) => h('span', { class: 'nowrap' }, r.date)]] : []),
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
