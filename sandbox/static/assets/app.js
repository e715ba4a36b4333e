// The sandbox page: one person in Pachca. It follows the sandbox's state (a long poll that the
// server answers as soon as anything changes) and renders the threads that person is in; every
// action is one call to the page API, whose effect comes back through the same poll.

import * as api from "./api.js";
import { byId, h } from "./dom.js";
import { shortTime, t, translatePage } from "./i18n.js";

const QUICK_REACTIONS = ["👍", "❤️", "😂", "🎉", "👀", "✅"];
const RETRY_MS = 1000;

const ui = {
  person: byId("person"),
  conn: byId("conn"),
  notice: byId("notice"),
  threadList: byId("thread-list"),
  threadsEmpty: byId("threads-empty"),
  deliveryList: byId("delivery-list"),
  deliveriesEmpty: byId("deliveries-empty"),
  placeholder: byId("placeholder"),
  threadBody: byId("thread-body"),
  threadChannel: byId("thread-channel"),
  threadTitle: byId("thread-title"),
  messages: byId("messages"),
  composer: byId("composer"),
  input: byId("composer-input"),
  fileInput: byId("file-input"),
};

const state = {
  me: null, // the person acted as (a Pachca user id)
  view: null, // the last answer of /state
  threadId: null, // the open thread
  editing: null, // {id, draft} while a message is being edited
  poll: null, // the AbortController of the running long poll
};

// --- the address: #as=<user id>&thread=<thread id> ---------------------------------------

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const as = Number(params.get("as"));
  const thread = Number(params.get("thread"));
  return { as: as > 0 ? as : null, thread: thread > 0 ? thread : null };
}

function writeHash() {
  const params = new URLSearchParams();
  if (state.me !== null) params.set("as", String(state.me));
  if (state.threadId !== null) params.set("thread", String(state.threadId));
  history.replaceState(null, "", `#${params}`);
}

// --- following the state -----------------------------------------------------------------

async function follow() {
  state.poll?.abort();
  const controller = new AbortController();
  state.poll = controller;
  let after = null;
  while (!controller.signal.aborted) {
    try {
      const view = await api.state(state.me, after, controller.signal);
      if (controller.signal.aborted) return;
      ui.conn.hidden = true;
      after = view.version;
      if (state.me === null && view.people.length > 0) {
        state.me = view.people[0].id; // nobody chosen: the first person
        writeHash();
        follow();
        return;
      }
      render(view);
    } catch (error) {
      if (controller.signal.aborted) return;
      ui.conn.textContent = t("offline");
      ui.conn.hidden = false;
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }
}

function act(promise) {
  ui.notice.hidden = true;
  return promise.catch((error) => {
    ui.notice.textContent = t("failed", { reason: error.message });
    ui.notice.hidden = false;
    throw error;
  });
}

// --- rendering ---------------------------------------------------------------------------

// While a message is being edited the thread is left as it is (the editor keeps its caret);
// it catches up when the edit is saved or cancelled.
function render(view, { force = false } = {}) {
  state.view = view;
  if (!view.threads.some((thread) => thread.id === state.threadId)) {
    state.threadId = view.threads[0]?.id ?? null; // the newest, until one is chosen
    writeHash();
  }
  renderPeople(view);
  renderThreads(view);
  renderDeliveries(view);
  if (force || state.editing === null) {
    renderThread(view.threads.find((thread) => thread.id === state.threadId) ?? null);
  }
}

function renderPeople(view) {
  const options = view.people.map((person) =>
    h("option", { value: String(person.id), selected: person.id === state.me }, person.name),
  );
  ui.person.replaceChildren(...options);
}

function renderThreads(view) {
  ui.threadsEmpty.hidden = view.threads.length > 0;
  ui.threadList.replaceChildren(
    ...view.threads.map((thread) => {
      const last = thread.messages.at(-1);
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: `thread-item${thread.id === state.threadId ? " current" : ""}`,
            "aria-current": thread.id === state.threadId ? "true" : null,
            onclick: () => openThread(thread.id),
          },
          h("span", { class: "thread-item-title" }, thread.root.content),
          h("span", { class: "thread-item-last" }, last ? `${last.author}: ${summary(last)}` : ""),
        ),
      );
    }),
  );
}

/** A message in one line: its text, else its files' names. */
function summary(message) {
  return message.content || message.files.map((file) => file.name).join(", ");
}

function renderDeliveries(view) {
  ui.deliveriesEmpty.hidden = view.deliveries.length > 0;
  ui.deliveriesEmpty.textContent = t(view.webhook_url ? "noWebhooks" : "noWebhookUrl");
  ui.deliveryList.replaceChildren(
    ...view.deliveries.map((d) => {
      const params = { type: d.type, event: d.event, status: d.status ?? "-" };
      const key = d.delivered ? "delivered" : d.attempts === 0 ? "pending" : "notDelivered";
      return h("li", { class: d.delivered ? "ok" : "" }, t(key, params));
    }),
  );
}

function openThread(id) {
  state.threadId = id;
  state.editing = null;
  writeHash();
  if (state.view) render(state.view, { force: true });
  ui.input.focus();
}

