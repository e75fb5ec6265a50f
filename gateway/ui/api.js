// Calls to the gateway's API with the key kept for this browser session, and its errors in plain words.

const KEY = 'metrika-score.api-key';

export const apiKey = {
  get: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  forget: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, text, body) {
    super(text);
    this.status = status;
    this.body = body;
  }

  // the route does not exist on this gateway (an older version): aiohttp's own 404 / 405
  get missing() {
    return (this.status === 404 && this.body?.detail === 'Not Found') || this.status === 405;
  }
}

export async function api(method, path, { query, body } = {}) {
  const key = apiKey.get();
  if (!key) throw new ApiError(401, 'Enter an API key to continue.');
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query || {})) if (v !== '' && v !== null && v !== undefined) url.searchParams.set(k, v);
  const headers = { Authorization: `Bearer ${key}`, Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, `The gateway cannot be reached (${err.message}). Is it running?`);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) throw new ApiError(response.status, explain(response, data, text, `${method} ${url.pathname}`), data);
  return data;
}

export const get = (path, query) => api('GET', path, { query });
export const post = (path, body) => api('POST', path, { body });
export const patch = (path, body) => api('PATCH', path, { body });
export const del = (path) => api('DELETE', path);

function explain(response, data, text, call) {
  const status = response.status;
  const detail = detailText(data?.detail ?? text);
  if (status === 401) return `The API key was refused (${detail}). Enter it again.`;
  if (status === 403) return `Not allowed: ${detail}`;
  if ((status === 404 && detail === 'Not Found') || status === 405) {
    return `This gateway does not offer ${call} (an older version?).`;
  }
  if (status === 404) return detail;
  if (status === 409) return `Not now: ${detail}`;
  if (status === 422) return `Check the input: ${detail}`;
  if (status === 429) {
    const wait = response.headers.get('Retry-After');
    return `Too many requests${wait ? `; try again in ${wait} s` : ''}: ${detail}`;
  }
  if (status === 503) return `The service is unavailable for now: ${detail}`;
  if (status >= 500) {
    const id = data?.error_id ? ` (error id ${data.error_id}: quote it to whoever runs the gateway)` : '';
    return `The gateway failed with ${status}: ${detail}${id}`;
  }
  return `${status}: ${detail}`;
}

function detailText(detail) {
  if (Array.isArray(detail)) {
    return detail.map((e) => (e && typeof e === 'object' ? `${(e.loc || []).join('.')}: ${e.msg}` : String(e))).join('; ');
  }
  if (detail && typeof detail === 'object') return JSON.stringify(detail);
  return String(detail || 'no details').slice(0, 500);
}
