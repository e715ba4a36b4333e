// Unit tests of web/assets/client.js (BridgeClient) with Node's own runner: `node --test tests/web/`.
// fetch, WebSocket, the timers, the clock and the random source are fakes, so every case is
// exact and instant.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BridgeClient,
  BridgeError,
  NEWEST,
  newClientId,
} from "../../web/assets/client.js";

// --- fakes ------------------------------------------------------------------------------------

class FakeClock {
  constructor() {
    this.now = 0;
    this.timers = new Map();
    this.nextId = 1;
  }

  setTimeout = (fn, ms) => {
    const id = this.nextId++;
    this.timers.set(id, { at: this.now + ms, fn, ms });
    return id;
  };

  clearTimeout = (id) => {
    this.timers.delete(id);
  };

  /** Delays of the timers now pending, in the order they were set. */
  pending() {
    return [...this.timers.values()].map((t) => t.ms);
  }

  advance(ms) {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.timers.entries()]
        .filter(([, t]) => t.at <= until)
        .sort((a, b) => a[1].at - b[1].at || a[0] - b[0]);
      if (!due.length) break;
      const [id, timer] = due[0];
      this.timers.delete(id);
      this.now = timer.at;
      timer.fn();
    }
    this.now = until;
  }
}

function socketClass() {
  const sockets = [];
  class FakeSocket {
    constructor(url) {
      this.url = new URL(url);
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }

    send(data) {
      this.sent.push(JSON.parse(data));
    }

    close(code) {
      this.closedWith = code;
      this.readyState = 3;
    }

    // The server's side.
    accept() {
      this.readyState = 1;
      this.onopen?.({});
    }

    frame(obj) {
      this.onmessage?.({ data: JSON.stringify(obj) });
    }

    ready(lastEventId, user = ME) {
      this.frame({ type: "ready", user, chat_ids: [7], last_event_id: lastEventId });
    }

    drop(code = 1006) {
      this.readyState = 3;
      this.onclose?.({ code });
    }
  }
  return { FakeSocket, sockets };
}

const ME = { id: "s1", name: "Sam", role: "student" };

function makeClient(extra = {}) {
  const clock = new FakeClock();
  const { FakeSocket, sockets } = socketClass();
  const calls = [];
  const answers = [];
  const fetch = async (url, init) => {
    calls.push({ url: new URL(url), init });
    const answer = await answers.shift(); // a promise holds the answer back
    if (!answer) throw new TypeError("fetch failed");
    if (answer instanceof Error) throw answer;
    return {
      ok: answer.status >= 200 && answer.status < 300,
      status: answer.status,
      headers: new Map(Object.entries(answer.headers ?? {})),
      text: async () => (answer.body === undefined ? "" : JSON.stringify(answer.body)),
    };
  };
  const client = new BridgeClient({
    baseUrl: "http://bridge.test",
    token: "tok",
    fetch,
    WebSocket: FakeSocket,
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    now: () => clock.now,
    random: () => 0.5,
    pingIntervalMs: 0,
    ...extra,
  });
  return { client, clock, sockets, calls, answers };
}

function record(client, ...types) {
  const seen = [];
  for (const type of types) client.on(type, (detail) => seen.push([type, detail]));
  return seen;
}

const created = (eventId, id, extra = {}) => ({
  type: "message.created",
  event_id: eventId,
  chat_id: 7,
  message: { id, chat_id: 7, content: `m${id}`, sender: ME, client_id: null, ...extra },
});

// --- the feed: resume, reset, backoff, 4401 ---------------------------------------------------

