// Job detail page: summary, progress, timeline, exception, payload, retries; retry when failed.

import {api, config, pageUrl, seg} from '../api.js';
import {fmtNumber, fmtTime, h, mount, pre, statusBadge, table, toast} from '../dom.js';
import {retryJob, tagChips} from '../joblist.js';

function field(label, value, key) {
  return [h('dt', {}, label), h('dd', {'data-field': key}, value === undefined || value === null || value === '' ? '–' : value)];
}

function progressBar(progress) {
  if (progress === undefined || progress === null || progress === '') return '–';
  const pct = Math.max(0, Math.min(100, Number(progress) * 100));
  return h('span', {class: 'progress-wrap'},
    h('progress', {max: '100', value: String(pct)}), ` ${fmtNumber(pct, 1)} %`);
}

function timeline(job) {
  const steps = [
    ['Pushed', job.pushed_at], ['Reserved', job.reserved_at],
    ['Completed', job.completed_at], ['Failed', job.failed_at],
  ];
  for (const r of job.retried_by || []) steps.push([`Retried as ${r.id} (${r.status})`, r.retried_at]);
  const items = steps.filter(([, t]) => t).sort((a, b) => Number(a[1]) - Number(b[1]));
  if (!items.length) return h('p', {class: 'empty'}, 'No events yet.');
  return h('ol', {class: 'timeline'}, items.map(([label, t]) =>
    h('li', {}, h('time', {}, fmtTime(t)), ' ', label)));
}

function exceptionSection(exc) {
  if (!exc) return null;
  const e = typeof exc === 'string' ? {message: exc} : exc;
  return h('section', {class: 'panel', 'data-section': 'exception'},
    h('h2', {}, 'Exception'),
    h('p', {class: 'exception-line'}, h('strong', {}, e.class || 'Error'), ': ', e.message || ''),
    e.traceback ? pre(e.traceback) : null);
}

function retriesSection(job) {
  const retries = job.retried_by || [];
  if (!retries.length) return null;
  return h('section', {class: 'panel', 'data-section': 'retries'}, h('h2', {}, 'Retries'),
    table([
      {label: 'Job', cell: (r) => h('a', {href: pageUrl(`jobs/${seg(r.id)}`), 'data-link': true}, r.id)},
      {label: 'Status', cell: (r) => statusBadge(r.status)},
      {label: 'Retried', cell: (r) => fmtTime(r.retried_at)},
    ], retries));
}

export default function jobPage(main, {id, failed}) {
  let related = new Set([id]);
  async function load() {
    const job = await api(failed ? `jobs/failed/${seg(id)}` : `jobs/${seg(id)}`);
    related = new Set([id, ...(job.retried_by || []).map((r) => r.id)]);
    render(job);
  }

  function render(job) {
    const canRetry = job.status === 'failed' && !config.read_only;
    const retryButton = canRetry ? h('button', {type: 'button', class: 'btn btn-primary', 'data-action': 'retry', onclick: async () => {
      retryButton.disabled = true;
      try { await retryJob(job); await load(); } catch (e) { toast(e.message, 'error'); retryButton.disabled = false; }
    }}, 'Retry') : null;
    const payload = job.payload || {};
    mount(main,
      h('div', {class: 'page-head'},
        h('h1', {}, h('span', {class: 'job-title'}, job.name || '(unnamed)'), ' ', statusBadge(job.status)),
        h('div', {class: 'tools'}, retryButton)),
      h('section', {class: 'panel'},
        h('dl', {class: 'fields'},
          field('ID', job.id, 'id'),
          field('Queue', job.queue, 'queue'),
          field('Connection', job.connection, 'connection'),
          field('Status', job.status, 'status'),
          field('Attempts', fmtNumber(job.attempts), 'attempts'),
          field('Tags', tagChips(job.tags), 'tags'),
          field('Progress', progressBar(job.progress), 'progress'),
          field('Pushed', fmtTime(job.pushed_at), 'pushed_at'),
          field('Reserved', fmtTime(job.reserved_at), 'reserved_at'),
          field('Completed', fmtTime(job.completed_at), 'completed_at'),
          field('Failed', fmtTime(job.failed_at), 'failed_at'),
          job.retry_of ? field('Retry of', h('a', {href: pageUrl(`jobs/${seg(job.retry_of)}`), 'data-link': true}, job.retry_of), 'retry_of') : null)),
      exceptionSection(job.exception),
      h('section', {class: 'panel', 'data-section': 'payload'}, h('h2', {}, 'Payload'),
        h('h3', {}, 'Arguments'), pre(payload.args ?? payload),
        payload.kwargs && Object.keys(payload.kwargs).length ? [h('h3', {}, 'Keyword arguments'), pre(payload.kwargs)] : null),
      job.context && Object.keys(job.context).length ? h('section', {class: 'panel'}, h('h2', {}, 'Context'), pre(job.context)) : null,
      h('section', {class: 'panel', 'data-section': 'timeline'}, h('h2', {}, 'Timeline'), timeline(job)),
      retriesSection(job));
  }

  return {load, refresh: load, wants: (name, data) => related.has(data.job_id)};
}
