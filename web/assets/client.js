// BridgeClient: the pachca-bridge web-client API (REST) and its live feed (WebSocket), in one
// ES module with no imports, for browsers and for Node 20. Served by the bridge at /client.js.
//
//   import { BridgeClient } from "https://bridge.example/client.js";
//   const client = new BridgeClient({ baseUrl: "https://bridge.example", token });
//   client.on("ready", ({ resumed }) => { if (!resumed) reloadEverything(); });
//   client.on("message.created", (event) => show(event.message));
//   client.connect();
//
// The feed resumes after a reconnect with `since` (the last event_id it saw), so nothing is
// lost; when the server answers `reset` instead (its history no longer reaches that far), the
// next "ready" has `resumed: false` and the application reloads what it shows over REST.
// Reconnects back off exponentially with jitter (the first within a second, never more than
// 30 s apart); a 4401 close (the token is no longer good) stops reconnecting and emits
// "unauthorized". Typing frames are limited to one per chat per 2 s. An optimistic send
// (sendMessage with a client_id) is confirmed by whichever comes first, the REST answer or the
// feed's message.created carrying the same client_id: "sent" is emitted once. Files are
// uploaded first (uploadFile, with progress where XMLHttpRequest exists) and sent by id;
// their signed links run out, and renewFileLink asks GET /api/v1/files/{id} for fresh ones.
//
// fetch, WebSocket, timers, the clock and the random source can be injected (tests, Node 20
// with the `ws` package).

/** The largest id a `before_id` may name: "the newest messages" without knowing any id. */
export const NEWEST = Number.MAX_SAFE_INTEGER;

/** Close codes of the feed (the bridge's README lists them all). */
export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_BAD_SINCE = 4400;

/** A failed call: `status` 0 when the server could not be reached (`code` "network" or
 * "timeout"), else the HTTP status with the error body's `code` and `message`. */
