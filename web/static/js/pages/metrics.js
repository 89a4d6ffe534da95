// Metrics page: per job / per queue throughput and runtime over the snapshots (Chart.js, vendored),
// and runtime percentiles.

import {api, authHeaders, config, pageUrl, seg} from '../api.js';
import {fmtNumber, fmtTime, h, mount, table} from '../dom.js';

const charts = new Set();

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function lineChart(canvas, labels, datasets, unit) {
  if (typeof window.Chart !== 'function') return null;
  const text = cssVar('--muted');
  const grid = cssVar('--border');
  const chart = new window.Chart(canvas, {
    type: 'line',
    data: {labels, datasets: datasets.map((d) => ({tension: 0.25, pointRadius: 2, borderWidth: 2, fill: false, ...d}))},
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: {mode: 'index', intersect: false},
      scales: {
        x: {ticks: {color: text, maxRotation: 0, autoSkip: true}, grid: {color: grid}},
        y: {beginAtZero: true, ticks: {color: text}, grid: {color: grid}, title: {display: Boolean(unit), text: unit, color: text}},
      },
      plugins: {legend: {labels: {color: text}}},
    },
  });
  charts.add(chart);
  return chart;
}

function destroyCharts() {
  for (const c of charts) c.destroy();
  charts.clear();
}

/** Percentiles from a snapshot: p50/p95/p99 fields, runtime_p50..., or a percentiles object (seconds). */
function percentiles(s) {
  const src = s.percentiles || s;
  const pick = (k) => src[k] ?? src[`runtime_${k}`];
  return {p50: pick('p50'), p95: pick('p95'), p99: pick('p99')};
}

// Runtime percentiles: the API's fields when it has them, else computed from the runtime histogram
// of the Prometheus exposition at <path>/metrics (cumulative since metrics began), interpolated
// linearly inside a bucket as horizon.repositories.metrics.percentile does.
const HISTOGRAM = {jobs: ['horizon_job_runtime_seconds_bucket', 'job'], queues: ['horizon_queue_runtime_seconds_bucket', 'queue']};

function unescapeLabel(v) {
  return v.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
}