test("the first connection has no since; a reconnect resumes after the last event seen", () => {
  const { client, clock, sockets } = makeClient();
  const seen = record(client, "ready", "message.created");
  client.connect();
  assert.equal(sockets[0].url.pathname, "/api/v1/ws");
  assert.equal(sockets[0].url.protocol, "ws:");
  assert.equal(sockets[0].url.searchParams.get("token"), "tok");
  assert.equal(sockets[0].url.searchParams.has("since"), false);
  sockets[0].accept();
  sockets[0].ready(10);
  sockets[0].frame(created(11, 1));
  sockets[0].frame(created(12, 2));
  assert.equal(client.lastEventId, 12);

  sockets[0].drop(1006);
  clock.advance(1000);
  assert.equal(sockets.length, 2);
  assert.equal(sockets[1].url.searchParams.get("since"), "12");
  sockets[1].accept();
  sockets[1].frame(created(12, 2)); // a duplicate is dropped
  sockets[1].frame(created(13, 3)); // the replay
  sockets[1].ready(13);
  assert.deepEqual(
    seen.map(([type, d]) => (type === "ready" ? `ready:${d.resumed}` : d.event_id)),
    ["ready:false", 11, 12, 13, "ready:true"],
  );
  assert.equal(client.state, "open");
});

test("https bases use wss", () => {
  const { client, sockets } = makeClient({ baseUrl: "https://bridge.example/" });
  client.connect();
  assert.equal(sockets[0].url.origin, "wss://bridge.example");
});

test("reset makes the next ready say resumed: false, and the cursor starts afresh", () => {
  const { client, clock, sockets } = makeClient({ since: 40 });
  const seen = record(client, "reset", "ready");
  client.connect();
  assert.equal(sockets[0].url.searchParams.get("since"), "40");
  sockets[0].accept();
  sockets[0].frame({ type: "reset" });
  sockets[0].ready(5);
  assert.deepEqual(
    seen.map(([type, d]) => [type, d.resumed]),
    [
      ["reset", undefined],
      ["ready", false],
    ],
  );
  assert.equal(client.lastEventId, 5); // behind the old cursor: the server's log was renewed
  sockets[0].frame(created(6, 1));
  assert.equal(client.lastEventId, 6);
  sockets[0].drop();
  clock.advance(1000);
  assert.equal(sockets[1].url.searchParams.get("since"), "6");
});

test("a 4400 close (since refused) reconnects without since", () => {
  const { client, clock, sockets } = makeClient({ since: 3 });
  const seen = record(client, "ready");
  client.connect();
  sockets[0].accept();
  sockets[0].drop(4400);
  clock.advance(1000);
  assert.equal(sockets[1].url.searchParams.has("since"), false);
  sockets[1].accept();
  sockets[1].ready(9);
  assert.equal(seen[0][1].resumed, false);
});

test("backoff: first retry within 1 s, doubling, never more than 30 s apart, with jitter", () => {
  for (const random of [0, 0.999999]) {
    const { client } = makeClient({ random: () => random });
    const delays = Array.from({ length: 12 }, (_, i) => client.backoffDelay(i + 1));
    assert.ok(delays[0] > 0 && delays[0] <= 1000, `first ${delays[0]}`);
    assert.ok(delays.every((d) => d <= 30000), `${delays}`);
    for (let i = 1; i < 5; i++) assert.ok(delays[i] >= delays[i - 1], `${delays}`);
    if (random === 0) assert.deepEqual(delays.slice(0, 6), [500, 1000, 2000, 4000, 8000, 15000]);
    else assert.ok(delays[11] > 29900);
  }
  // Jitter: two clients with different luck do not retry at the same moment.
  const a = makeClient({ random: () => 0.1 }).client.backoffDelay(3);
  const b = makeClient({ random: () => 0.9 }).client.backoffDelay(3);
  assert.notEqual(a, b);
});

test("failed attempts back off; a ready starts the count again", () => {
  const { client, clock, sockets } = makeClient({ random: () => 0 });
  const states = record(client, "state");
  client.connect();
  for (let i = 0; i < 7; i++) {
    sockets.at(-1).drop(1006);
    const [delay] = clock.pending();
    assert.equal(delay, Math.min(30000, 1000 * 2 ** i) / 2); // random() = 0: the lower bound
    assert.equal(client.state, "waiting");
    clock.advance(delay - 1);
    assert.equal(sockets.length, i + 1, "not before its time");
    clock.advance(1);
    assert.equal(sockets.length, i + 2);
  }
  sockets.at(-1).accept();
  sockets.at(-1).ready(1);
  assert.equal(client.attempt, 0);
  sockets.at(-1).drop(1001);
  assert.deepEqual(clock.pending(), [500]);
  assert.ok(states.some(([, d]) => d.state === "waiting" && d.delayMs === 500));
});

