// The control plane's JSON, fetched same-origin with the admin token when the emulator has one.
// The token is asked for when the API answers 401 and kept in sessionStorage: for this tab only.

const TOKEN_KEY = "tci-emulator-admin-token";
export const POLL_HEADER = "X-TCI-Dashboard";

let askForToken = async () => { throw new Error("no token prompt installed"); };
let waiting = null; // the prompt's promise while it is open: every request waits for it

/** Install the function that shows the token prompt; it gets the refusal text (or null) and
 * resolves with the token the user entered. */
export function onTokenNeeded(fn) { askForToken = fn; }

export class ApiError extends Error {
  constructor(status, code, message, param) {
    super(message);
    this.status = status; this.code = code; this.param = param;
  }
}

async function errorOf(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON: use the status line */ }
  const error = (body && body.error) || {};
  return new ApiError(response.status, error.code || null,
    error.message || `HTTP ${response.status} ${response.statusText}`, error.param || null);
}

/** One request to the control plane; resolves with the parsed JSON (or the Response with
 * {raw: true}); rejects with an ApiError for any other failure. `poll` marks the dashboard's
 * periodic reads, which the emulator keeps out of its journal and log. */
export async function request(method, path, { body, poll = false, raw = false } = {}) {
  for (;;) {
    if (waiting) await waiting;
    const token = sessionStorage.getItem(TOKEN_KEY);
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    if (poll) headers[POLL_HEADER] = "poll";
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method, headers, cache: "no-store", credentials: "same-origin", redirect: "error",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      const error = await errorOf(response);
      if (sessionStorage.getItem(TOKEN_KEY) !== token) continue; // a newer token: try it
      if (!waiting) {
        const refused = token ? error.message : null;
        if (token) sessionStorage.removeItem(TOKEN_KEY);
        waiting = askForToken(refused).then((entered) => {
          sessionStorage.setItem(TOKEN_KEY, entered);
        }).finally(() => { waiting = null; });
      }
      continue;
    }
    if (!response.ok) throw await errorOf(response);
    return raw ? response : response.json();
  }
}

export const get = (path, options = {}) => request("GET", path, options);
export const poll = (path) => request("GET", path, { poll: true });
export const post = (path, body) => request("POST", path, { body });
export const del = (path) => request("DELETE", path);
