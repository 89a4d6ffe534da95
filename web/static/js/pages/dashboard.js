// Dashboard page: status and key figures, workload per queue, masters and their supervisors.

import {api} from '../api.js';
import {fmtAgo, fmtDuration, fmtNumber, h, mount, statusBadge, table} from '../dom.js';

function card(key, label, value, extra) {
  return h('div', {class: 'card', 'data-stat': key},
    h('div', {class: 'card-label'}, label),
    h('div', {class: 'card-value'}, value),
    extra ? h('div', {class: 'card-extra muted'}, extra) : null);
}

function fmtMinutes(minutes) {
  const m = Number(minutes);
  if (m >= 1440 && m % 1440 === 0) return `${m / 1440} day${m === 1440 ? '' : 's'}`;
  if (m >= 60 && m % 60 === 0) return `${m / 60} hour${m === 60 ? '' : 's'}`;
  return `${fmtNumber(m)} min`;
}

function maxWait(wait) {
  const entries = Object.entries(wait || {});
  if (!entries.length) return [null, null];
  return entries.reduce((best, e) => (Number(e[1]) > Number(best[1]) ? e : best));
}

function statsCards(stats) {
  const [waitQueue, waitSeconds] = maxWait(stats.wait);
  const periods = stats.periods || {};
  return h('div', {class: 'cards'},
    card('status', 'Status', statusBadge(stats.status), stats.pausedMasters ? `${stats.pausedMasters} paused master(s)` : null),
    card('jobsPerMinute', 'Jobs per minute', fmtNumber(stats.jobsPerMinute, 1)),
    card('recentJobs', 'Recent jobs', fmtNumber(stats.recentJobs), periods.recentJobs ? `past ${fmtMinutes(periods.recentJobs)}` : null),
    card('failedJobs', 'Failed jobs', fmtNumber(stats.failedJobs ?? stats.recentlyFailed), periods.failedJobs ? `past ${fmtMinutes(periods.failedJobs)}` : null),
    card('processes', 'Processes', fmtNumber(stats.processes)),
    card('maxWait', 'Max wait', waitSeconds === null ? '–' : fmtDuration(waitSeconds), waitQueue),
    card('queueWithMaxRuntime', 'Max runtime', stats.queueWithMaxRuntime || '–'),
    card('queueWithMaxThroughput', 'Max throughput', stats.queueWithMaxThroughput || '–'));
}

function workloadTable(workload) {
  const rows = [];
  for (const q of workload) {
    rows.push(q);
    for (const sub of q.split_queues || []) rows.push({...sub, sub: true});
  }
  return table([
    {label: 'Queue', cell: (q) => (q.sub ? h('span', {class: 'sub'}, '↳ ', q.name) : q.name)},
    {label: 'Processes', class: 'num', cell: (q) => (q.sub ? '' : fmtNumber(q.processes))},
    {label: 'Jobs', class: 'num', cell: (q) => fmtNumber(q.length)},
    {label: 'Wait', class: 'num', cell: (q) => fmtDuration(q.wait)},
  ], rows, {empty: 'No queues yet.', rowAttrs: (q) => ({'data-queue': q.name})});
}

function processesText(processes) {
  const entries = Object.entries(processes || {});
  if (!entries.length) return '–';
  return h('span', {class: 'proc-list'}, entries.map(([q, n]) => h('span', {class: 'proc'}, `${q}: ${n}`)));
}

function workersDetails(workers) {
  if (!workers || !workers.length) return null;
  return h('details', {class: 'workers'}, h('summary', {}, `${workers.length} worker process${workers.length === 1 ? '' : 'es'}`),
    table([
      {label: 'PID', class: 'num', cell: (w) => w.pid},
      {label: 'Queue', cell: (w) => w.queue},
      {label: 'Status', cell: (w) => statusBadge(w.status)},
      {label: 'Jobs', class: 'num', cell: (w) => fmtNumber(w.jobs)},
      {label: 'Memory', class: 'num', cell: (w) => (w.memory === undefined ? '–' : `${fmtNumber(w.memory, 1)} MB`)},
      {label: 'Started', cell: (w) => fmtAgo(w.started_at)},
    ], workers));
}

function mastersSection(masters) {
  const list = Object.values(masters || {});
  if (!list.length) return h('p', {class: 'empty'}, 'No master supervisor is running.');
  return list.map((m) => h('article', {class: 'panel master', 'data-master': m.name},
    h('header', {class: 'panel-head'},
      h('h3', {}, m.name),
      statusBadge(m.status),
      h('span', {class: 'muted'}, [m.environment, m.pid ? `pid ${m.pid}` : null].filter(Boolean).join(' · '))),
    table([
      {label: 'Supervisor', cell: (s) => h('div', {}, s.name, workersDetails(s.workers))},
      {label: 'Status', cell: (s) => statusBadge(s.status)},
      {label: 'Processes', cell: (s) => processesText(s.processes)},
      {label: 'Balancing', cell: (s) => (s.options && s.options.balance !== undefined ? String(s.options.balance) : '–')},
    ], m.supervisors || [], {empty: 'No supervisors.'})));
}

export default function dashboardPage(main) {
  const cards = h('div', {class: 'cards-holder'});
  const workload = h('div');
  const masters = h('div');
  mount(main,
    h('h1', {}, 'Dashboard'),
    cards,
    h('section', {class: 'panel'}, h('h2', {}, 'Current workload'), workload),
    h('section', {}, h('h2', {}, 'Masters and supervisors'), masters));
  async function refresh() {
    const [stats, load, ms] = await Promise.all([api('stats'), api('workload'), api('masters')]);
    mount(cards, statsCards(stats));
    mount(workload, workloadTable(load || []));
    mount(masters, mastersSection(ms));
  }
  return {refresh, load: refresh};
}
