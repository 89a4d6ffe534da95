// Job list pages: Recent, Pending, Completed, Silenced and Failed (tag search, retry, retry all).

import {api, config, pageUrl, seg} from '../api.js';
import {h, mount, toast} from '../dom.js';
import {JobList} from '../joblist.js';

const TITLES = {recent: 'Recent jobs', pending: 'Pending jobs', completed: 'Completed jobs',
  silenced: 'Silenced jobs', failed: 'Failed jobs'};

export default function jobsPage(main, {kind}) {
  const params = new URLSearchParams(location.search);
  let tag = kind === 'failed' ? params.get('tag') || '' : '';
  const list = new JobList({
    kind,
    empty: tag ? `No failed jobs tagged “${tag}”.` : `No ${kind} jobs.`,
    fetchPage: (startingAt) => api(`jobs/${kind}`, {query: {starting_at: startingAt, tag}}),
  });
  const tools = kind === 'failed' ? failedTools() : null;
  mount(main, h('div', {class: 'page-head'}, h('h1', {}, TITLES[kind]), tools), list.el);

  function failedTools() {
    const input = h('input', {type: 'search', name: 'tag', placeholder: 'Search tags', value: tag, 'aria-label': 'Search failed jobs by tag'});
    const form = h('form', {class: 'inline-form', role: 'search', onsubmit: (ev) => {
      ev.preventDefault();
      tag = input.value.trim();
      const url = pageUrl('jobs/failed') + (tag ? `?tag=${encodeURIComponent(tag)}` : '');
      history.replaceState(null, '', url);
      list.starts = [-1];
      list.empty = tag ? `No failed jobs tagged “${tag}”.` : 'No failed jobs.';
      list.load().catch((e) => toast(e.message, 'error'));
    }}, input, h('button', {type: 'submit', class: 'btn'}, 'Search'));
    const retryAll = config.read_only ? null : h('button', {type: 'button', class: 'btn btn-primary', 'data-action': 'retry-all',
      onclick: () => retryEverything(retryAll)}, 'Retry all');
    return h('div', {class: 'tools'}, form, retryAll);
  }

  async function retryEverything(button) {
    button.disabled = true;
    try {
      if (tag) {
        // with a tag filter, every failed job with that tag, page after page (the list shows one
        // page), one call each; a job retried before is skipped, and copies made meanwhile are
        // newer than where the walk starts
        let start = -1;
        let retried = 0;
        for (;;) {
          const page = await api('jobs/failed', {query: {starting_at: start, tag}});
          const jobs = (page && page.jobs) || [];
          if (!jobs.length) break;
          for (const job of jobs) {
            if ((job.retried_by || []).length) continue;
            await api(`jobs/retry/${seg(job.id)}`, {method: 'POST'});
            retried += 1;
          }
          start = Number(jobs[jobs.length - 1].index);
        }
        toast(`Retried ${retried} failed job${retried === 1 ? '' : 's'} tagged “${tag}”`, 'ok');
      } else {
        const queues = await api('queues');
        const withFailed = (queues || []).filter((q) => Number(q.failed) > 0);
        for (const q of withFailed) await api(`queues/${encodeURIComponent(q.name)}/retry`, {method: 'POST'});
        toast(`Retried the failed jobs of ${withFailed.length} queue${withFailed.length === 1 ? '' : 's'}`, 'ok');
      }
      await list.load();
    } catch (e) {
      toast(e.message, 'error');
    } finally {
      button.disabled = false;
    }
  }

  return {load: () => list.load(), refresh: () => list.refresh()};
}
