// The open chat's messages: oldest at the top, older ones loaded when scrolled to the top,
// kept in place when they arrive; each message drawn again only when it changed. Reports the
// messages the reader has seen (for read marks) through `onSeen`.

import { h, replaceChildren, show } from "./dom.js";
import { fileSize, joinNames, longTime, shortTime, t } from "./i18n.js";
import { COMMON_EMOJI, holdsReaction, reactionSummary } from "./state.js";

const INLINE_IMAGES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
const NEAR_TOP_PX = 150;
const NEAR_BOTTOM_PX = 80;

export class MessageListView {
  /**
   * @param {object} parts scroller (the scrolling box), list (<ol>), top (status line above)
   * @param {object} hooks onOlder(), onSeen(id), onRetry(item), onDiscard(item),
   *   onEdit(message), onDelete(message), onReply(message), onReact(message, emoji) (adds it,
   *   or takes it back when one holds it), onRedraw(), renewFile(file) -> Promise<file>
   */
  constructor({ scroller, list, top }, hooks) {
    this.scroller = scroller;
    this.listEl = list;
    this.topEl = top;
    this.hooks = hooks;
    this.nodes = new Map(); // key -> {el, sig}
    this.confirmingDelete = null; // id of the message asking "delete?"
    this.pickerFor = null; // id of the message whose reaction picker is open
    this.names = new Map(); // user id -> name, for "read by"
    this.observer = new IntersectionObserver((entries) => this.onIntersect(entries), {
      root: scroller,
      threshold: 0.5,
    });
    scroller.addEventListener("scroll", () => this.onScroll(), { passive: true });
    // Full dates as tooltips, written when first pointed at or focused rather than for
    // every message drawn.
    for (const type of ["pointerover", "focusin"]) {
      list.addEventListener(type, (event) => fullDateTitle(event.target), { passive: true });
    }
  }

  /** Start over for another chat. */
  reset() {
    this.observer.disconnect();
    this.nodes.clear();
    this.confirmingDelete = null;
    this.pickerFor = null;
    replaceChildren(this.listEl);
    this.topEl.textContent = "";
  }

  /** Draw `items` (confirmed messages by id, then pending ones) for `ctx`: {me, chat,
   * canPost (also: may react), canDeleteAny (an administrator), loaded, hasOlder, loadingOlder, loadError, stickToBottom}. The bottom stays in
   * view when the reader was there (or `stickToBottom`); older messages arriving above keep
   * the reader's place. */
  render(items, ctx) {
    this.ctx = ctx;
    this.names = new Map((ctx.chat?.participants ?? []).map((p) => [p.id, p.name]));
    // Where the reader was (a layout read: skipped while nothing is drawn yet).
    const empty = this.nodes.size === 0;
    const wasNearBottom = empty || this.nearBottom();
    const before = empty ? 0 : this.scroller.scrollHeight;
    const beforeTop = empty ? 0 : this.scroller.scrollTop;
    const firstKey = this.listEl.firstElementChild?.dataset.key ?? null;

    const byId = new Map(items.filter((m) => m.id).map((m) => [m.id, m]));
    const keep = new Set();
    let cursor = this.listEl.firstElementChild;
    for (const item of items) {
      const key = item.id ? `m${item.id}` : `c${item.client_id}`;
      keep.add(key);
      const sig = signature(item, ctx, byId, this.confirmingDelete, this.pickerFor);
      let node = this.nodes.get(key);
      if (!node || node.sig !== sig) {
        const el = this.draw(item, ctx, byId);
        el.dataset.key = key;
        if (node) {
          // A keyboard user's place survives the redraw: the control at the same position
          // in the new drawing gets the focus back.
          const focusAt = node.el.contains(document.activeElement)
            ? [...node.el.querySelectorAll("button, a")].indexOf(document.activeElement)
            : -1;
          this.observer.unobserve(node.el);
          node.el.replaceWith(el);
          if (cursor === node.el) cursor = el;
          if (focusAt >= 0) el.querySelectorAll("button, a")[focusAt]?.focus();
        }
        node = { el, sig };
        this.nodes.set(key, node);
        if (item.id && item.sender.id !== ctx.me) this.observer.observe(el);
      }
      if (node.el !== cursor) this.listEl.insertBefore(node.el, cursor);
      else cursor = cursor.nextElementSibling;
    }
    for (const [key, node] of this.nodes) {
      if (!keep.has(key)) {
        this.observer.unobserve(node.el);
        node.el.remove();
        this.nodes.delete(key);
      }
    }
    this.drawTop(ctx, items.length);

    const grewAtTop = firstKey !== null && this.listEl.firstElementChild?.dataset.key !== firstKey;
    if (grewAtTop && !wasNearBottom) {
      // Older messages came in above: keep what the reader was looking at where it was.
      this.scroller.scrollTop = beforeTop + (this.scroller.scrollHeight - before);
    } else if (wasNearBottom || ctx.stickToBottom) {
      this.scrollToBottom();
    }
  }

