// Schedules: every day the scheduler scores a counter's yesterday (and uploads it, if asked). The list with a
// form that creates one, and one schedule with its runs; pause, resume, change the time, delete. A schedule's
// token is sent once, from a password field, and never shown again (the API never returns it).

import { del, get, patch, post } from './api.js';
import { badge, field, formValues, h, link, pager, table, time, zonedTime } from './dom.js';

const PAGE = 50;
const enc = encodeURIComponent;

export function list(view) {
  const q = view.query;
  const status = h('div');
  const form = h('form', { class: 'filters', onsubmit: (e) => create(e, view, form, status, load) },
    field('Counter', h('input', { name: 'counter', inputmode: 'numeric', required: true, size: 12 })),
    field('Metrika OAuth token', h('input', { name: 'token', type: 'password', autocomplete: 'off', required: true })),
    field('Time (counter-local)', h('input', { name: 'time', type: 'time', value: '03:00', required: true })),
    field('Upload as goal (optional)', h('input', { name: 'target', placeholder: 'e.g. level4', size: 14 })),
    h('button', { type: 'submit' }, 'Create schedule'));
  const box = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  view.show(
    h('h1', null, 'Schedules'),
    h('div', { class: 'card' },
      h('h2', null, 'New schedule'),
      h('p', { class: 'muted' }, 'Every day, once the time has passed in the counter\'s time zone, its yesterday is ' +
        'scored and, with a goal, its level-4+ visits are uploaded to Metrika as that goal\'s conversions.'),
      form, status),
    box);

  const load = async () => {
    try {
      const page = await get('/schedules', { limit: PAGE, offset: q.offset });
      if (!view.live) return;
      box.replaceChildren(
        table([
          ['Counter', (s) => link(String(s.counter), 'schedules', s.schedule_id)],
          ['Runs at', (s) => [h('span', { class: 'nowrap' }, s.time), ' ', h('span', { class: 'zone' }, s.timezone)]],
          ['Upload', (s) => (s.upload ? s.upload.target : '—')],
          ['State', (s) => badge(s.paused ? 'paused' : 'active')],
          ['Next run', (s) => (s.paused ? '—' : zonedTime(s.next_run_at, s.timezone))],
          ['Last run', (s) => lastRun(s.last_run)],
          ['', (s) => h('div', { class: 'actions' }, pauseButton(view, s, load), deleteButton(view, s, load))],
        ], page.data, 'No schedules yet. Create one above.'),
        pager(page.pagination, (offset) => view.go({ ...q, offset })));
    } catch (err) {
      view.fail(err, box);
    }
  };
  return load();
}

async function create(event, view, form, status, reload) {
  event.preventDefault();
  const values = formValues(form);
  const body = {
    counter: /^\d+$/.test(values.counter || '') ? Number(values.counter) : values.counter,
    token: values.token,
    time: values.time,
    upload: values.target ? { target: values.target } : null,
  };
  status.replaceChildren();
  try {
    const s = await post('/schedules', body);
    form.reset(); // the token leaves the page with the form's values
    view.say('info', `Counter ${s.counter} is scored every day at ${s.time} ${s.timezone}.`);
    await reload();
  } catch (err) {
    form.elements.token.value = '';
    view.fail(err, status);
  }
}

function lastRun(run) {
  if (!run) return h('span', { class: 'muted' }, 'none yet');
  return [badge(run.status), ' ', h('span', { class: 'nowrap' }, run.date)];
}

function pauseButton(view, s, after, size = 'small') {
  const verb = s.paused ? 'resume' : 'pause';
  return h('button', { type: 'button', class: size, onclick: async () => {
    try {
      await post(`/schedules/${enc(s.schedule_id)}/${verb}`);
      view.say('info', s.paused ? `Counter ${s.counter}'s schedule runs again from yesterday on.`
        : `Counter ${s.counter}'s schedule is paused: no run until it is resumed.`);
      await after();
    } catch (err) {
      view.fail(err);
    }
  } }, s.paused ? 'Resume' : 'Pause');
}

function deleteButton(view, s, after) {
  return h('button', { type: 'button', class: 'small', onclick: async () => {
    if (!window.confirm(`Delete counter ${s.counter}'s schedule? Its runs made stay.`)) return;
    try {
      await del(`/schedules/${enc(s.schedule_id)}`);
      view.say('info', `Counter ${s.counter}'s schedule was deleted.`);
      await after();
    } catch (err) {
      view.fail(err);
    }
  } }, 'Delete');
}

