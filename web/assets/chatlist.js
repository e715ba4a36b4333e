// The chat list: newest activity first, unread counts, inactive chats marked read-only.

import { h, replaceChildren, show } from "./dom.js";
import { t } from "./i18n.js";

export class ChatListView {
  constructor({ list, empty }) {
    this.listEl = list;
    this.emptyEl = empty;
  }

  /** Draw `chats`; `openId` is the chat on screen; `emptyText` says why there are none. */
  render(chats, { openId, meId, emptyText }) {
    // Drawn anew; the chat link that had the focus gets it back.
    const focused = this.listEl.contains(document.activeElement)
      ? document.activeElement.dataset.chatId
      : null;
    replaceChildren(this.listEl, chats.map((chat) => this.item(chat, chat.id === openId, meId)));
    if (focused) this.listEl.querySelector(`[data-chat-id="${focused}"]`)?.focus();
    this.emptyEl.textContent = emptyText;
    show(this.emptyEl, chats.length === 0);
  }

  item(chat, open, meId) {
    const last = chat.last_message;
    // Unread counts follow one's read marks; a reader who is no participant (an
    // administrator) keeps none, so shows none.
    const participant = chat.participants.some((p) => p.id === meId);
    const unread = participant ? (chat.unread_count ?? 0) : 0;
    const preview = last
      ? `${last.sender.id === meId ? t("you") : last.sender.name}: ${summary(last)}`
      : t("noMessages");
    return h(
      "li",
      {},
      h(
        "a",
        {
          class: `chat-item${open ? " open" : ""}${chat.is_active ? "" : " inactive"}`,
          href: `#chat=${chat.id}`,
          "aria-current": open ? "page" : null,
          dataset: { chatId: String(chat.id) },
        },
        h(
          "span",
          { class: "chat-item-top" },
          h("span", { class: "chat-item-title", text: chat.title }),
          unread > 0
            ? h("span", {
                class: "badge",
                text: String(unread),
                title: t("unread", { n: unread }),
                "aria-label": t("unread", { n: unread }),
              })
            : null,
        ),
        h(
          "span",
          { class: "chat-item-bottom" },
          h("span", { class: "chat-item-preview", text: preview }),
          chat.is_active ? null : h("span", { class: "tag", text: t("readOnly") }),
        ),
      ),
    );
  }
}

/** A message in one line: its text, else the names of its files. */
function summary(message) {
  if (message.content.trim() || !message.files?.length) return oneLine(message.content);
  return oneLine(`📎 ${message.files.map((f) => f.name).join(", ")}`);
}

function oneLine(text) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 80 ? `${flat.slice(0, 79)}…` : flat;
}