  drawTop(ctx, count) {
    let text = "";
    if (!ctx.loaded) text = t("loading");
    else if (ctx.loadingOlder) text = t("loadingOlder");
    else if (ctx.loadError) text = ctx.loadError;
    else if (!ctx.hasOlder) text = count ? t("beginning") : t("noMessages");
    this.topEl.textContent = text;
    show(this.topEl, text !== "");
  }

  scrollToBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  nearBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < NEAR_BOTTOM_PX;
  }

  /** True when the loaded messages do not fill the box, or the reader is at the top. */
  wantsOlder() {
    return this.scroller.scrollTop < NEAR_TOP_PX;
  }

  onScroll() {
    if (this.ctx?.hasOlder && !this.ctx.loadingOlder && this.wantsOlder()) this.hooks.onOlder();
  }

  onIntersect(entries) {
    if (document.visibilityState !== "visible") return;
    for (const entry of entries) {
      if (entry.isIntersecting) {
        const id = Number(entry.target.dataset.key.slice(1));
        if (id) this.hooks.onSeen(id);
      }
    }
  }

  /** Ask again which messages are on screen (after the tab became visible). */
  recheckSeen() {
    for (const node of this.nodes.values()) {
      if (node.el.dataset.key.startsWith("m")) {
        this.observer.unobserve(node.el);
        this.observer.observe(node.el);
      }
    }
  }

  // --- one message --------------------------------------------------------------------

  draw(m, ctx, byId) {
    const mine = m.sender.id === ctx.me;
    const classes = ["msg", mine ? "mine" : "theirs"];
    if (m.pending) classes.push(m.pending.state === "failed" ? "failed" : "sending");
    const edited = m.edited_at
      ? h("span", { class: "msg-edited", text: t("edited"), dataset: { at: m.edited_at } })
      : null;
    const confirming = Boolean(m.id) && this.confirmingDelete === m.id;
    return h(
      "li",
      { class: classes.join(" ") },
      h(
        "div",
        { class: "msg-meta" },
        h("span", { class: "msg-author", text: mine ? t("you") : m.sender.name }),
        h("time", { datetime: m.created_at, text: shortTime(m.created_at) }),
        edited,
        m.pending || confirming ? null : this.drawActions(m, mine, ctx),
      ),
      m.reply_to_id ? this.drawReply(m.reply_to_id, byId) : null,
      m.content || !m.files?.length ? h("div", { class: "msg-text", text: m.content }) : null,
      m.files?.length ? this.drawFiles(m.files) : null,
      m.reactions?.length ? this.drawReactions(m, ctx) : null,
      m.id && this.pickerFor === m.id && ctx.canPost ? this.drawPicker(m, ctx) : null,
      confirming ? this.drawConfirmDelete(m) : this.drawStatus(m, mine),
    );
  }

  drawReply(replyToId, byId) {
    const parent = byId.get(replyToId);
    const text = parent
      ? t("replyTo", { name: parent.sender.name, text: clip(parent.content, 90) })
      : t("replyUnknown");
    return h("div", { class: "msg-reply", text });
  }

  drawFiles(files) {
    return h(
      "ul",
      { class: "msg-files" },
      files.map((file) => {
        if (!safeUrl(file.url)) return h("li", { text: file.name });
        return h("li", {}, INLINE_IMAGES.has(file.content_type) ? this.drawImage(file) : this.drawLink(file));
      }),
    );
  }

  drawImage(file) {
    const img = h("img", {
      src: file.url,
      alt: t("image", { name: file.name }),
      loading: "lazy",
      decoding: "async",
    });
    const link = h("a", { href: file.url, target: "_blank", rel: "noopener" }, img);
    let renewed = false;
    img.addEventListener("error", () => {
      // The signed link may have run out: ask for a fresh one, once.
      if (renewed) {
        link.replaceWith(h("span", { class: "msg-file-missing", text: t("imageUnavailable", { name: file.name }) }));
        return;
      }
      renewed = true;
      this.hooks
        .renewFile(file)
        .then((fresh) => {
          if (!safeUrl(fresh.url)) throw new Error("not a file link");
          img.src = fresh.url;
          link.href = fresh.url;
        })
        .catch(() => img.dispatchEvent(new Event("error")));
    });
    return link;
  }

  drawLink(file) {
    const link = h("a", {
      href: file.url,
      class: "msg-file",
      download: file.name,
      text: t("file", { name: file.name, size: fileSize(file.size) }),
    });
    link.addEventListener("click", (event) => {
      // Links are signed for a while only: fetch a fresh one before following it.
      event.preventDefault();
      this.hooks.renewFile(file).then(
        (fresh) => {
          const url = safeUrl(fresh.url) ? fresh.url : file.url;
          link.href = url;
          location.assign(url);
        },
        () => location.assign(file.url),
      );
    });
    return link;
  }

  drawStatus(m, mine) {
    if (m.pending) {
      const p = m.pending;
      if (p.state !== "failed") return h("div", { class: "msg-status", role: "status", text: t("sending") });
      return h(
        "div",
        { class: "msg-status msg-failed", role: "alert" },
        h("span", { text: p.error }),
        " ",
        h("button", { type: "button", class: "link", text: t("retry"), onclick: () => this.hooks.onRetry(m) }),
        " ",
        h("button", { type: "button", class: "link", text: t("discard"), onclick: () => this.hooks.onDiscard(m) }),
      );
    }
    if (!mine) return null;
    const readers = m.read_by.map((id) => this.names.get(id) ?? id);
    return h("div", {
      class: `msg-status${readers.length ? " msg-read" : ""}`,
      text: readers.length ? `✓✓ ${t("read")}` : `✓ ${t("sent")}`,
      title: readers.length ? t("readBy", { names: joinNames(readers) }) : null,
    });
  }

  drawConfirmDelete(m) {
    return h(
      "div",
      { class: "msg-confirm", role: "group" },
      h("span", { text: t("confirmDelete") }),
      h("button", {
        type: "button",
        class: "danger",
        text: t("delete"),
        onclick: () => {
          this.confirmingDelete = null;
          this.hooks.onDelete(m);
        },
      }),
      h("button", {
        type: "button",
        text: t("cancel"),
        onclick: () => {
          this.confirmingDelete = null;
          this.hooks.onRedraw();
        },
      }),
    );
  }

  drawActions(m, mine, ctx) {
    const buttons = [];
    if (ctx.canPost) {
      buttons.push(
        h("button", {
          type: "button",
          class: "link msg-react",
          text: t("react"),
          "aria-expanded": String(this.pickerFor === m.id),
          onclick: () => this.togglePicker(m),
        }),
      );
      buttons.push(h("button", { type: "button", class: "link", text: t("reply"), onclick: () => this.hooks.onReply(m) }));
      if (mine) {
        buttons.push(h("button", { type: "button", class: "link", text: t("edit"), onclick: () => this.hooks.onEdit(m) }));
      }
    }
    // An author may delete their own message even in a closed chat; an administrator, who
    // otherwise only reads, may delete any.
    if (mine || ctx.canDeleteAny) {
      buttons.push(
        h("button", {
          type: "button",
          class: "link",
          text: t("delete"),
          onclick: () => {
            this.confirmingDelete = m.id;
            this.hooks.onRedraw();
            this.focusIn(m.id, ".msg-confirm button");
          },
        }),
      );
    }
    return buttons.length ? h("span", { class: "msg-actions" }, buttons) : null;
  }

  focusIn(messageId, selector) {
    this.listEl.querySelector(`[data-key="m${messageId}"] ${selector}`)?.focus();
  }

  // --- reactions --------------------------------------------------------------------

  /** The reactions under a message: counts, one's own marked; where one may react, each is a
   * button that adds one's own (or takes it back). */
  drawReactions(m, ctx) {
    const interactive = ctx.canPost && Boolean(m.id);
    return h(
      "ul",
      { class: "msg-reactions", "aria-label": t("reactions") },
      reactionSummary(m.reactions, ctx.me).map((r) => {
        const names = joinNames(r.userIds.map((id) => (id === ctx.me ? t("you") : (this.names.get(id) ?? id))));
        const title = t("reactionTitle", { emoji: r.emoji, names });
        const text = t("reaction", { emoji: r.emoji, n: r.count });
        const chip = interactive
          ? h("button", {
              type: "button",
              class: "reaction",
              text,
              title: `${title}. ${r.mine ? t("reactionRemove") : t("reactionAdd")}`,
              "aria-pressed": String(r.mine),
              onclick: () => this.hooks.onReact(m, r.emoji),
            })
          : h("span", { class: "reaction", text, title });
        return h("li", { class: r.mine ? "mine" : null }, chip);
      }),
    );
  }

  togglePicker(m) {
    const opening = this.pickerFor !== m.id;
    this.pickerFor = opening ? m.id : null;
    this.hooks.onRedraw();
    this.focusIn(m.id, opening ? ".msg-picker button" : ".msg-react");
  }

  closePicker(m) {
    this.pickerFor = null;
    this.hooks.onRedraw();
    this.focusIn(m.id, ".msg-react");
  }

  /** A row of common emoji: arrows move along it, Enter or Space chooses, Escape closes. */
  drawPicker(m, ctx) {
    const buttons = COMMON_EMOJI.map((emoji) => {
      const held = holdsReaction(m, emoji, ctx.me);
      const label = held ? t("reactionTakeBack", { emoji }) : t("reactWith", { emoji });
      return h("button", {
        type: "button",
        class: "picker-emoji",
        text: emoji,
        title: label,
        "aria-label": label,
        "aria-pressed": String(held),
        onclick: () => {
          this.hooks.onReact(m, emoji);
          this.closePicker(m);
        },
      });
    });
    const picker = h(
      "div",
      { class: "msg-picker", role: "group", "aria-label": t("chooseReaction") },
      buttons,
      h("button", { type: "button", class: "link", text: t("cancel"), onclick: () => this.closePicker(m) }),
    );
    picker.addEventListener("keydown", (event) => {
      const all = [...picker.querySelectorAll("button")];
      const at = all.indexOf(document.activeElement);
      let next = null;
      if (event.key === "ArrowRight" || event.key === "ArrowDown") next = (at + 1) % all.length;
      else if (event.key === "ArrowLeft" || event.key === "ArrowUp") next = (at - 1 + all.length) % all.length;
      else if (event.key === "Home") next = 0;
      else if (event.key === "End") next = all.length - 1;
      else if (event.key === "Escape") {
        event.preventDefault();
        this.closePicker(m);
        return;
      }
      if (next === null) return;
      event.preventDefault();
      all[next].focus();
    });
    return picker;
  }
}