export function detail(view, scheduleId) {
  const q = view.query;
  const card = h('div', { class: 'card' }, h('p', { class: 'muted' }, 'Loading…'));
  const runs = h('div', { class: 'card' }, h('h2', null, 'Runs'), h('p', { class: 'muted' }, 'Loading…'));
  view.show(h('h1', null, 'Schedule ', h('code', null, scheduleId)), h('p', null, link('← all schedules', 'schedules')),
    card, runs);
  let shown = '';
  let shownRuns = '';
  let gone = false;

  const load = async (force) => {
    try {
      const s = await get(`/schedules/${enc(scheduleId)}`);
      if (!view.live) return;
      const text = JSON.stringify(s);
      if (force || text !== shown) card.replaceChildren(scheduleCard(view, s, () => load(true)));
      shown = text;
      const page = await get(`/schedules/${enc(scheduleId)}/runs`, { limit: PAGE, offset: q.offset });
      if (!view.live) return;
      const runsText = JSON.stringify(page);
      if (runsText === shownRuns) return; // redrawn only when it changed: a click is never lost to a poll
      shownRuns = runsText;
      runs.replaceChildren(h('h2', null, 'Runs'),
        table([
          ['Day', (r) => h('span', { class: 'nowrap' }, r.date)],
          ['Kind', (r) => r.kind],
          ['Status', (r) => badge(r.status)],
          ['Task', (r) => link(r.task_id.slice(0, 8), 'tasks', r.task_id)],
          ['Upload', (r) => (r.upload_id
            ? h('span', { class: 'nowrap' }, link(r.upload_id.slice(0, 8), 'uploads', r.upload_id), ' ',
              r.upload_status ? badge(r.upload_status) : '')
            : '—')],
          ['Note', (r) => (r.note ? h('span', { class: r.status === 'failed' ? 'error-text' : '' }, r.note) : '')],
          ['Started', (r) => time(r.created_at)],
        ], page.data, 'No run yet: the first one starts at the next run time.'),
        pager(page.pagination, (offset) => view.go({ ...q, offset })));
    } catch (err) {
      gone = err.status === 404;
      view.fail(err, card);
    }
  };
  view.every(async () => { if (!gone) await load(false); }, 3000); // runs appear as the scheduler makes them
  return load(true);
}

function scheduleCard(view, s, reload) {
  const id = enc(s.schedule_id);
  const facts = [
    ['Counter', s.counter],
    ['Runs at', [s.time, ' ', h('span', { class: 'zone' }, s.timezone), ' (the counter\'s time zone)']],
    ['Upload', s.upload ? `level-4+ visits as goal ${s.upload.target}` : 'nothing (scores only)'],
    ['State', badge(s.paused ? 'paused' : 'active')],
    ['Next run', s.paused ? '— (paused)' : zonedTime(s.next_run_at, s.timezone)],
    ['Callback', s.callback_url ?? '—'],
    ['Created', time(s.created_at)],
    ['Changed', time(s.updated_at)],
  ];
  const status = h('div');
  const timeInput = h('input', { name: 'time', type: 'time', value: s.time, required: true });
  const timeForm = h('form', { class: 'inline', onsubmit: async (e) => {
    e.preventDefault();
    status.replaceChildren();
    try {
      const changed = await patch(`/schedules/${id}`, { time: formValues(timeForm).time });
      view.say('info', `Runs start at ${changed.time} ${changed.timezone} from now on.`);
      await reload();
    } catch (err) {
      view.fail(err, status);
    }
  } }, field('Time (counter-local)', timeInput), h('button', { type: 'submit' }, 'Change time'));
  const remove = h('button', { type: 'button', onclick: async () => {
    if (!window.confirm(`Delete counter ${s.counter}'s schedule? Its runs made stay.`)) return;
    try {
      await del(`/schedules/${id}`);
      window.location.hash = '#/schedules';
    } catch (err) {
      view.fail(err, status);
    }
  } }, 'Delete');
  return h('div', null,
    h('dl', { class: 'facts' }, facts.map(([k, v]) => [h('dt', null, k), h('dd', null, v)])),
    h('div', { class: 'actions filters' }, timeForm, pauseButton(view, s, reload, null), remove),
    status);
}