test("a 4401 close stops reconnecting and tells the app", () => {
  const { client, clock, sockets } = makeClient();
  const seen = record(client, "unauthorized");
  client.connect();
  sockets[0].accept();
  sockets[0].drop(4401);
  assert.equal(client.state, "unauthorized");
  assert.deepEqual(seen, [["unauthorized", { source: "feed", code: 4401 }]]);
  assert.deepEqual(clock.pending(), []);
  clock.advance(120000);
  assert.equal(sockets.length, 1, "no hammering with a dead token");
  // A new token and connect() open the feed again.
  client.setToken("fresh");
  client.connect();
  assert.equal(sockets[1].url.searchParams.get("token"), "fresh");
});

test("reconnectNow skips the wait; disconnect stops for good", () => {
  const { client, clock, sockets } = makeClient();
  client.connect();
  sockets[0].drop();
  assert.equal(sockets.length, 1);
  client.reconnectNow();
  assert.equal(sockets.length, 2);
  assert.deepEqual(clock.pending(), []);
  client.disconnect();
  assert.equal(sockets[1].closedWith, 1000);
  assert.equal(client.state, "closed");
  clock.advance(60000);
  assert.equal(sockets.length, 2);
});

test("a silent dead connection is noticed by an unanswered ping", () => {
  const { client, clock, sockets } = makeClient({ pingIntervalMs: 25000, pongTimeoutMs: 10000 });
  client.connect();
  sockets[0].accept();
  sockets[0].ready(1);
  clock.advance(25000);
  assert.deepEqual(sockets[0].sent, [{ type: "ping" }]);
  sockets[0].frame({ type: "pong" });
  clock.advance(25000);
  assert.equal(sockets[0].sent.length, 2);
  clock.advance(10000); // no pong this time
  assert.equal(sockets[0].closedWith, 4000);
  assert.equal(client.state, "waiting");
  clock.advance(1000);
  assert.equal(sockets.length, 2);
});

// --- typing ------------------------------------------------------------------------------------

test("typing frames: at most one per chat per 2 s, and only on an open feed", () => {
  const { client, clock, sockets } = makeClient();
  assert.equal(client.typing(7), false); // not connected
  client.connect();
  sockets[0].accept();
  assert.equal(client.typing(7), false); // not ready yet
  sockets[0].ready(1);
  assert.equal(client.typing(7), true);
  clock.advance(500);
  assert.equal(client.typing(7), false);
  assert.equal(client.typing(8), true); // another chat has its own limit
  clock.advance(1499);
  assert.equal(client.typing(7), false);
  clock.advance(1);
  assert.equal(client.typing(7), true);
  assert.deepEqual(sockets[0].sent, [
    { type: "typing", chat_id: 7 },
    { type: "typing", chat_id: 8 },
    { type: "typing", chat_id: 7 },
  ]);
});

test("typing frames from others are passed on", () => {
  const { client, sockets } = makeClient();
  const seen = record(client, "typing");
  client.connect();
  sockets[0].accept();
  sockets[0].ready(1);
  const frame = { type: "typing", chat_id: 7, user: { id: "t1", name: "Tess", role: "teacher" } };
  sockets[0].frame(frame);
  assert.deepEqual(seen, [["typing", frame]]);
  assert.equal(client.lastEventId, 1); // typing carries no event_id
});

// --- optimistic sends ------------------------------------------------------------------------

