// The token prompt: a form shown once when the API needs a bearer token; kept in sessionStorage.

import {ApiError, api, clearToken, setToken} from './api.js';
import {h, mount} from './dom.js';

/** Show the form in `main`; resolves once a token the API accepts has been stored. */
export function askForToken(main, message = '') {
  return new Promise((resolve) => {
    const input = h('input', {type: 'password', name: 'token', id: 'token-input', autocomplete: 'current-password', required: true});
    const error = h('p', {class: 'form-error', role: 'alert', hidden: !message}, message);
    const button = h('button', {type: 'submit', class: 'btn btn-primary'}, 'Continue');
    const form = h('form', {class: 'panel token-form', 'data-form': 'token', onsubmit: async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      setToken(input.value.trim());
      try {
        await api('stats', {quiet: true});
        resolve();
      } catch (e) {
        clearToken();
        error.textContent = e instanceof ApiError && e.status === 401 ? 'That token was not accepted.' : `Could not check the token: ${e.message}`;
        error.hidden = false;
        button.disabled = false;
        input.select();
      }
    }},
    h('h1', {}, 'Sign in'),
    h('p', {class: 'muted'}, 'This dashboard needs the API token (web.auth.token). It is kept in this tab only.'),
    h('label', {for: 'token-input'}, 'API token'), input, error, button);
    mount(main, form);
    input.focus();
  });
}
