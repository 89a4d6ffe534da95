// Monitoring page: monitored tags with their job counts (add, remove), and the jobs of one tag.

import {api, config, pageUrl, seg} from '../api.js';
import {fmtNumber, h, mount, table, toast} from '../dom.js';
import {JobList} from '../joblist.js';

export function monitoringPage(main) {
  const holder = h('div');
  const input = h('input', {type: 'text', name: 'tag', placeholder: 'Tag, e.g. user:42', required: true, 'aria-label': 'Tag to monitor'});
  const form = config.read_only ? null : h('form', {class: 'inline-form', 'data-form': 'monitor', onsubmit: async (ev) => {
    ev.preventDefault();
    const tag = input.value.trim();
    if (!tag) return;
    try {
      await api('monitoring', {method: 'POST', body: {tag}});
      input.value = '';
      toast(`Monitoring ${tag}`, 'ok');
      await load();
    } catch (e) { toast(e.message, 'error'); }
  }}, input, h('button', {type: 'submit', class: 'btn btn-primary'}, 'Monitor tag'));
  mount(main, h('div', {class: 'page-head'}, h('h1', {}, 'Monitoring'), h('div', {class: 'tools'}, form)), holder);

  async function remove(tag) {
    try {
      await api(`monitoring/${seg(tag)}`, {method: 'DELETE'});
      toast(`Stopped monitoring ${tag}`, 'ok');
      await load();
    } catch (e) { toast(e.message, 'error'); }
  }

  async function load() {
    const tags = await api('monitoring');
    const columns = [
      {label: 'Tag', cell: (t) => h('a', {href: pageUrl(`monitoring/${seg(t.tag)}`), 'data-link': true, class: 'tag-link'}, t.tag)},
      {label: 'Jobs', class: 'num', cell: (t) => fmtNumber(t.count)},
    ];
    if (!config.read_only) {
      columns.push({label: '', class: 'col-actions', cell: (t) => h('button', {type: 'button', class: 'btn btn-small btn-danger',
        'data-action': 'unmonitor', onclick: () => remove(t.tag)}, 'Stop monitoring')});
    }
    mount(holder, table(columns, tags || [], {empty: 'No tags are monitored.', rowAttrs: (t) => ({'data-tag': t.tag})}));
  }
  return {load, refresh: load};
}

export function tagPage(main, {tag}) {
  const list = new JobList({
    kind: 'monitored',
    empty: `No jobs tagged “${tag}” yet.`,
    fetchPage: (startingAt) => api(`monitoring/${seg(tag)}`, {query: {starting_at: startingAt}}),
  });
  mount(main,
    h('p', {class: 'crumbs'}, h('a', {href: pageUrl('monitoring'), 'data-link': true}, 'Monitoring'), ' / '),
    h('h1', {}, 'Tag ', h('span', {class: 'tag tag-big'}, tag)),
    list.el);
  return {load: () => list.load(), refresh: () => list.refresh()};
}