test("a send is confirmed once: by the feed's echo when it comes first", async () => {
  const { client, sockets, calls, answers } = makeClient();
  const sent = record(client, "sent");
  client.connect();
  sockets[0].accept();
  sockets[0].ready(1);
  let answer;
  answers.push(
    new Promise((resolve) => {
      answer = resolve;
    }),
  );
  const message = { id: 5, chat_id: 7, content: "hi", sender: ME, client_id: "c-1" };
  const promise = client.sendMessage(7, "hi", { clientId: "c-1", replyToId: 4 });
  assert.deepEqual(JSON.parse(calls[0].init.body), {
    content: "hi",
    client_id: "c-1",
    reply_to_id: 4,
  });
  assert.equal(calls[0].url.pathname, "/api/v1/chats/7/messages");
  assert.equal(calls[0].init.headers.Authorization, "Bearer tok");
  // Another user's message with the same client_id is not ours.
  sockets[0].frame(created(2, 4, { client_id: "c-1", sender: { id: "t1" } }));
  assert.equal(sent.length, 0);
  sockets[0].frame(created(3, 5, { client_id: "c-1" }));
  assert.deepEqual(sent, [["sent", { clientId: "c-1", chatId: 7, message: created(3, 5, { client_id: "c-1" }).message }]]);
  answer({ status: 201, body: { message } });
  assert.deepEqual(await promise, message);
  assert.equal(sent.length, 1, "the REST answer does not confirm it twice");
});

test("a send is confirmed once: by the REST answer when it comes first", async () => {
  const { client, sockets, answers } = makeClient();
  const sent = record(client, "sent");
  client.connect();
  sockets[0].accept();
  sockets[0].ready(1);
  const message = { id: 5, chat_id: 7, content: "hi", sender: ME, client_id: "c-2" };
  answers.push({ status: 201, body: { message } });
  await client.sendMessage(7, "hi", { clientId: "c-2" });
  assert.deepEqual(sent, [["sent", { clientId: "c-2", chatId: 7, message }]]);
  sockets[0].frame(created(2, 5, { client_id: "c-2" }));
  assert.equal(sent.length, 1);
});

test("a send that fails offline rejects as retryable, and a retry keeps its client_id", async () => {
  const { client, calls, answers } = makeClient();
  const sent = record(client, "sent");
  await assert.rejects(client.sendMessage(7, "offline", { clientId: "c-3" }), (err) => {
    assert.ok(err instanceof BridgeError);
    assert.equal(err.status, 0);
    assert.equal(err.code, "network");
    assert.equal(err.retryable, true);
    return true;
  });
  const message = { id: 9, chat_id: 7, content: "offline", sender: ME, client_id: "c-3" };
  answers.push({ status: 200, body: { message } }); // the server had it already
  assert.deepEqual(await client.sendMessage(7, "offline", { clientId: "c-3" }), message);
  assert.equal(JSON.parse(calls[1].init.body).client_id, "c-3");
  assert.deepEqual(sent, [["sent", { clientId: "c-3", chatId: 7, message }]]);
});

test("a late echo still confirms a send whose answer was lost", async () => {
  const { client, sockets } = makeClient();
  const sent = record(client, "sent");
  client.connect();
  sockets[0].accept();
  sockets[0].ready(1);
  await assert.rejects(client.sendMessage(7, "lost", { clientId: "c-4" }));
  sockets[0].frame(created(2, 6, { client_id: "c-4" }));
  assert.equal(sent.length, 1);
  assert.equal(sent[0][1].message.id, 6);
});

test("client ids are unique", () => {
  const ids = new Set(Array.from({ length: 100 }, newClientId));
  assert.equal(ids.size, 100);
});

// --- REST --------------------------------------------------------------------------------------