export class BridgeError extends Error {
  constructor(status, code, message, retryAfter = null) {
    super(message);
    this.name = "BridgeError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }

  /** True when trying again later may succeed: no answer, a server error, a rate limit. */
  get retryable() {
    if (this.code === "aborted") return false; // given up on purpose
    return this.status === 0 || this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

/** A random id for an optimistic send; also where crypto.randomUUID is missing (plain http). */
export function newClientId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  const bytes = new Uint8Array(16);
  c.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const OPEN = 1; // WebSocket.OPEN, also where no WebSocket global exists

export class BridgeClient {
  /**
   * @param {object} options
   * @param {string} [options.baseUrl] the bridge's origin ("" on the bridge's own page)
   * @param {string} [options.token] the user's JWT
   * @param {number|null} [options.since] resume the feed after this event_id
   */
  constructor(options = {}) {
    const g = globalThis;
    this.baseUrl = (options.baseUrl ?? "").replace(/\/+$/, "");
    this.token = options.token ?? null;
    this._fetch = options.fetch ?? (g.fetch ? g.fetch.bind(g) : null);
    this._WebSocket = options.WebSocket ?? g.WebSocket ?? null;
    this._XMLHttpRequest = options.XMLHttpRequest ?? g.XMLHttpRequest ?? null; // upload progress
    this._setTimeout = options.setTimeout ?? ((fn, ms) => g.setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout ?? ((id) => g.clearTimeout(id));
    this._now = options.now ?? (() => Date.now());
    this._random = options.random ?? Math.random;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15000;
    this.uploadTimeoutMs = options.uploadTimeoutMs ?? 300000;
    this.backoffBaseMs = options.backoffBaseMs ?? 1000;
    this.backoffMaxMs = options.backoffMaxMs ?? 30000;
    this.typingIntervalMs = options.typingIntervalMs ?? 2000;
    this.pingIntervalMs = options.pingIntervalMs ?? 25000;
    this.pongTimeoutMs = options.pongTimeoutMs ?? 10000;
    this.fileLinkMaxAgeMs = options.fileLinkMaxAgeMs ?? 60000;

    /** The last event_id seen; the next connection resumes after it. */
    this.lastEventId = options.since ?? null;
    /** The signed-in user, from the feed's "ready" frame. */
    this.user = null;
    /** "idle" | "connecting" | "open" | "waiting" (to retry) | "unauthorized" | "closed" */
    this.state = "idle";
    this.attempt = 0; // failed connection attempts since the last "ready"
    this.retryAt = null; // when the next attempt starts (while "waiting")

    this._listeners = new Map();
    this._ws = null;
    this._wantOpen = false;
    this._retryTimer = null;
    this._pingTimer = null;
    this._pongTimer = null;
    this._resumeAsked = false; // the current connection was opened with `since`
    this._gotReset = false;
    this._typingSent = new Map(); // chat id -> when the last typing frame went out
    this._outstanding = new Map(); // client_id -> chat id, until confirmed or discarded
    this._fileLinks = new Map(); // file id -> {file, at} | {promise}
  }

  // --- events -----------------------------------------------------------------------------

  /** Listen to an event; returns a function that stops listening. Events: "ready", "reset",
   * "state", "unauthorized", "sent", "typing", "feed-error", "file.renewed", "event" (every
   * feed event) and each feed event by its type ("message.created", "read", ...). */
  on(type, handler) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(handler);
    return () => this.off(type, handler);
  }

  off(type, handler) {
    this._listeners.get(type)?.delete(handler);
  }

  _emit(type, detail) {
    for (const handler of [...(this._listeners.get(type) ?? [])]) {
      try {
        handler(detail);
      } catch (err) {
        // One failing listener must not stop the others, nor the feed.
        console.error(`BridgeClient: a "${type}" listener failed`, err);
      }
    }
  }

  // --- REST -------------------------------------------------------------------------------

  /** One API call; resolves to the parsed JSON body (null for 204), rejects with BridgeError. */
  async request(method, path, { query, json, body, timeoutMs, signal } = {}) {
    if (!this._fetch) throw new BridgeError(0, "network", "no fetch available");
    let url = this.baseUrl + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value !== undefined && value !== null) params.set(key, String(value));
      }
      const qs = params.toString();
      if (qs) url += `?${qs}`;
    }
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let payload = body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      payload = JSON.stringify(json);
    }
    const limit = timeoutMs ?? this.requestTimeoutMs;
    const controller = typeof AbortController === "function" ? new AbortController() : null;
    let timedOut = false;
    // An outer signal (the caller gave up: an upload removed) aborts this request too.
    const onAbort = () => controller?.abort();
    signal?.addEventListener("abort", onAbort);
    const timer =
      controller && limit > 0
        ? this._setTimeout(() => {
            timedOut = true;
            controller.abort();
          }, limit)
        : null;
    try {
      let resp;
      let text;
      try {
        resp = await this._fetch(url, { method, headers, body: payload, signal: controller?.signal });
        text = await resp.text();
      } catch (err) {
        if (timedOut) throw new BridgeError(0, "timeout", "the server did not answer in time");
        if (signal?.aborted) throw aborted();
        throw new BridgeError(0, "network", `the server could not be reached (${err?.message ?? err})`);
      }
      return this._answer(resp, text);
    } finally {
      if (timer !== null) this._clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
    }
  }

  _answer(resp, text) {
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch {
        data = null;
      }
    }
    if (resp.ok) return resp.status === 204 ? null : data;
    const error = data && typeof data === "object" ? data.error : null;
    const retryAfter = Number(resp.headers?.get?.("Retry-After"));
    const err = new BridgeError(
      resp.status,
      error?.code ?? "http_error",
      error?.message ?? `HTTP ${resp.status}`,
      Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : null,
    );
    if (resp.status === 401) this._emit("unauthorized", { source: "rest", error: err });
    throw err;
  }

  /** The user's chats, newest activity first. */
  async listChats() {
    return (await this.request("GET", "/api/v1/chats")).chats;
  }

  async getChat(chatId) {
    return (await this.request("GET", `/api/v1/chats/${seg(chatId)}`)).chat;
  }

  /** A page of messages, oldest first: `{messages, total, limit, offset}`. With `beforeId`,
   * the `limit` messages just before it (`NEWEST` for the newest ones). */
  async listMessages(chatId, { limit = 50, offset, beforeId } = {}) {
    return this.request("GET", `/api/v1/chats/${seg(chatId)}/messages`, {
      query: { limit, offset, before_id: beforeId },
    });
  }

  /** Post a message. Pass the `clientId` shown on the optimistic copy (newClientId()) and the
   * same one again on a retry: the server then returns the first message instead of a second.
   * Resolves to the stored message; "sent" is emitted once, by this answer or the feed. */
  async sendMessage(chatId, content, { clientId, replyToId, fileIds } = {}) {
    const id = clientId ?? newClientId();
    this._outstanding.set(id, chatId);
    const json = { content, client_id: id };
    if (replyToId !== undefined && replyToId !== null) json.reply_to_id = replyToId;
    if (fileIds && fileIds.length) json.file_ids = fileIds;
    const answer = await this.request("POST", `/api/v1/chats/${seg(chatId)}/messages`, { json });
    this._confirm(id, answer.message);
    return answer.message;
  }

  /** Forget an optimistic send the user gave up on. */
  discardSend(clientId) {
    this._outstanding.delete(clientId);
  }

  async editMessage(messageId, content) {
    const json = { content };
    return (await this.request("PATCH", `/api/v1/messages/${seg(messageId)}`, { json })).message;
  }

  async deleteMessage(messageId) {
    await this.request("DELETE", `/api/v1/messages/${seg(messageId)}`);
  }

  /** Mark the chat read up to `messageId` (marks only move forward). */
  async markRead(chatId, messageId) {
    const json = { message_id: messageId };
    await this.request("POST", `/api/v1/chats/${seg(chatId)}/read`, { json });
  }

  /** Upload a File or Blob for a later message's `fileIds` (section 10: at most 10 per
   * message); resolves to the file object `{id, name, size, content_type, url}`.
   * Options: `filename` (else the File's own name), `onProgress(fraction)` (0..1, as the bytes
   * go out: only where XMLHttpRequest exists, since fetch cannot report an upload's progress),
   * `signal` (an AbortSignal: aborting rejects with code "aborted"). A string as the third
   * argument is the filename. */
  async uploadFile(chatId, file, options = {}) {
    const opts = typeof options === "string" ? { filename: options } : options;
    const form = new FormData();
    form.append("file", file, opts.filename ?? file.name ?? "file");
    const path = `/api/v1/chats/${seg(chatId)}/files`;
    if (opts.onProgress && this._XMLHttpRequest) {
      return (await this._xhrUpload(path, form, opts)).file;
    }
    if (opts.signal?.aborted) throw aborted();
    const answer = await this.request("POST", path, {
      body: form,
      timeoutMs: this.uploadTimeoutMs,
      signal: opts.signal,
    });
    return answer.file;
  }

  _xhrUpload(path, form, { onProgress, signal }) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(aborted());
        return;
      }
      const xhr = new this._XMLHttpRequest();
      xhr.open("POST", this.baseUrl + path);
      xhr.setRequestHeader("Accept", "application/json");
      if (this.token) xhr.setRequestHeader("Authorization", `Bearer ${this.token}`);
      xhr.timeout = this.uploadTimeoutMs;
      const stopListening = () => signal?.removeEventListener("abort", onAbort);
      const onAbort = () => xhr.abort();
      signal?.addEventListener("abort", onAbort);
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable && event.total > 0) onProgress(Math.min(1, event.loaded / event.total));
      };
      xhr.onload = () => {
        stopListening();
        const resp = {
          ok: xhr.status >= 200 && xhr.status < 300,
          status: xhr.status,
          headers: { get: (name) => xhr.getResponseHeader(name) },
        };
        try {
          const answer = this._answer(resp, xhr.responseText);
          onProgress(1);
          resolve(answer);
        } catch (err) {
          reject(err);
        }
      };
      xhr.onerror = () => {
        stopListening();
        reject(new BridgeError(0, "network", "the server could not be reached"));
      };
      xhr.ontimeout = () => {
        stopListening();
        reject(new BridgeError(0, "timeout", "the server did not answer in time"));
      };
      xhr.onabort = () => {
        stopListening();
        reject(aborted());
      };
      xhr.send(form);
    });
  }

  /** A file object with a fresh signed `url`. */
  async getFile(fileId) {
    return (await this.request("GET", `/api/v1/files/${seg(fileId)}`)).file;
  }

  /** A fresh link for a file whose `url` stopped working (an <img> that failed, a link about
   * to be followed): one request per file however many ask at once, remembered for
   * `fileLinkMaxAgeMs`. Emits "file.renewed" with the file. */
  renewFileLink(fileId) {
    const known = this._fileLinks.get(fileId);
    if (known?.promise) return known.promise;
    if (known && this._now() - known.at < this.fileLinkMaxAgeMs) return Promise.resolve(known.file);
    const promise = this.getFile(fileId).then(
      (file) => {
        this._fileLinks.set(fileId, { file, at: this._now() });
        this._emit("file.renewed", { file });
        return file;
      },
      (err) => {
        this._fileLinks.delete(fileId);
        throw err;
      },
    );
    this._fileLinks.set(fileId, { promise });
    return promise;
  }

  async addReaction(messageId, emoji) {
    await this.request("PUT", `/api/v1/messages/${seg(messageId)}/reactions/${seg(emoji)}`);
  }

  async removeReaction(messageId, emoji) {
    await this.request("DELETE", `/api/v1/messages/${seg(messageId)}/reactions/${seg(emoji)}`);
  }

  // --- the feed ---------------------------------------------------------------------------

  /** Open the feed and keep it open (reconnecting) until disconnect() or a 4401. */
  connect() {
    this._wantOpen = true;
    if (this._ws || this._retryTimer !== null) return;
    this._open();
  }

  disconnect() {
    this._wantOpen = false;
    this._cancelRetry();
    const ws = this._ws;
    this._drop();
    if (ws) closeQuietly(ws, 1000);
    this._setState("closed");
  }

  /** Skip the backoff wait (the browser came back online, the user asked). */
  reconnectNow() {
    if (!this._wantOpen || this._retryTimer === null) return;
    this._cancelRetry();
    this._open();
  }

  /** A new token (after "unauthorized"); call connect() to open the feed again. */
  setToken(token) {
    this.token = token;
  }

  /** The feed's address, resuming after `lastEventId` when there is one. */
  feedUrl() {
    let base = this.baseUrl;
    if (!base) {
      const loc = globalThis.location;
      if (!loc) throw new Error("BridgeClient needs a baseUrl outside a browser page");
      base = `${loc.protocol}//${loc.host}`;
    }
    const url = new URL(`${base}/api/v1/ws`);
    url.protocol = url.protocol === "https:" || url.protocol === "wss:" ? "wss:" : "ws:";
    url.searchParams.set("token", this.token ?? "");
    if (this.lastEventId !== null) url.searchParams.set("since", String(this.lastEventId));
    return url.toString();
  }

  /** The delay before attempt `attempt` (1, 2, ...): exponential, capped at backoffMaxMs,
   * with jitter in its upper half so that many clients do not return at the same moment. */
  backoffDelay(attempt) {
    const ceiling = Math.min(this.backoffMaxMs, this.backoffBaseMs * 2 ** Math.max(0, attempt - 1));
    return Math.round(ceiling / 2 + (this._random() * ceiling) / 2);
  }

  /** Tell the chat's other participants that the user is typing; at most one frame per chat
   * per typingIntervalMs (the server drops more anyway). True when a frame went out. */
  typing(chatId) {
    const now = this._now();
    const last = this._typingSent.get(chatId);
    if (last !== undefined && now - last < this.typingIntervalMs) return false;
    if (!this._send({ type: "typing", chat_id: chatId })) return false;
    this._typingSent.set(chatId, now);
    return true;
  }

  _open() {
    if (!this._WebSocket) {
      this._scheduleRetry();
      return;
    }
    this._setState("connecting");
    let ws;
    try {
      ws = new this._WebSocket(this.feedUrl());
    } catch {
      this._scheduleRetry();
      return;
    }
    this._ws = ws;
    this._resumeAsked = this.lastEventId !== null;
    this._gotReset = false;
    ws.onopen = () => {
      if (ws === this._ws) this._armPing();
    };
    ws.onmessage = (event) => this._onFrame(ws, event.data);
    ws.onerror = () => {}; // a close event follows; the close decides
    ws.onclose = (event) => this._onClose(ws, event?.code ?? 1006);
  }

  _onFrame(ws, data) {
    if (ws !== this._ws) return;
    this._armPing(); // any frame shows the connection is alive
    let frame;
    try {
      frame = JSON.parse(typeof data === "string" ? data : String(data));
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    switch (frame.type) {
      case "ready":
        this._onReady(frame);
        return;
      case "reset":
        // The server's history does not reach back to our `since`: what we show may have
        // missed events. The "ready" that follows says resumed: false, and the app reloads.
        this._gotReset = true;
        this.lastEventId = null;
        this._emit("reset", frame);
        return;
      case "pong":
        return;
      case "typing":
        this._emit("typing", frame);
        return;
      case "error":
        this._emit("feed-error", frame);
        return;
      default:
        break;
    }
    if (typeof frame.event_id !== "number") return;
    if (this.lastEventId !== null && frame.event_id <= this.lastEventId) return; // seen already
    this.lastEventId = frame.event_id;
    if (frame.type === "message.created") this._matchEcho(frame.message);
    this._emit("event", frame);
    this._emit(frame.type, frame);
  }

  _onReady(frame) {
    this.user = frame.user ?? this.user;
    const resumed = this._resumeAsked && !this._gotReset;
    if (typeof frame.last_event_id === "number") {
      this.lastEventId = Math.max(this.lastEventId ?? 0, frame.last_event_id);
    }
    this.attempt = 0;
    this.retryAt = null;
    this._setState("open");
    this._emit("ready", { ...frame, resumed });
  }

  _matchEcho(message) {
    const clientId = message?.client_id;
    if (!clientId || !this._outstanding.has(clientId)) return;
    if (this.user && message.sender?.id !== this.user.id) return; // another user's id
    this._confirm(clientId, message);
  }

  _confirm(clientId, message) {
    if (!this._outstanding.has(clientId)) return; // the other path was first
    const chatId = this._outstanding.get(clientId);
    this._outstanding.delete(clientId);
    this._emit("sent", { clientId, chatId, message });
  }

  _onClose(ws, code) {
    if (ws !== this._ws) return;
    this._drop();
    if (code === CLOSE_UNAUTHORIZED) {
      // The token expired or was revoked: retrying with it cannot succeed.
      this._wantOpen = false;
      this._setState("unauthorized");
      this._emit("unauthorized", { source: "feed", code });
      return;
    }
    if (code === CLOSE_BAD_SINCE) this.lastEventId = null; // start afresh; the app reloads
    if (!this._wantOpen) {
      this._setState("closed");
      return;
    }
    this._scheduleRetry();
  }

  _drop() {
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
    }
    this._clearPing();
  }

  _scheduleRetry() {
    this.attempt += 1;
    const delay = this.backoffDelay(this.attempt);
    this.retryAt = this._now() + delay;
    this._retryTimer = this._setTimeout(() => {
      this._retryTimer = null;
      if (this._wantOpen) this._open();
    }, delay);
    this._setState("waiting", { delayMs: delay });
  }

  _cancelRetry() {
    if (this._retryTimer !== null) this._clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this.retryAt = null;
  }

  // A connection that died without a close (a laptop lid, a dropped network) is noticed by
  // a ping that gets no answer, rather than by waiting for TCP to give up.
  _armPing() {
    this._clearPing();
    if (this.pingIntervalMs <= 0) return;
    this._pingTimer = this._setTimeout(() => {
      this._pingTimer = null;
      if (!this._send({ type: "ping" }, true)) return;
      this._pongTimer = this._setTimeout(() => {
        this._pongTimer = null;
        const ws = this._ws;
        if (!ws) return;
        this._drop();
        closeQuietly(ws, 4000);
        if (this._wantOpen) this._scheduleRetry();
      }, this.pongTimeoutMs);
    }, this.pingIntervalMs);
  }

  _clearPing() {
    if (this._pingTimer !== null) this._clearTimeout(this._pingTimer);
    if (this._pongTimer !== null) this._clearTimeout(this._pongTimer);
    this._pingTimer = this._pongTimer = null;
  }

  _send(frame, beforeReady = false) {
    const ws = this._ws;
    if (!ws || ws.readyState !== OPEN || (!beforeReady && this.state !== "open")) return false;
    try {
      ws.send(JSON.stringify(frame));
      return true;
    } catch {
      return false;
    }
  }

  _setState(state, extra = {}) {
    this.state = state;
    this._emit("state", { state, attempt: this.attempt, retryAt: this.retryAt, ...extra });
  }
}

function aborted() {
  return new BridgeError(0, "aborted", "the request was cancelled");
}

function seg(value) {
  return encodeURIComponent(String(value));
}

function closeQuietly(ws, code) {
  try {
    ws.close(code);
  } catch {
    // already closing
  }
}