function renderThread(thread) {
  ui.placeholder.hidden = thread !== null;
  ui.threadBody.hidden = thread === null;
  if (thread === null) return;
  const atBottom =
    ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 40;
  ui.threadChannel.textContent = thread.channel ?? "";
  ui.threadTitle.textContent = thread.root.content;
  const items = thread.messages.map(renderMessage);
  ui.messages.replaceChildren(
    renderMessage(thread.root, { root: true }),
    ...(items.length ? items : [h("li", { class: "empty" }, t("noMessages"))]),
  );
  if (atBottom) ui.messages.scrollTop = ui.messages.scrollHeight;
}

function renderMessage(message, { root = false } = {}) {
  const editing = state.editing?.id === message.id;
  const classes = ["msg", message.mine && "mine", message.by_bot && "bot", root && "root"];
  return h(
    "li",
    { class: classes.filter(Boolean).join(" "), "data-id": String(message.id) },
    h(
      "div",
      { class: "msg-head" },
      h("span", { class: "msg-author" }, message.author),
      message.relayed ? h("span", { class: "msg-via" }, t("viaBot")) : null,
      h("time", { datetime: message.created_at }, shortTime(message.created_at)),
      message.edited ? h("span", { class: "msg-edited" }, t("edited")) : null,
    ),
    editing ? renderEditor(message) : h("p", { class: "msg-text" }, message.content),
    message.files.length ? h("ul", { class: "msg-files" }, message.files.map(renderFile)) : null,
    renderReactions(message),
    editing ? null : renderActions(message),
  );
}

function renderFile(file) {
  if (file.image) {
    return h(
      "li",
      {},
      h("a", { href: file.url, target: "_blank", rel: "noopener" },
        h("img", { src: file.url, alt: t("image", { name: file.name }), class: "msg-image" })),
    );
  }
  return h("li", {}, h("a", { href: file.url, download: file.name }, t("file", { name: file.name })));
}

function renderReactions(message) {
  if (!message.reactions.length) return null;
  return h(
    "div",
    { class: "msg-reactions" },
    message.reactions.map((r) =>
      h(
        "button",
        {
          type: "button",
          class: `reaction${r.mine ? " mine" : ""}`,
          "aria-pressed": r.mine ? "true" : "false",
          onclick: () => toggleReaction(message, r.code),
        },
        `${r.code} ${r.count}`,
      ),
    ),
  );
}

function renderActions(message) {
  return h(
    "div",
    { class: "msg-actions" },
    QUICK_REACTIONS.map((code) =>
      h(
        "button",
        {
          type: "button",
          class: "link react",
          title: t("react", { emoji: code }),
          "aria-label": t("react", { emoji: code }),
          onclick: () => toggleReaction(message, code),
        },
        code,
      ),
    ),
    message.mine
      ? [
          h("button", { type: "button", class: "link msg-edit", onclick: () => startEdit(message) },
            t("edit")),
          h("button", { type: "button", class: "link msg-delete", onclick: () => remove(message) },
            t("delete")),
        ]
      : null,
  );
}

function renderEditor(message) {
  const input = h("textarea", {
    class: "msg-editor",
    rows: "2",
    oninput: (event) => {
      state.editing.draft = event.target.value;
    },
    onkeydown: (event) => {
      if (event.key === "Escape") cancelEdit();
    },
  });
  input.value = state.editing.draft;
  queueMicrotask(() => input.focus());
  return h(
    "form",
    {
      class: "msg-edit-form",
      onsubmit: (event) => {
        event.preventDefault();
        saveEdit(message);
      },
    },
    input,
    h("button", { type: "submit", class: "msg-save" }, t("save")),
    h("button", { type: "button", class: "link", onclick: cancelEdit }, t("cancel")),
  );
}

// --- actions -----------------------------------------------------------------------------

function toggleReaction(message, code) {
  const held = message.reactions.some((r) => r.code === code && r.mine);
  const call = held ? api.unreact(state.me, message.id, code) : api.react(state.me, message.id, code);
  act(call).catch(() => {});
}

function startEdit(message) {
  state.editing = { id: message.id, draft: message.content };
  render(state.view, { force: true });
}

function cancelEdit() {
  state.editing = null;
  render(state.view, { force: true });
}

function saveEdit(message) {
  const draft = state.editing.draft;
  act(api.edit(state.me, message.id, draft)).then(() => {
    state.editing = null;
    render(state.view, { force: true });
  }, () => {});
}

function remove(message) {
  if (!confirm(t("confirmDelete"))) return;
  act(api.remove(state.me, message.id)).catch(() => {});
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = ui.input.value;
  if (!text.trim() || state.threadId === null) return;
  act(api.post(state.me, state.threadId, text)).then(() => {
    ui.input.value = "";
  }, () => {});
});

ui.input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});

ui.fileInput.addEventListener("change", () => {
  const file = ui.fileInput.files?.[0];
  if (!file || state.threadId === null) return;
  const caption = ui.input.value;
  act(api.postFile(state.me, state.threadId, file, caption)).then(() => {
    ui.input.value = "";
  }, () => {}).finally(() => {
    ui.fileInput.value = "";
  });
});

ui.person.addEventListener("change", () => {
  state.me = Number(ui.person.value);
  state.threadId = null;
  state.editing = null;
  writeHash();
  follow();
});

// --- start -------------------------------------------------------------------------------

translatePage();
const start = readHash();
state.me = start.as;
state.threadId = start.thread;
follow();