test("errors carry the status, code, message and Retry-After; 401 tells the app", async () => {
  const { client, answers } = makeClient();
  const seen = record(client, "unauthorized");
  answers.push({
    status: 429,
    headers: { "Retry-After": "3" },
    body: { error: { code: "rate_limited", message: "slow down" } },
  });
  await assert.rejects(client.listChats(), (err) => {
    assert.deepEqual([err.status, err.code, err.message, err.retryAfter], [429, "rate_limited", "slow down", 3]);
    assert.equal(err.retryable, true);
    return true;
  });
  answers.push({ status: 400, body: { error: { code: "chat_inactive", message: "read-only" } } });
  await assert.rejects(client.sendMessage(7, "x"), (err) => !err.retryable && err.code === "chat_inactive");
  answers.push({ status: 401, body: { error: { code: "unauthorized", message: "expired" } } });
  await assert.rejects(client.getChat(7));
  assert.equal(seen.length, 1);
  assert.equal(seen[0][1].source, "rest");
});

test("a request that gets no answer times out", async () => {
  const clock = new FakeClock();
  const client = new BridgeClient({
    baseUrl: "http://bridge.test",
    token: "tok",
    setTimeout: clock.setTimeout,
    clearTimeout: clock.clearTimeout,
    requestTimeoutMs: 5000,
    fetch: (_url, init) =>
      new Promise((_resolve, reject) => {
        init.signal.addEventListener("abort", () => reject(new Error("aborted")));
      }),
  });
  const pending = client.listChats();
  clock.advance(5000);
  await assert.rejects(pending, (err) => err.status === 0 && err.code === "timeout");
});

test("the REST calls use the contract's paths, methods and bodies", async () => {
  const { client, calls, answers } = makeClient();
  const file = { id: "f1", name: "a.png", size: 3, content_type: "image/png", url: "/files/x" };
  answers.push(
    { status: 200, body: { chats: [] } },
    { status: 200, body: { chat: { id: 7 } } },
    { status: 200, body: { messages: [], total: 0, limit: 50, offset: 0 } },
    { status: 200, body: { messages: [], total: 0, limit: 20, offset: 0 } },
    { status: 200, body: { message: { id: 1 } } },
    { status: 204 },
    { status: 204 },
    { status: 201, body: { file } },
    { status: 200, body: { file } },
    { status: 204 },
    { status: 204 },
  );
  await client.listChats();
  await client.getChat(7);
  await client.listMessages(7, { limit: 50, beforeId: NEWEST });
  await client.listMessages(7, { limit: 20, offset: 40 });
  await client.editMessage(1, "new text");
  await client.deleteMessage(1);
  await client.markRead(7, 12);
  assert.deepEqual(await client.uploadFile(7, new Blob(["abc"], { type: "image/png" }), "a.png"), file);
  assert.deepEqual(await client.getFile("f1"), file);
  await client.addReaction(1, "👍🏽");
  await client.removeReaction(1, "👨‍👩‍👧");
  const seen = calls.map((c) => `${c.init.method} ${c.url.pathname}${c.url.search}`);
  assert.deepEqual(seen, [
    "GET /api/v1/chats",
    "GET /api/v1/chats/7",
    `GET /api/v1/chats/7/messages?limit=50&before_id=${NEWEST}`,
    "GET /api/v1/chats/7/messages?limit=20&offset=40",
    "PATCH /api/v1/messages/1",
    "DELETE /api/v1/messages/1",
    "POST /api/v1/chats/7/read",
    "POST /api/v1/chats/7/files",
    "GET /api/v1/files/f1",
    `PUT /api/v1/messages/1/reactions/${encodeURIComponent("👍🏽")}`,
    `DELETE /api/v1/messages/1/reactions/${encodeURIComponent("👨‍👩‍👧")}`,
  ]);
  assert.equal(calls[9].url.pathname, "/api/v1/messages/1/reactions/%F0%9F%91%8D%F0%9F%8F%BD");
  assert.deepEqual(JSON.parse(calls[4].init.body), { content: "new text" });
  assert.deepEqual(JSON.parse(calls[6].init.body), { message_id: 12 });
  const form = calls[7].init.body;
  assert.ok(form instanceof FormData);
  assert.equal(form.get("file").name, "a.png");
  assert.equal(calls[7].init.headers["Content-Type"], undefined, "fetch sets the boundary");
});

// --- uploads ------------------------------------------------------------------------------------

