// JSON API helpers: CSRF header, one error type for every failure shape.

export class ApiError extends Error {
  constructor(status, code, message, fields = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields;
  }
}

export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
  if (match) return decodeURIComponent(match[1]);
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

// The API answers errors as {"error": {"code", "message", "fields"?}}; anything else
// (a proxy's HTML page, an empty body) becomes a generic error with the HTTP status.
export async function errorFrom(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // not JSON
  }
  const error = body && body.error;
  if (error && error.code) return new ApiError(response.status, error.code, error.message || "", error.fields || null);
  return new ApiError(response.status, `http_${response.status}`, `HTTP ${response.status}`);
}

// fetch() with the session's CSRF token. `json` is sent as a JSON body; `body` as is
// (FormData for uploads). Throws ApiError for non-2xx answers and for network failures.
export async function request(url, { method = "GET", json, body, signal, accept = "application/json" } = {}) {
  const headers = { Accept: accept };
  if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrfToken();
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body, signal, credentials: "same-origin" });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network", exc.message);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

// request() and decode the JSON answer (null for 204 No Content).
export async function api(url, options = {}) {
  const response = await request(url, options);
  if (response.status === 204) return null;
  return response.json();
}
