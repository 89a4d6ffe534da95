// A paged list of jobs: newest first, "Next" pages with the API's starting_at (the last job's
// index), and a "N new jobs" banner instead of rows jumping when new jobs arrive on page one.

import {api, config, pageUrl, seg} from './api.js';
import {fmtAgo, fmtDuration, fmtNumber, h, mount, statusBadge, table, toast} from './dom.js';

export function tagChips(tags) {
  if (!tags || !tags.length) return '–';
  return h('span', {class: 'tags'}, tags.map((t) => h('span', {class: 'tag'}, t)));
}

export function jobLink(job, failed = false) {
  const href = pageUrl(`${failed ? 'failed' : 'jobs'}/${seg(job.id)}`);
  const exc = failed && job.exception && typeof job.exception === 'object' ? job.exception : null;
  return h('a', {href, 'data-link': true, class: 'job-link'},
    h('span', {class: 'job-name'}, job.name || '(unnamed)'),
    h('span', {class: 'job-id muted'}, job.id),
    exc ? h('span', {class: 'job-exception'}, `${exc.class || 'Error'}: ${exc.message || ''}`) : null);
}

const when = {
  recent: (j) => j.completed_at || j.failed_at || j.reserved_at || j.pushed_at,
  pending: (j) => j.pushed_at,
  completed: (j) => j.completed_at,
  silenced: (j) => j.completed_at,
  failed: (j) => j.failed_at,
  monitored: (j) => j.completed_at || j.failed_at || j.pushed_at,
};

export async function retryJob(job) {
  const result = await api(`jobs/retry/${seg(job.id)}`, {method: 'POST'});
  const copy = result && (result.id || (result.job && result.job.id));
  toast(copy ? `Retried ${job.name} as ${copy}` : `Retried ${job.name}`, 'ok');
  return result;
}

export class JobList {
  /** kind: recent|pending|completed|silenced|failed|monitored; fetchPage(startingAt) -> {jobs, total}. */
  constructor({kind, fetchPage, empty}) {
    this.kind = kind;
    this.fetchPage = fetchPage;
    this.empty = empty || 'No jobs.';
    this.starts = [-1];
    this.jobs = [];
    this.total = 0;
    this.banner = h('button', {type: 'button', class: 'banner', hidden: true, onclick: () => this.showNew()});
    this.body = h('div', {class: 'job-rows'});
    this.pager = h('div', {class: 'pager'});
    this.el = h('section', {class: 'job-list', 'data-kind': kind}, this.banner, this.body, this.pager);
  }

  get start() { return this.starts[this.starts.length - 1]; }

  async load() {
    const data = await this.fetchPage(this.start);
    this.render(data);
  }

  /** Live update: page one re-renders only when nothing new arrived; otherwise a banner counts them. */
  async refresh() {
    if (this.start !== -1) return;
    const data = await this.fetchPage(-1);
    const top = this.jobs.length ? Math.max(...this.jobs.map((j) => Number(j.index))) : null;
    const fresh = top === null ? [] : data.jobs.filter((j) => Number(j.index) > top);
    if (fresh.length && this.jobs.length) {
      this.updateRows(data.jobs);
      this.banner.textContent = `${fresh.length} new job${fresh.length === 1 ? '' : 's'} — show`;
      this.banner.hidden = false;
      return;
    }
    this.render(data);
  }

  showNew() {
    this.starts = [-1];
    this.banner.hidden = true;
    this.load().catch((e) => toast(e.message, 'error'));
  }

  updateRows(latest) {
    const byId = new Map(latest.map((j) => [j.id, j]));
    this.jobs = this.jobs.map((j) => byId.get(j.id) || j);
    this.renderRows();
  }

  render(data) {
    this.jobs = data.jobs || [];
    this.total = data.total || 0;
    this.banner.hidden = true;
    this.renderRows();
    this.renderPager();
  }

  columns() {
    const failed = this.kind === 'failed';
    const cols = [
      {label: 'Job', class: 'col-job', cell: (j) => jobLink(j, failed)},
      {label: 'Queue', cell: (j) => j.queue},
      {label: 'Tags', class: 'col-tags', cell: (j) => tagChips(j.tags)},
    ];
    if (['recent', 'pending', 'monitored'].includes(this.kind)) cols.push({label: 'Status', cell: (j) => statusBadge(j.status)});
    if (failed) cols.push({label: 'Attempts', class: 'num', cell: (j) => fmtNumber(j.attempts)});
    if (['completed', 'silenced', 'recent'].includes(this.kind)) {
      cols.push({label: 'Runtime', class: 'num', cell: (j) => (j.completed_at && j.reserved_at ? fmtDuration(j.completed_at - j.reserved_at) : '–')});
    }
    cols.push({label: this.kind === 'pending' ? 'Queued' : 'When', cell: (j) => fmtAgo(when[this.kind](j))});
    if (failed) {
      cols.push({label: '', class: 'col-actions', cell: (j) => this.retryCell(j)});
    }
    return cols;
  }

  retryCell(job) {
    const retried = (job.retried_by || []).length;
    const note = retried ? h('span', {class: 'muted'}, `retried ×${retried}`) : null;
    if (config.read_only) return note || '';
    const button = h('button', {type: 'button', class: 'btn btn-small', 'data-action': 'retry', onclick: async () => {
      button.disabled = true;
      try { await retryJob(job); button.textContent = 'Retried'; } catch (e) { toast(e.message, 'error'); button.disabled = false; }
    }}, 'Retry');
    return h('span', {class: 'actions'}, note, button);
  }

  renderRows() {
    mount(this.body, table(this.columns(), this.jobs, {
      empty: this.empty,
      rowAttrs: (j) => ({'data-job-id': j.id, 'data-status': j.status}),
    }));
  }

  renderPager() {
    const page = this.starts.length;
    const first = (page - 1) * 50 + (this.jobs.length ? 1 : 0);
    const last = (page - 1) * 50 + this.jobs.length;
    const prev = h('button', {type: 'button', class: 'btn', disabled: page === 1, onclick: () => {
      this.starts.pop();
      this.load().catch((e) => toast(e.message, 'error'));
    }}, '← Newer');
    const lastJob = this.jobs[this.jobs.length - 1];
    const more = lastJob && last < this.total;
    const next = h('button', {type: 'button', class: 'btn', disabled: !more, onclick: () => {
      this.starts.push(Number(lastJob.index));
      this.load().catch((e) => toast(e.message, 'error'));
    }}, 'Older →');
    mount(this.pager, prev, h('span', {class: 'muted page-info'}, `${first}–${last} of ${fmtNumber(this.total)}`), next);
  }
}
