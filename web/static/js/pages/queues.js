// Queues page: counts per queue, with pause / resume / drain (drain asks for a second click).

import {api, config, pageUrl, seg} from '../api.js';
import {fmtDuration, fmtNumber, h, mount, table, toast} from '../dom.js';

export default function queuesPage(main, {name} = {}) {
  const holder = h('div');
  mount(main, h('h1', {}, name ? `Queue ${name}` : 'Queues'),
    name ? h('p', {class: 'crumbs'}, h('a', {href: pageUrl('queues'), 'data-link': true}, 'All queues')) : null,
    holder);

  async function act(queue, action) {
    try {
      await api(`queues/${seg(queue)}/${action}`, {method: 'POST'});
      toast(`${action} ${queue}: done`, 'ok');
      await load();
    } catch (e) { toast(e.message, 'error'); }
  }

  // the first click arms the drain for a few seconds; the armed state survives live re-renders
  let armed = {name: null, until: 0};
  function drainButton(q) {
    const isArmed = () => armed.name === q.name && Date.now() < armed.until;
    const button = h('button', {type: 'button', class: 'btn btn-small btn-danger', 'data-action': 'drain', onclick: () => {
      if (!isArmed()) {
        armed = {name: q.name, until: Date.now() + 5000};
        button.textContent = 'Confirm drain';
        setTimeout(() => { if (!isArmed()) button.textContent = 'Drain'; }, 5100);
        return;
      }
      armed = {name: null, until: 0};
      act(q.name, 'drain');
    }}, isArmed() ? 'Confirm drain' : 'Drain');
    return button;
  }

  function actions(q) {
    if (config.read_only) return '';
    return h('span', {class: 'actions'},
      q.paused
        ? h('button', {type: 'button', class: 'btn btn-small', 'data-action': 'resume', onclick: () => act(q.name, 'resume')}, 'Resume')
        : h('button', {type: 'button', class: 'btn btn-small', 'data-action': 'pause', onclick: () => act(q.name, 'pause')}, 'Pause'),
      drainButton(q));
  }

  async function load() {
    const queues = name ? [await api(`queues/${seg(name)}`)] : await api('queues');
    const n = (key) => ({label: key[0].toUpperCase() + key.slice(1), class: 'num', cell: (q) => fmtNumber(q[key])});
    mount(holder, table([
      {label: 'Queue', cell: (q) => h('a', {href: pageUrl(`queues/${seg(q.name)}`), 'data-link': true}, q.name)},
      {label: 'State', cell: (q) => h('span', {class: `badge ${q.paused ? 'status-paused' : 'status-running'}`}, q.paused ? 'paused' : 'active')},
      n('pending'), n('scheduled'), n('reserved'), n('completed'), n('failed'), n('processes'),
      {label: 'Wait', class: 'num', cell: (q) => fmtDuration(q.wait)},
      {label: '', class: 'col-actions', cell: actions},
    ], queues || [], {empty: 'No queues yet.', rowAttrs: (q) => ({'data-queue': q.name, 'data-paused': String(Boolean(q.paused))})}));
  }
  return {load, refresh: load};
}