/** [[upper bound seconds, cumulative count], ...] for one name, +Inf last; [] when absent. */
export function histogramFromExposition(text, type, name) {
  const [metric, label] = HISTOGRAM[type];
  const rows = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`)) continue;
    const close = line.lastIndexOf('}');
    const labels = {};
    for (const m of line.slice(metric.length + 1, close).matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]] = unescapeLabel(m[2]);
    if (labels[label] !== name) continue;
    rows.push([labels.le === '+Inf' ? Infinity : Number(labels.le), Number(line.slice(close + 1).trim())]);
  }
  return rows.sort((a, b) => a[0] - b[0]);
}

export function quantile(rows, q) {
  if (!rows.length) return null;
  const total = rows[rows.length - 1][1];
  if (!total) return 0;
  const finite = rows.filter((r) => Number.isFinite(r[0]));
  const rank = q * total;
  let previous = 0;
  for (let i = 0; i < rows.length; i++) {
    const count = rows[i][1] - previous;
    if (count && previous + count >= rank) {
      if (!Number.isFinite(rows[i][0])) return finite[finite.length - 1][0];
      const lower = i ? rows[i - 1][0] : 0;
      return lower + (rows[i][0] - lower) * Math.max(rank - previous, 0) / count;
    }
    previous = rows[i][1];
  }
  return finite.length ? finite[finite.length - 1][0] : null;
}

async function exposedPercentiles(type, name) {
  try {
    const response = await fetch(`${config.path}/metrics`, {headers: {Accept: 'text/plain', ...authHeaders()}, cache: 'no-store'});
    if (!response.ok) return {};
    const rows = histogramFromExposition(await response.text(), type, name);
    if (!rows.length) return {};
    return {p50: quantile(rows, 0.5), p95: quantile(rows, 0.95), p99: quantile(rows, 0.99)};
  } catch {
    return {};
  }
}

const ms = (seconds) => (seconds === undefined || seconds === null ? null : Number(seconds) * 1000);

function chartBox(title, key) {
  const canvas = h('canvas', {role: 'img', 'aria-label': title});
  return [h('section', {class: 'panel chart-panel', 'data-chart': key}, h('h3', {}, title), h('div', {class: 'chart-box'}, canvas)), canvas];
}

export default function metricsPage(main, {type = 'jobs', name} = {}) {
  const list = h('div', {class: 'metric-names'});
  const detail = h('div', {class: 'metric-detail'});
  const tab = (t, label) => h('a', {href: pageUrl(`metrics/${t}`), 'data-link': true, class: `tab${t === type ? ' active' : ''}`}, label);
  mount(main, h('h1', {}, 'Metrics'), h('nav', {class: 'tabs', 'aria-label': 'Metric kind'}, tab('jobs', 'Jobs'), tab('queues', 'Queues')),
    h('div', {class: 'metrics-layout'}, list, detail));

  async function loadNames() {
    const names = await api(`metrics/${type}`);
    mount(list, names && names.length
      ? h('ul', {class: 'name-list'}, names.map((n) => h('li', {},
        h('a', {href: pageUrl(`metrics/${type}/${seg(n)}`), 'data-link': true, class: n === name ? 'active' : ''}, n))))
      : h('p', {class: 'empty'}, `No ${type === 'jobs' ? 'job' : 'queue'} has been measured yet.`));
  }

  async function loadDetail() {
    destroyCharts();
    if (!name) {
      mount(detail, h('p', {class: 'empty'}, `Pick a ${type === 'jobs' ? 'job' : 'queue'} to see its throughput and runtime.`));
      return;
    }
    const snaps = (await api(`metrics/${type}/${seg(name)}`)) || [];
    const labels = snaps.map((s) => new Date(Number(s.time) * 1000).toLocaleTimeString(undefined, {hour: '2-digit', minute: '2-digit'}));
    const [throughputBox, throughputCanvas] = chartBox('Throughput (jobs per snapshot)', 'throughput');
    const [runtimeBox, runtimeCanvas] = chartBox('Runtime (ms)', 'runtime');
    const last = snaps[snaps.length - 1] || {};
    let pct = percentiles(last);
    if (pct.p50 == null) pct = await exposedPercentiles(type, name);
    mount(detail,
      h('h2', {class: 'metric-title'}, name),
      snaps.length ? null : h('p', {class: 'empty'}, 'No snapshot yet: one is taken every snapshot interval (or run `horizon snapshot`).'),
      h('div', {class: 'cards'},
        h('div', {class: 'card', 'data-stat': 'p50'}, h('div', {class: 'card-label'}, 'p50 runtime'), h('div', {class: 'card-value'}, pct.p50 == null ? '–' : `${fmtNumber(ms(pct.p50), 2)} ms`), h('div', {class: 'card-extra muted'}, 'all jobs measured')),
        h('div', {class: 'card', 'data-stat': 'p95'}, h('div', {class: 'card-label'}, 'p95 runtime'), h('div', {class: 'card-value'}, pct.p95 == null ? '–' : `${fmtNumber(ms(pct.p95), 2)} ms`), h('div', {class: 'card-extra muted'}, 'all jobs measured')),
        h('div', {class: 'card', 'data-stat': 'p99'}, h('div', {class: 'card-label'}, 'p99 runtime'), h('div', {class: 'card-value'}, pct.p99 == null ? '–' : `${fmtNumber(ms(pct.p99), 2)} ms`), h('div', {class: 'card-extra muted'}, 'all jobs measured'))),
      h('div', {class: 'charts'}, throughputBox, runtimeBox),
      h('details', {class: 'panel'}, h('summary', {}, `${snaps.length} snapshot${snaps.length === 1 ? '' : 's'}`),
        table([
          {label: 'Time', cell: (s) => fmtTime(s.time)},
          {label: 'Throughput', class: 'num', cell: (s) => fmtNumber(s.throughput)},
          {label: 'Runtime (ms)', class: 'num', cell: (s) => fmtNumber(ms(s.runtime), 2)},
          type === 'queues' ? {label: 'Wait (s)', class: 'num', cell: (s) => fmtNumber(s.wait, 1)} : null,
        ].filter(Boolean), snaps.slice().reverse(), {empty: 'No snapshots.'})));
    if (!snaps.length) return;
    const accent = cssVar('--accent');
    lineChart(throughputCanvas, labels, [{label: 'Throughput', data: snaps.map((s) => Number(s.throughput) || 0), borderColor: accent, backgroundColor: accent}], 'jobs');
    const runtimeSets = [{label: 'Average', data: snaps.map((s) => ms(s.runtime)), borderColor: accent, backgroundColor: accent}];
    const colors = {p50: cssVar('--ok'), p95: cssVar('--warn'), p99: cssVar('--bad')};
    for (const k of ['p50', 'p95', 'p99']) {
      const data = snaps.map((s) => ms(percentiles(s)[k]));
      if (data.some((v) => v !== null)) runtimeSets.push({label: k, data, borderColor: colors[k], backgroundColor: colors[k], borderDash: [4, 3]});
    }
    lineChart(runtimeCanvas, labels, runtimeSets, 'ms');
  }

  async function load() { await Promise.all([loadNames(), loadDetail()]); }
  return {load, refresh: loadNames, leave: destroyCharts, slow: true};
}
