// The composer: Enter sends, Shift+Enter starts a new line, Escape cancels an edit or a
// reply, ArrowUp in an empty box edits one's last message. Typing is reported through
// `onTyping` (the client limits how often it reaches the server).

import { show } from "./dom.js";
import { t } from "./i18n.js";

export class Composer {
  /**
   * @param {object} parts form, input (<textarea>), button, banner, bannerText, bannerCancel
   * @param {object} hooks onSend(text, replyTo), onSave(message, text), onTyping(),
   *   lastOwnMessage() -> message|null
   */
  constructor(parts, hooks) {
    Object.assign(this, parts);
    this.hooks = hooks;
    this.mode = null; // null | {kind: "edit"|"reply", message}
    this.draft = ""; // what was being written before an edit started
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("keydown", (event) => this.onKey(event));
    this.input.addEventListener("input", () => {
      this.autosize();
      if (this.input.value.trim() && this.mode?.kind !== "edit") this.hooks.onTyping();
    });
    this.bannerCancel.addEventListener("click", () => {
      this.cancelMode();
      this.input.focus();
    });
  }

  onKey(event) {
    if (event.isComposing || event.keyCode === 229) return; // an IME is still composing
    if (event.key === "Enter" && !event.shiftKey && !event.altKey && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      this.submit();
    } else if (event.key === "Escape" && this.mode) {
      event.preventDefault();
      this.cancelMode();
    } else if (event.key === "ArrowUp" && !this.input.value && !this.mode) {
      const last = this.hooks.lastOwnMessage();
      if (last) {
        event.preventDefault();
        this.startEdit(last);
      }
    }
  }

  submit() {
    const text = this.input.value;
    if (!text.trim()) return;
    if (this.mode?.kind === "edit") {
      const message = this.mode.message;
      if (text !== message.content) this.hooks.onSave(message, text);
      this.cancelMode();
      return;
    }
    const replyTo = this.mode?.kind === "reply" ? this.mode.message : null;
    this.input.value = "";
    this.autosize();
    this.setMode(null);
    this.hooks.onSend(text, replyTo);
  }

  startEdit(message) {
    if (this.mode?.kind !== "edit") this.draft = this.input.value;
    this.setMode({ kind: "edit", message });
    this.input.value = message.content;
    this.autosize();
    this.input.focus();
    this.input.setSelectionRange(this.input.value.length, this.input.value.length);
  }

  startReply(message) {
    if (this.mode?.kind === "edit") this.restoreDraft();
    this.setMode({ kind: "reply", message });
    this.input.focus();
  }

  cancelMode() {
    if (this.mode?.kind === "edit") this.restoreDraft();
    this.setMode(null);
  }

  restoreDraft() {
    this.input.value = this.draft;
    this.draft = "";
    this.autosize();
  }

  /** The message being edited or answered disappeared. */
  forget(messageId) {
    if (this.mode?.message.id === messageId) this.cancelMode();
  }

  setMode(mode) {
    this.mode = mode;
    this.form.classList.toggle("editing", mode?.kind === "edit");
    show(this.banner, mode !== null);
    if (!mode) {
      this.bannerText.textContent = "";
      this.button.textContent = t("send");
      return;
    }
    const m = mode.message;
    this.bannerText.textContent =
      mode.kind === "edit" ? t("editing") : t("replyingTo", { name: m.sender.name, text: clip(m.content) });
    this.button.textContent = mode.kind === "edit" ? t("save") : t("send");
  }

  /** For another chat: empty, no edit or reply. */
  clear() {
    this.input.value = "";
    this.draft = "";
    this.setMode(null);
    this.autosize();
  }

  autosize() {
    // Grow with the text up to the CSS max-height (set as a class, never inline style).
    const lines = this.input.value.split("\n").length;
    this.input.rows = Math.min(8, Math.max(1, lines));
  }
}

function clip(text) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 60 ? `${flat.slice(0, 59)}…` : flat;
}
