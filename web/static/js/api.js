// The JSON API client: base path and flags from the shell's JSON block, bearer token from sessionStorage.

export const config = JSON.parse(document.getElementById('horizon-config').textContent);

const TOKEN_KEY = 'horizon.token';
const unauthorizedListeners = new Set();

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(value) { sessionStorage.setItem(TOKEN_KEY, value); }
export function clearToken() { sessionStorage.removeItem(TOKEN_KEY); }
export function onUnauthorized(fn) { unauthorizedListeners.add(fn); }

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function authHeaders() {
  return token() ? {Authorization: `Bearer ${token()}`} : {};
}

/** Call the API: api('jobs/failed', {query: {starting_at: 12}}) or api('jobs/retry/ID', {method: 'POST'}). */
export async function api(path, {method = 'GET', body, query, quiet = false} = {}) {
  const url = new URL(`${config.api}/${path}`, location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(key, value);
  }
  const headers = {Accept: 'application/json', ...authHeaders()};
  const init = {method, headers, cache: 'no-store'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch { data = null; }
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    if (response.status === 401 && !quiet) unauthorizedListeners.forEach((fn) => fn());
    throw new ApiError(response.status, error.code || `HTTP_${response.status}`, error.message || response.statusText);
  }
  return data;
}

/** One path segment of an API or page URL (tags and names may hold '/', ':' and more). */
export const seg = (value) => encodeURIComponent(String(value));

/** A dashboard page URL under the configured path. */
export const pageUrl = (rest = '') => `${config.path}/${rest}`.replace(/\/$/, '') || '/';
