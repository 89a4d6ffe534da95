// The dashboard's entry point: navigation, client-side routing (History API), token gate, live refresh.

import {config, onUnauthorized, pageUrl, token} from './api.js';
import {h, mount, toast} from './dom.js';
import {liveState, onLiveEvent, onLiveState, startLive} from './live.js';
import dashboardPage from './pages/dashboard.js';
import jobPage from './pages/job.js';
import jobsPage from './pages/jobs.js';
import metricsPage from './pages/metrics.js';
import {monitoringPage, tagPage} from './pages/monitoring.js';
import queuesPage from './pages/queues.js';
import {askForToken} from './token.js';

const LISTS = ['recent', 'pending', 'completed', 'silenced', 'failed'];
const dec = decodeURIComponent;

// [pattern on the path below config.path, nav key, page factory]
const ROUTES = [
  [/^\/?$|^\/dashboard$/, 'dashboard', (m) => dashboardPage(m)],
  [/^\/monitoring$/, 'monitoring', (m) => monitoringPage(m)],
  [/^\/monitoring\/(.+)$/, 'monitoring', (m, g) => tagPage(m, {tag: dec(g[1])})],
  [/^\/metrics(?:\/(jobs|queues))?$/, 'metrics', (m, g) => metricsPage(m, {type: g[1] || 'jobs'})],
  [/^\/metrics\/(jobs|queues)\/(.+)$/, 'metrics', (m, g) => metricsPage(m, {type: g[1], name: dec(g[2])})],
  [/^\/jobs\/?$/, 'recent', (m) => jobsPage(m, {kind: 'recent'})],
  [/^\/jobs\/(recent|pending|completed|silenced|failed)$/, null, (m, g) => jobsPage(m, {kind: g[1]})],
  [/^\/failed\/?$/, 'failed', (m) => jobsPage(m, {kind: 'failed'})],
  [/^\/failed\/([^/]+)$/, 'failed', (m, g) => jobPage(m, {id: dec(g[1]), failed: true})],
  [/^\/jobs\/([^/]+)$/, 'recent', (m, g) => jobPage(m, {id: dec(g[1])})],
  [/^\/queues$/, 'queues', (m) => queuesPage(m)],
  [/^\/queues\/(.+)$/, 'queues', (m, g) => queuesPage(m, {name: dec(g[1])})],
];

const NAV = [
  ['dashboard', 'Dashboard', ''], ['monitoring', 'Monitoring', 'monitoring'], ['metrics', 'Metrics', 'metrics/jobs'],
  ...LISTS.map((k) => [k, k[0].toUpperCase() + k.slice(1), `jobs/${k}`]), ['queues', 'Queues', 'queues'],
];

const main = document.getElementById('main');
let current = null;
let refreshTimer = null;
let pollTimer = null;
let gate = null;

function buildNav() {
  mount(document.getElementById('nav'), NAV.map(([key, label, rest]) =>
    h('a', {href: pageUrl(rest), 'data-link': true, 'data-nav': key}, label)));
}

function relativePath() {
  const path = location.pathname;
  return path.startsWith(config.path) ? path.slice(config.path.length) || '/' : path;
}

async function route() {
  if (current && current.leave) current.leave();
  current = null;
  const rel = relativePath().replace(/\/+$/, '') || '/';
  let navKey = null;
  let factory = null;
  let groups = null;
  for (const [pattern, key, make] of ROUTES) {
    const m = rel.match(pattern);
    if (m) { navKey = key || m[1]; factory = make; groups = m; break; }
  }
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.nav === navKey);
  if (!factory) {
    mount(main, h('h1', {}, 'Not found'), h('p', {}, 'No page at this address.'));
    return;
  }
  const page = factory(main, groups);
  current = page;
  document.title = `Horizon – ${(main.querySelector('h1') || {}).textContent || 'Dashboard'}`;
  try {
    await page.load();
    document.body.dataset.ready = rel;
  } catch (e) {
    showError(e);
  }
}

function showError(e) {
  if (e && e.status === 401) return; // the token prompt takes over
  const notFound = e && e.status === 404;
  mount(main, h('h1', {}, notFound ? 'Not found' : 'Something went wrong'),
    h('p', {class: 'form-error', role: 'alert'}, e && e.message ? e.message : String(e)));
}

function refreshSoon(delay = 400) {
  if (refreshTimer || !current || !current.refresh) return;
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    const page = current;
    if (!page || document.hidden) return;
    try { await page.refresh(); } catch (e) { if (e && e.status !== 401) console.warn('refresh failed', e); }
  }, delay);
}

function schedulePolling() {
  clearInterval(pollTimer);
  // polling is the fallback when the stream is down; while live, a slow refresh keeps waits and counts fresh
  pollTimer = setInterval(() => refreshSoon(0), liveState() === 'live' ? 5000 : 3000);
}

function onLinkClick(ev) {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest('a[data-link]');
  if (!a || a.target) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  ev.preventDefault();
  if (url.pathname + url.search !== location.pathname + location.search) history.pushState(null, '', url);
  route();
  main.focus({preventScroll: true});
  window.scrollTo(0, 0);
}

async function unauthorized() {
  if (gate) return;
  gate = askForToken(main, token() ? 'The token was refused; enter it again.' : '');
  await gate;
  gate = null;
  route();
}

async function boot() {
  document.documentElement.classList.toggle('read-only', Boolean(config.read_only));
  buildNav();
  document.addEventListener('click', onLinkClick);
  window.addEventListener('popstate', route);
  onUnauthorized(unauthorized);
  const liveEl = document.getElementById('live');
  onLiveState((state) => {
    liveEl.textContent = state;
    liveEl.dataset.state = state;
    schedulePolling();
  });
  onLiveEvent((name, data) => {
    if (current && current.wants && !current.wants(name, data)) return;
    refreshSoon();
  });
  if (config.token_required && !token()) {
    gate = askForToken(main);
    await gate;
    gate = null;
  }
  startLive();
  await route();
}

boot().catch((e) => { toast(e.message || String(e), 'error'); });