function xhrClass() {
  const requests = [];
  class FakeXHR {
    constructor() {
      this.headers = {};
      this.upload = {};
      this.status = 0;
      this.responseText = "";
      this.responseHeaders = {};
      this.aborted = false;
      requests.push(this);
    }

    open(method, url) {
      this.method = method;
      this.url = new URL(url);
    }

    setRequestHeader(name, value) {
      this.headers[name] = value;
    }

    getResponseHeader(name) {
      return this.responseHeaders[name] ?? null;
    }

    send(body) {
      this.body = body;
    }

    abort() {
      this.aborted = true;
      this.onabort?.();
    }

    // The server's side.
    progress(loaded, total) {
      this.upload.onprogress?.({ lengthComputable: true, loaded, total });
    }

    answer(status, body, headers = {}) {
      this.status = status;
      this.responseText = body === undefined ? "" : JSON.stringify(body);
      this.responseHeaders = headers;
      this.onload?.();
    }
  }
  return { FakeXHR, requests };
}

const FILE = { id: "f1", name: "work.png", size: 3, content_type: "image/png", url: "/files/f1?sig=x" };

test("an upload reports its progress and resolves to the file object", async () => {
  const { FakeXHR, requests } = xhrClass();
  const { client } = makeClient({ XMLHttpRequest: FakeXHR });
  const seen = [];
  const pending = client.uploadFile(7, new Blob(["abc"], { type: "image/png" }), {
    filename: "work.png",
    onProgress: (f) => seen.push(f),
  });
  const [xhr] = requests;
  assert.equal(`${xhr.method} ${xhr.url.pathname}`, "POST /api/v1/chats/7/files");
  assert.equal(xhr.url.origin, "http://bridge.test");
  assert.equal(xhr.headers.Authorization, "Bearer tok");
  assert.equal(xhr.headers["Content-Type"], undefined, "the browser sets the multipart boundary");
  assert.ok(xhr.body instanceof FormData);
  assert.equal(xhr.body.get("file").name, "work.png");
  xhr.progress(1, 4);
  xhr.progress(3, 4);
  xhr.answer(201, { file: FILE });
  assert.deepEqual(await pending, FILE);
  assert.deepEqual(seen, [0.25, 0.75, 1]);
});

test("a refused upload rejects with the server's code; a lost one is retryable", async () => {
  const { FakeXHR, requests } = xhrClass();
  const { client } = makeClient({ XMLHttpRequest: FakeXHR });
  const onProgress = () => {};
  const big = client.uploadFile(7, new Blob(["x"]), { filename: "big.bin", onProgress });
  requests[0].answer(413, { error: { code: "payload_too_large", message: "over 20 MiB" } });
  await assert.rejects(big, (err) => err.status === 413 && err.code === "payload_too_large" && !err.retryable);
  const lost = client.uploadFile(7, new Blob(["x"]), { filename: "a", onProgress });
  requests[1].onerror();
  await assert.rejects(lost, (err) => err.status === 0 && err.code === "network" && err.retryable);
  const slow = client.uploadFile(7, new Blob(["x"]), { filename: "a", onProgress });
  assert.equal(requests[2].timeout, client.uploadTimeoutMs);
  requests[2].ontimeout();
  await assert.rejects(slow, (err) => err.code === "timeout");
});

test("an upload given up on (its file removed) is aborted and not retryable", async () => {
  const { FakeXHR, requests } = xhrClass();
  const { client } = makeClient({ XMLHttpRequest: FakeXHR });
  const controller = new AbortController();
  const pending = client.uploadFile(7, new Blob(["x"]), {
    filename: "a",
    onProgress: () => {},
    signal: controller.signal,
  });
  controller.abort();
  assert.equal(requests[0].aborted, true);
  await assert.rejects(pending, (err) => err.code === "aborted" && !err.retryable);
  // Already aborted: nothing goes out.
  await assert.rejects(
    client.uploadFile(7, new Blob(["x"]), { onProgress: () => {}, signal: controller.signal }),
    (err) => err.code === "aborted",
  );
  assert.equal(requests.length, 1);
});

