// The sandbox's page API (sandbox/page.py). Every write carries X-Sandbox-Page, which a form
// on another site cannot send.

const BASE = "/sandbox/api";
const WRITE = { "X-Sandbox-Page": "1" };

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function call(method, path, { json, form, signal } = {}) {
  const init = { method, headers: method === "GET" ? {} : { ...WRITE }, signal };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(BASE + path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "no connection");
  }
  if (response.status === 204) return null;
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body?.error ?? `HTTP ${response.status}`);
  return body;
}

/** What person `as` sees; with `after`, answered once something changed since that version. */
export function state(as, after, signal) {
  const query = new URLSearchParams();
  if (as !== null && as !== undefined) query.set("as", String(as));
  if (after !== null && after !== undefined) query.set("after", String(after));
  return call("GET", `/state?${query}`, { signal });
}

export const post = (as, threadId, content) =>
  call("POST", `/threads/${threadId}/messages`, { json: { as, content } });

export function postFile(as, threadId, file, content = "") {
  const form = new FormData();
  form.append("as", String(as));
  form.append("content", content);
  form.append("file", file, file.name);
  return call("POST", `/threads/${threadId}/files`, { form });
}

export const edit = (as, messageId, content) =>
  call("PATCH", `/messages/${messageId}`, { json: { as, content } });

export const remove = (as, messageId) =>
  call("DELETE", `/messages/${messageId}?${new URLSearchParams({ as: String(as) })}`);

export const react = (as, messageId, code) =>
  call("POST", `/messages/${messageId}/reactions`, { json: { as, code } });

export const unreact = (as, messageId, code) =>
  call(
    "DELETE",
    `/messages/${messageId}/reactions?${new URLSearchParams({ as: String(as), code })}`,
  );
