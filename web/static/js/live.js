// Live updates from <path>/api/events (Server-Sent Events).
//
// Without a token the browser's EventSource reads the stream (it reconnects by itself and resumes
// with Last-Event-ID). EventSource cannot send an Authorization header, so when a token is
// configured the same SSE response is read with fetch() streaming and the bearer header, parsed
// here, and resumed with Last-Event-ID after a drop. While the stream is down the app polls
// (see app.js): the state reported to listeners is 'live' or 'polling'.

import {authHeaders, config} from './api.js';

export const EVENT_NAMES = [
  'job:pending', 'job:reserved', 'job:completed', 'job:failed', 'job:delayed', 'job:cancelled',
  'job:progress', 'job:stalled', 'job:removed', 'job:retried',
  'queue:paused', 'queue:resumed', 'queue:drained',
];

const eventListeners = new Set();
const stateListeners = new Set();
let state = 'connecting';
let started = false;

export function onLiveEvent(fn) { eventListeners.add(fn); }
export function onLiveState(fn) { stateListeners.add(fn); fn(state); }
export function liveState() { return state; }

function setState(next) {
  if (next === state) return;
  state = next;
  stateListeners.forEach((fn) => fn(state));
}

function dispatch(name, raw) {
  let data = {};
  try { data = JSON.parse(raw); } catch { data = {}; }
  eventListeners.forEach((fn) => fn(name, data));
}

export function startLive() {
  if (started) return;
  started = true;
  if (typeof window.EventSource === 'function' && !config.token_required) useEventSource();
  else streamWithFetch();
}

function useEventSource() {
  const source = new EventSource(`${config.api}/events`);
  source.onopen = () => setState('live');
  source.onerror = () => {
    setState('polling');
    // the browser retries by itself unless the server refused the stream; then start over later
    if (source.readyState === EventSource.CLOSED) setTimeout(useEventSource, 5000);
  };
  for (const name of EVENT_NAMES) source.addEventListener(name, (ev) => dispatch(name, ev.data));
  source.onmessage = (ev) => dispatch('message', ev.data);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function streamWithFetch() {
  let lastId = '';
  let delay = 1000;
  for (;;) {
    try {
      const headers = {Accept: 'text/event-stream', ...authHeaders()};
      if (lastId) headers['Last-Event-ID'] = lastId;
      const response = await fetch(`${config.api}/events`, {headers, cache: 'no-store'});
      if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
      setState('live');
      delay = 1000;
      lastId = await readStream(response.body, lastId);
    } catch {
      // fall through to polling and retry
    }
    setState('polling');
    await sleep(delay);
    delay = Math.min(delay * 2, 30000);
  }
}

/** Parse an SSE byte stream; returns the last event id seen. */
async function readStream(body, lastId) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const {value, done} = await reader.read();
    if (done) return lastId;
    buffer += value.replace(/\r\n?/g, '\n');
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (!line || line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') name = val;
        else if (field === 'data') data.push(val);
        else if (field === 'id') lastId = val;
      }
      if (data.length) dispatch(name, data.join('\n'));
    }
  }
}
