// Signing in: a token in the URL fragment (/#token=<JWT>) is kept in sessionStorage, for this
// tab only, and taken out of the address bar at once (so it is not bookmarked, shared or left
// in the history). The fragment never reaches the server, and the page sends no Referer.

const KEY = "pachca-bridge.token";

function storage() {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null; // storage disabled: the token lives as long as the page
  }
}

let memoryToken = null;

/** The fragment's parameters: "#token=...&chat=5" -> URLSearchParams. */
export function fragment() {
  return new URLSearchParams(location.hash.replace(/^#/, ""));
}

/** Take a token from the address bar (removing it there) or from this tab's storage. */
export function takeToken() {
  const params = fragment();
  const given = params.get("token");
  if (given) {
    saveToken(given);
    params.delete("token");
    const rest = params.toString();
    history.replaceState(null, "", `${location.pathname}${location.search}${rest ? `#${rest}` : ""}`);
    return given;
  }
  return storage()?.getItem(KEY) ?? memoryToken;
}

export function saveToken(token) {
  memoryToken = token;
  storage()?.setItem(KEY, token);
}

export function forgetToken() {
  memoryToken = null;
  storage()?.removeItem(KEY);
}

/** The token's subject (the user id), read without checking the signature: only to know
 * which messages are one's own before the feed's "ready" names the user. */
export function tokenSubject(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(part), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)).sub ?? null;
  } catch {
    return null;
  }
}