test("without XMLHttpRequest an upload goes by fetch, with no progress, and can be aborted", async () => {
  const { client, calls, answers } = makeClient({ XMLHttpRequest: null });
  let release;
  answers.push(new Promise((resolve) => (release = resolve)));
  const controller = new AbortController();
  const seen = [];
  const pending = client.uploadFile(7, new Blob(["x"]), {
    filename: "a.txt",
    onProgress: (f) => seen.push(f),
    signal: controller.signal,
  });
  await Promise.resolve();
  assert.equal(calls[0].url.pathname, "/api/v1/chats/7/files");
  assert.ok(calls[0].init.signal, "fetch gets a signal");
  controller.abort();
  assert.equal(calls[0].init.signal.aborted, true);
  release(new Error("aborted"));
  await assert.rejects(pending, (err) => err.code === "aborted");
  answers.push({ status: 201, body: { file: FILE } });
  assert.deepEqual(await client.uploadFile(7, new Blob(["x"]), "a.txt"), FILE);
  assert.deepEqual(seen, []);
});

test("a message with files sends their ids in order, and may have empty content", async () => {
  const { client, calls, answers } = makeClient();
  answers.push({ status: 201, body: { message: { id: 5, files: [FILE] } } });
  await client.sendMessage(7, "", { clientId: "c1", fileIds: ["f2", "f1"] });
  assert.deepEqual(JSON.parse(calls[0].init.body), { content: "", client_id: "c1", file_ids: ["f2", "f1"] });
});

// --- file links --------------------------------------------------------------------------------

test("renewing a file link asks once, shares the answer, and remembers it for a while", async () => {
  const { client, clock, calls, answers } = makeClient({ fileLinkMaxAgeMs: 60000 });
  const renewed = record(client, "file.renewed");
  const fresh = { id: "f 1", name: "a.png", url: "/files/fresh" };
  answers.push({ status: 200, body: { file: fresh } });
  const [a, b] = await Promise.all([client.renewFileLink("f 1"), client.renewFileLink("f 1")]);
  assert.deepEqual([a, b], [fresh, fresh]);
  assert.equal(calls.length, 1);
  assert.equal(calls[0].url.pathname, "/api/v1/files/f%201");
  assert.deepEqual(renewed, [["file.renewed", { file: fresh }]]);
  clock.advance(59000);
  assert.deepEqual(await client.renewFileLink("f 1"), fresh);
  assert.equal(calls.length, 1);
  clock.advance(1000);
  answers.push({ status: 200, body: { file: { ...fresh, url: "/files/fresher" } } });
  assert.equal((await client.renewFileLink("f 1")).url, "/files/fresher");
  assert.equal(calls.length, 2);
});

test("a failed renewal is not remembered", async () => {
  const { client, calls, answers } = makeClient();
  answers.push({ status: 404, body: { error: { code: "not_found", message: "gone" } } });
  await assert.rejects(client.renewFileLink("f2"), (err) => err.status === 404);
  answers.push({ status: 200, body: { file: { id: "f2", url: "/x" } } });
  assert.equal((await client.renewFileLink("f2")).url, "/x");
  assert.equal(calls.length, 2);
});

// --- listeners ---------------------------------------------------------------------------------

test("a failing listener does not stop the others or the feed", () => {
  const { client, sockets } = makeClient();
  const seen = [];
  const original = console.error;
  console.error = () => {};
  try {
    client.on("message.created", () => {
      throw new Error("boom");
    });
    const off = client.on("message.created", (e) => seen.push(e.event_id));
    client.connect();
    sockets[0].accept();
    sockets[0].ready(1);
    sockets[0].frame(created(2, 1));
    off();
    sockets[0].frame(created(3, 2));
  } finally {
    console.error = original;
  }
  assert.deepEqual(seen, [2]);
  assert.equal(client.lastEventId, 3);
});
