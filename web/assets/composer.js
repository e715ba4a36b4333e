// The composer: Enter sends, Shift+Enter starts a new line, Escape cancels an edit or a
// reply, ArrowUp in an empty box edits one's last message. Typing is reported through
// `onTyping` (the client limits how often it reaches the server). Files (the attach button,
// pasting, or dropping them on the chat) are uploaded as soon as they are attached, listed
// above the box with their progress, and sent with the message by id.

import { h, replaceChildren, show } from "./dom.js";
import { fileSize, t } from "./i18n.js";
import { Attachments, MAX_FILES } from "./state.js";

export class Composer {
  /**
   * @param {object} parts form, input (<textarea>), button, banner, bannerText, bannerCancel,
   *   attach (button), fileInput (<input type=file>), fileList (<ul>), fileStatus
   * @param {object} hooks onSend(text, replyTo, files), onSave(message, text), onTyping(),
   *   lastOwnMessage() -> message|null, upload(file, {onProgress, signal}) -> Promise<file>
   */
  constructor(parts, hooks) {
    Object.assign(this, parts);
    this.hooks = hooks;
    this.attachments = new Attachments();
    this.uploads = new Map(); // attachment key -> AbortController of its upload
    this.attach.addEventListener("click", () => this.fileInput.click());
    this.fileInput.addEventListener("change", () => {
      this.attachFiles([...this.fileInput.files]);
      this.fileInput.value = ""; // the same file may be chosen again
    });
    this.input.addEventListener("paste", (event) => {
      const files = [...(event.clipboardData?.files ?? [])];
      if (!files.length) return;
      event.preventDefault();
      this.attachFiles(files);
    });
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
    if (this.mode?.kind === "edit") {
      if (!text.trim()) return;
      const message = this.mode.message;
      if (text !== message.content) this.hooks.onSave(message, text);
      this.cancelMode();
      return;
    }
    // With files, the text may be empty.
    if (!text.trim() && !this.attachments.size) return;
    if (!this.attachments.ready()) {
      this.say(this.attachments.items.some((i) => i.state === "failed") ? t("filesFailed") : t("filesWait"));
      return;
    }
    const files = this.attachments.files();
    const replyTo = this.mode?.kind === "reply" ? this.mode.message : null;
    this.input.value = "";
    this.autosize();
    this.setMode(null);
    this.attachments.clear();
    this.renderFiles();
    this.say("");
    this.hooks.onSend(text, replyTo, files);
  }

  // --- files ------------------------------------------------------------------------

  /** Attach files (from the button, a paste or a drop): each starts uploading at once. */
  attachFiles(files) {
    if (this.mode?.kind === "edit") return; // an edit changes only the text
    const { added, refused } = this.attachments.add(files);
    for (const item of added) this.upload(item);
    this.renderFiles();
    this.say(refused ? t("tooManyFiles", { n: MAX_FILES }) : "");
  }

  upload(item) {
    const controller = new AbortController();
    this.uploads.set(item.key, controller);
    const onProgress = (fraction) => {
      if (this.attachments.progress(item.key, fraction)) this.renderFiles();
    };
    this.hooks.upload(item.source, { onProgress, signal: controller.signal }).then(
      (file) => {
        if (this.uploads.get(item.key) !== controller) return;
        this.uploads.delete(item.key);
        if (this.attachments.uploaded(item.key, file)) this.renderFiles();
      },
      (err) => {
        if (this.uploads.get(item.key) !== controller) return; // removed, or the chat left
        this.uploads.delete(item.key);
        const reason = err?.status === 0 ? t("noConnection") : (err?.message ?? String(err));
        if (this.attachments.failed(item.key, reason)) this.renderFiles();
      },
    );
  }

  removeFile(key) {
    this.uploads.get(key)?.abort();
    this.uploads.delete(key);
    this.attachments.remove(key);
    this.renderFiles();
    this.say("");
    this.input.focus();
  }

  retryFile(key) {
    const item = this.attachments.retrying(key);
    if (!item) return;
    this.upload(item);
    this.renderFiles();
    this.say("");
    // The Retry button is gone: the file's Remove button keeps the keyboard's place.
    this.fileList.querySelector(`[data-focus-key="remove${key}"]`)?.focus();
  }

  /** A short word about the files (why the message did not go yet), read out too. */
  say(text) {
    this.fileStatus.textContent = text;
    show(this.fileStatus, Boolean(text));
  }

  renderFiles() {
    const items = this.attachments.items;
    const focusedKey = this.fileList.contains(document.activeElement)
      ? document.activeElement.dataset.focusKey
      : null;
    replaceChildren(
      this.fileList,
      items.map((item) => {
        let state = null;
        if (item.state === "uploading") {
          const percent = Math.round(item.progress * 100);
          state = [
            h("progress", { max: "100", value: String(percent), "aria-label": t("uploadingFile", { name: item.name }) }),
            h("span", { class: "file-state", text: t("uploading", { p: percent }) }),
          ];
        } else if (item.state === "failed") {
          state = [
            h("span", { class: "file-state error", text: t("uploadFailed", { reason: item.error }) }),
            h("button", {
              type: "button",
              class: "link",
              text: t("retry"),
              dataset: { focusKey: `retry${item.key}` },
              onclick: () => this.retryFile(item.key),
            }),
          ];
        } else {
          state = h("span", { class: "file-state ok", text: t("uploaded") });
        }
        return h(
          "li",
          { class: `attachment ${item.state}` },
          h("span", { class: "attachment-name", text: item.name }),
          h("span", { class: "attachment-size", text: fileSize(item.size) }),
          state,
          h("button", {
            type: "button",
            class: "link",
            text: "✕",
            title: t("removeFile", { name: item.name }),
            "aria-label": t("removeFile", { name: item.name }),
            dataset: { focusKey: `remove${item.key}` },
            onclick: () => this.removeFile(item.key),
          }),
        );
      }),
    );
    show(this.fileList, items.length > 0);
    if (focusedKey) this.fileList.querySelector(`[data-focus-key="${focusedKey}"]`)?.focus();
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
    show(this.attach, mode?.kind !== "edit");
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

  /** For another chat: empty, no edit or reply, no files (they were uploaded to this one). */
  clear() {
    for (const controller of this.uploads.values()) controller.abort();
    this.uploads.clear();
    this.attachments.clear();
    this.renderFiles();
    this.say("");
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