/** What a message's drawing depends on: equal signatures, no redraw. */
function signature(m, ctx, byId, confirmingDelete, pickerFor) {
  const parent = m.reply_to_id ? byId.get(m.reply_to_id) : null;
  return JSON.stringify([
    m.content,
    m.edited_at,
    m.read_by,
    m.files,
    m.reactions,
    m.pending?.state,
    m.pending?.error,
    parent ? [parent.sender.name, parent.content] : null,
    ctx.canPost,
    ctx.canDeleteAny,
    ctx.me,
    Boolean(m.id) && confirmingDelete === m.id,
    Boolean(m.id) && pickerFor === m.id,
  ]);
}

function fullDateTitle(target) {
  const el = target instanceof Element ? target.closest(".msg") : null;
  if (!el || el.dataset.titled) return;
  el.dataset.titled = "1";
  const time = el.querySelector("time");
  if (time) time.title = longTime(time.dateTime);
  const edited = el.querySelector(".msg-edited");
  if (edited) edited.title = t("editedAt", { time: longTime(edited.dataset.at) });
}

/** Only http(s) links (relative ones included) become src or href: never javascript: or data:. */
function safeUrl(url) {
  try {
    return ["http:", "https:"].includes(new URL(url, location.href).protocol);
  } catch {
    return false;
  }
}

function clip(text, max) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
