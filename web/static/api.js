// The console's only door to the server's JSON API. The session cookie goes along by itself
// (same origin); a 401 means the token changed or the session is gone: back to sign-in.

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function url(path, params) {
  const target = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") target.searchParams.set(key, value);
  }
  return target.pathname + target.search;
}

async function handle(response) {
  if (response.status === 401) {
    window.location.assign("/login");
    throw new ApiError(401, "signed out", null);
  }
  const type = response.headers.get("content-type") || "";
  const body = type.includes("application/json") ? await response.json() : await response.text();
  if (!response.ok) {
    const message = body && typeof body === "object" && body.error ? body.error : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, body);
  }
  return body;
}

export async function getJSON(path, params) {
  const response = await fetch(url(path, params), { credentials: "same-origin", headers: { Accept: "application/json" } });
  return handle(response);
}

export async function postJSON(path, body) {
  const response = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body ?? {}),
  });
  return handle(response);
}

export async function deleteJSON(path) {
  const response = await fetch(path, { method: "DELETE", credentials: "same-origin", headers: { Accept: "application/json" } });
  return handle(response);
}

export function recordingUrl(callId) {
  return `/api/calls/${encodeURIComponent(callId)}/recording.wav`;
}

/** A JSON request with any method (PUT, DELETE, …); the body is sent only when given. */
export async function sendJSON(method, path, body) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return handle(await fetch(path, init));
}
