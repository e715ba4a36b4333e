// The page: signs in, wires the BridgeClient to the state and the views, and applies the
// live feed. One App per page load (signing out or in reloads the page).

import { BridgeClient, NEWEST, newClientId } from "./client.js";
import { ChatListView } from "./chatlist.js";
import { Composer } from "./composer.js";
import { byId, show } from "./dom.js";
import { joinNames, lang, roleName, t } from "./i18n.js";
import { MessageListView } from "./messages.js";
import { forgetToken, fragment, saveToken, takeToken, tokenSubject } from "./session.js";
import { ChatList, MessageList, Outbox, holdsReaction } from "./state.js";

const PAGE = 50;
const TYPING_SHOWN_MS = 5000;
const READ_DELAY_MS = 250; // gathers the messages seen while scrolling into one read mark
const NO_FEED_FALLBACK_MS = 3000; // load over REST anyway when the feed is slow to come up
const OLDER_RETRY_MS = 3000;
const NOTICE_MS = 6000;

class App {
  constructor(token) {
    this.client = new BridgeClient({ token });
    // The feed's handshake is the slowest step of a first visit: it starts before anything
    // else is built. Its frames arrive in later tasks, after start() has added the listeners.
    this.client.connect();
    this.me = { id: tokenSubject(token), name: null, role: null };
    this.chats = new ChatList();
    this.outbox = new Outbox();
    this.open = null; // {id, list, loadingOlder, loadError, olderFailedAt, rendered}
    this.chatsState = "loading"; // "loading" | "ready" | error text
    this.generation = 0; // bumps on every reload: older answers are dropped
    this.typing = new Map(); // chat id -> Map(user id -> {name, until})
    this.readSent = new Map(); // chat id -> the highest message id marked read
    this.readWanted = null;
    this.readTimer = null;
    this.refreshing = new Set();
    this.noticeTimer = null;

    this.chatListView = new ChatListView({ list: byId("chat-list"), empty: byId("chats-empty") });
    this.view = new MessageListView(
      { scroller: byId("scroller"), list: byId("message-list"), top: byId("top-status") },
      {
        onOlder: () => this.loadOlder(),
        onSeen: (id) => this.seen(id),
        onRetry: (item) => this.retry(item.client_id),
        onDiscard: (item) => this.discard(item.client_id),
        onEdit: (m) => this.composer.startEdit(m),
        onReply: (m) => this.composer.startReply(m),
        onDelete: (m) => this.deleteMessage(m),
        onReact: (m, emoji) => this.react(m, emoji),
        onRedraw: () => this.renderMessages(),
        renewFile: (file) => this.client.renewFileLink(file.id),
      },
    );
    this.composer = new Composer(
      {
        form: byId("composer"),
        input: byId("composer-input"),
        button: byId("composer-send"),
        banner: byId("composer-banner"),
        bannerText: byId("composer-banner-text"),
        bannerCancel: byId("composer-banner-cancel"),
        attach: byId("composer-attach"),
        fileInput: byId("composer-file"),
        fileList: byId("composer-files"),
        fileStatus: byId("composer-file-status"),
      },
      {
        onSend: (text, replyTo, files) => this.send(text, replyTo, files),
        upload: (file, options) => this.client.uploadFile(this.open.id, file, options),
        onSave: (message, text) => this.edit(message, text),
        onTyping: () => this.open && this.client.typing(this.open.id),
        lastOwnMessage: () => this.lastOwnMessage(),
      },
    );
  }

  start() {
    this.stopped = false;
    const c = this.client;
    c.on("state", (s) => this.renderConnection(s));
    c.on("ready", (frame) => this.onReady(frame));
    c.on("unauthorized", () => signedOut(t("tokenInvalid")));
    c.on("sent", ({ chatId, clientId, message }) => this.confirmSent(chatId, clientId, message));
    c.on("event", (event) => this.onEvent(event));
    c.on("typing", (frame) => this.onTyping(frame));
    this.fallback = setTimeout(() => {
      if (this.chatsState === "loading") this.reload();
    }, NO_FEED_FALLBACK_MS);

    addEventListener("hashchange", () => this.followFragment());
    addEventListener("online", () => c.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState !== "visible") return;
      c.reconnectNow();
      this.view.recheckSeen();
    });
    byId("conn-retry").addEventListener("click", () => c.reconnectNow());
    // Files dropped anywhere on an open chat one may write in are attached.
    const chatBody = byId("chat-body");
    chatBody.addEventListener("dragover", (event) => {
      if (byId("composer").hidden || !event.dataTransfer?.types.includes("Files")) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    chatBody.addEventListener("drop", (event) => {
      if (byId("composer").hidden || !event.dataTransfer?.files.length) return;
      event.preventDefault();
      this.composer.attachFiles([...event.dataTransfer.files]);
    });
    byId("chats-retry").addEventListener("click", () => this.reload());
    byId("sign-out").addEventListener("click", () => {
      c.disconnect();
      forgetToken();
      location.replace(location.pathname);
    });
    this.renderChats();
    this.followFragment({ load: false });
  }

  // --- loading ------------------------------------------------------------------------

  onReady(frame) {
    if (!performance.getEntriesByName("bridge:ready").length) performance.mark("bridge:ready");
    this.me = { ...frame.user };
    byId("me-name").textContent = `${frame.user.name} (${roleName(frame.user.role)})`;
    // A fresh connection, or history that no longer reaches back: what is on screen may
    // have missed events, so it is loaded again. A resumed one got them replayed.
    if (!frame.resumed) this.reload();
  }

  /** Signed out: nothing more is asked of the server. */
  stop() {
    this.stopped = true;
    this.generation += 1;
    clearTimeout(this.fallback);
    clearTimeout(this.readTimer);
    clearInterval(this.countdown);
    this.client.disconnect();
  }

  async reload() {
    clearTimeout(this.fallback);
    if (this.stopped) return;
    const generation = ++this.generation;
    this.chatsReady = this.loadChats(generation);
    this.followFragment({ reload: true }); // the open chat's messages load meanwhile
    await this.chatsReady;
  }

  async loadChats(generation) {
    try {
      const chats = await this.client.listChats();
      if (generation !== this.generation) return;
      this.chats.load(chats);
      this.chatsState = "ready";
    } catch (err) {
      if (generation !== this.generation) return;
      this.chatsState = t("loadFailed", { reason: reason(err) });
    }
    this.renderChats();
  }

  wantedChat() {
    const id = Number(fragment().get("chat"));
    return Number.isSafeInteger(id) && id > 0 ? id : null;
  }

  followFragment({ reload = false, load = true } = {}) {
    const id = this.wantedChat();
    if (id === null) this.closeChat();
    else if (load || this.open?.id !== id) this.openChat(id, { reload, load });
  }

  async openChat(id, { reload = false, load = true } = {}) {
    const switching = this.open?.id !== id;
    if (!switching && !reload && this.open.list.loaded) return;
    const o = { id, list: new MessageList(id), loadingOlder: false, loadError: null, olderFailedAt: 0 };
    // Reloading the chat on screen: what it shows stays until the fresh page is in.
    if (!switching && this.open.list.loaded) o.stale = this.open.list;
    const first = switching || !o.stale;
    this.open = o;
    if (switching) {
      this.view.reset();
      this.composer.clear();
    }
    document.body.classList.add("chat-open");
    show(byId("chat-placeholder"), false);
    show(byId("chat-body"), true);
    this.renderChats();
    this.renderChatFrame();
    this.renderMessages({ stickToBottom: true });
    if (!load) return; // the feed's "ready" loads it, so no event slips in between

    // The page is asked for at once, alongside the chat list.
    const pageLoad = this.client
      .listMessages(id, { limit: PAGE, beforeId: NEWEST })
      .then((page) => ({ page }), (error) => ({ error }));
    if (!this.chats.get(id) && this.chatsReady) await this.chatsReady;
    if (this.open !== o) return;
    if (!this.chats.get(id)) {
      try {
        this.chats.put(await this.client.getChat(id)); // not in the list (yet)
        if (this.open !== o) return;
        this.renderChats();
      } catch (err) {
        if (this.open !== o) return;
        o.loadError = t("loadFailed", { reason: reason(err) });
        o.list.loaded = true;
        o.list.hasOlder = false;
        this.renderMessages();
        return;
      }
    }
    this.renderChatFrame();
    const chat = this.chats.get(id);
    if (!this.readSent.has(id) && chat.unread_count === 0 && chat.last_message) {
      this.readSent.set(id, chat.last_message.id); // nothing to mark
    }
    const { page, error } = await pageLoad;
    if (this.open !== o) return;
    if (page) {
      o.list.addPage(page);
    } else {
      o.list.loaded = true;
      o.list.hasOlder = false;
      o.loadError = t("loadFailed", { reason: reason(error) });
    }
    o.stale = null;
    this.renderMessages({ stickToBottom: first });
    if (!o.rendered) {
      // When the first page of a chat reaches the screen (the frame that paints it): what
      // bench/web_render.py measures.
      o.rendered = true;
      requestAnimationFrame(() => performance.mark("bridge:chat-rendered"));
    }
    if (first) this.focusChat();
    this.loadOlderIfRoom();
  }

  closeChat() {
    this.open = null;
    document.body.classList.remove("chat-open");
    show(byId("chat-body"), false);
    show(byId("chat-placeholder"), true);
    this.view.reset();
    this.composer.clear();
    this.renderChats();
  }

  focusChat() {
    const chat = this.chats.get(this.open?.id);
    if (chat && this.canPost(chat)) byId("composer-input").focus();
    else byId("scroller").focus();
  }

  async loadOlder() {
    const o = this.open;
    if (!o || o.loadingOlder || !o.list.loaded || !o.list.hasOlder) return;
    if (Date.now() - o.olderFailedAt < OLDER_RETRY_MS) return;
    o.loadingOlder = true;
    this.renderMessages();
    try {
      const page = await this.client.listMessages(o.id, {
        limit: PAGE,
        beforeId: o.list.oldestId() ?? NEWEST,
      });
      if (this.open !== o) return;
      o.list.addPage(page, { older: true });
      o.loadError = null;
    } catch (err) {
      o.olderFailedAt = Date.now();
      o.loadError = t("loadFailed", { reason: reason(err) });
    } finally {
      o.loadingOlder = false;
    }
    if (this.open !== o) return;
    this.renderMessages();
    if (!o.loadError) this.loadOlderIfRoom();
  }

  /** Older messages while the box is not full yet (or the reader is still at the top). */
  loadOlderIfRoom() {
    if (this.open?.list.hasOlder && this.view.wantsOlder()) this.loadOlder();
  }

  refreshChat(chatId) {
    if (this.refreshing.has(chatId)) return;
    this.refreshing.add(chatId);
    this.client
      .getChat(chatId)
      .then(
        (chat) => this.chats.put(chat),
        (err) => {
          // Gone (deleted meanwhile, its 404 perhaps ahead of the chat.deleted event) or no
          // longer visible: off the list and the screen, like a chat.deleted.
          if (err.status === 403 || err.status === 404) this.chatGone(chatId);
        },
      )
      .finally(() => {
        this.refreshing.delete(chatId);
        this.renderChats();
        if (this.open?.id === chatId) this.renderChatFrame();
      });
  }

  chatGone(chatId) {
    this.chats.remove(chatId);
    if (this.open?.id === chatId) {
      history.replaceState(null, "", location.pathname);
      this.closeChat();
      this.notice(t("chatRemoved"));
    }
  }

  // --- sending, editing, deleting, read marks ------------------------------------------

  send(content, replyTo, files = []) {
    const chatId = this.open.id;
    const pending = {
      client_id: newClientId(),
      state: "sending",
      error: null,
      message: {
        id: null,
        client_id: null,
        chat_id: chatId,
        sender: { id: this.me.id, name: this.me.name ?? "", role: this.me.role ?? "" },
        content,
        created_at: new Date().toISOString(),
        edited_at: null,
        reply_to_id: replyTo?.id ?? null,
        read_by: [],
        files, // uploaded already: their links show at once
        reactions: [],
      },
    };
    pending.message.client_id = pending.client_id;
    this.outbox.add(chatId, pending);
    this.renderMessages({ stickToBottom: true });
    this.deliver(chatId, pending);
  }

  async deliver(chatId, pending) {
    pending.state = "sending";
    pending.error = null;
    this.renderMessages();
    try {
      const message = await this.client.sendMessage(chatId, pending.message.content, {
        clientId: pending.client_id,
        replyToId: pending.message.reply_to_id,
        fileIds: pending.message.files.map((f) => f.id),
      });
      this.confirmSent(chatId, pending.client_id, message);
    } catch (err) {
      if (this.outbox.get(chatId, pending.client_id) !== pending) return; // the feed confirmed it
      pending.state = "failed";
      pending.error = err.status === 0 ? t("failedOffline") : t("failed", { reason: err.message });
      this.renderMessages();
    }
  }

  retry(clientId) {
    const pending = this.outbox.get(this.open.id, clientId);
    if (pending) this.deliver(this.open.id, pending);
  }

  discard(clientId) {
    this.outbox.remove(this.open.id, clientId);
    this.client.discardSend(clientId);
    this.renderMessages();
    byId("composer-input").focus();
  }

  confirmSent(chatId, clientId, message) {
    this.outbox.remove(chatId, clientId);
    this.messageCreated(message);
  }

  async edit(message, content) {
    try {
      this.messageUpdated(await this.client.editMessage(message.id, content));
    } catch (err) {
      this.notice(t("actionFailed", { reason: reason(err) }));
    }
  }

  async deleteMessage(message) {
    try {
      await this.client.deleteMessage(message.id);
      this.messageDeleted(message.chat_id, message.id);
    } catch (err) {
      this.notice(t("actionFailed", { reason: reason(err) }));
    }
    // The composer, or for a reader (an administrator) the messages.
    if (byId("composer").hidden) byId("scroller").focus();
    else byId("composer-input").focus();
  }

  /** Add `emoji` to the message, or take it back when one holds it already. Shown once the
   * server agrees; the feed's event for it then changes nothing. */
  async react(message, emoji) {
    const current = (this.open?.id === message.chat_id && this.open.list.get(message.id)) || message;
    const add = !holdsReaction(current, emoji, this.me.id);
    try {
      if (add) await this.client.addReaction(message.id, emoji);
      else await this.client.removeReaction(message.id, emoji);
    } catch (err) {
      this.notice(t("actionFailed", { reason: reason(err) }));
      return;
    }
    const event = { message_id: message.id, user_id: this.me.id, emoji };
    if (this.open?.id === message.chat_id && this.open.list.reaction(event, add)) this.renderMessages();
  }

  lastOwnMessage() {
    const mine = this.open?.list.sorted().filter((m) => m.sender.id === this.me.id) ?? [];
    return mine.at(-1) ?? null;
  }

  /** A message from someone else is on screen: mark the chat read up to it, soon. */
  seen(id) {
    const o = this.open;
    const chat = o && this.chats.get(o.id);
    if (!chat || !this.isParticipant(chat)) return; // an administrator keeps no read marks
    if (id <= (this.readSent.get(o.id) ?? 0)) return;
    const wanted = this.readWanted?.chatId === o.id ? this.readWanted.id : 0;
    this.readWanted = { chatId: o.id, id: Math.max(id, wanted) };
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(() => this.flushRead(), READ_DELAY_MS);
  }

  async flushRead() {
    const wanted = this.readWanted;
    this.readWanted = null;
    if (!wanted) return;
    const before = this.readSent.get(wanted.chatId) ?? 0;
    if (wanted.id <= before) return;
    this.readSent.set(wanted.chatId, wanted.id);
    try {
      await this.client.markRead(wanted.chatId, wanted.id);
      this.readByMe(wanted.chatId, wanted.id);
    } catch {
      // Seen again later, it is tried again.
      if (this.readSent.get(wanted.chatId) === wanted.id) this.readSent.set(wanted.chatId, before);
    }
  }

  readByMe(chatId, messageId) {
    if (messageId > (this.readSent.get(chatId) ?? 0)) this.readSent.set(chatId, messageId);
    if (!this.chats.readUpTo(chatId, messageId)) this.refreshChat(chatId);
    this.renderChats();
  }

  // --- the feed -----------------------------------------------------------------------

  onEvent(event) {
    switch (event.type) {
      case "message.created":
        this.messageCreated(event.message);
        break;
      case "message.updated":
        this.messageUpdated(event.message);
        break;
      case "message.deleted":
        this.messageDeleted(event.chat_id, event.message_id);
        break;
      case "chat.created":
      case "chat.updated":
        this.chatChanged(event.chat);
        break;
      case "chat.deleted":
        this.chatGone(event.chat_id);
        break;
      case "read":
        if (event.user_id === this.me.id) this.readByMe(event.chat_id, event.message_id);
        else if (this.open?.id === event.chat_id && this.open.list.read(event.user_id, event.message_id)) {
          this.renderMessages();
        }
        break;
      case "reaction.added":
      case "reaction.removed":
        if (this.open?.id === event.chat_id && this.open.list.reaction(event, event.type === "reaction.added")) {
          this.renderMessages();
        }
        break;
      default:
        break;
    }
  }

  messageCreated(message) {
    const chatId = message.chat_id;
    const open = this.open?.id === chatId ? this.open : null;
    if (open) open.list.put(message);
    this.stoppedTyping(chatId, message.sender.id);
    if (!this.chats.get(chatId)) {
      this.refreshChat(chatId); // a chat this page has not heard of yet
    } else {
      // On screen now (the reader is at the bottom of this chat): not unread; the read mark
      // follows as it is seen.
      const seen = open !== null && document.visibilityState === "visible" && this.view.nearBottom();
      if (this.chats.messageCreated(message, this.me.id, { seen })) this.renderChats();
    }
    if (open) this.renderMessages();
  }

  messageUpdated(message) {
    this.chats.messageUpdated(message);
    if (this.open?.id === message.chat_id && this.open.list.update(message)) this.renderMessages();
    this.renderChats();
  }

  messageDeleted(chatId, messageId) {
    this.composer.forget(messageId);
    const wanted = this.readWanted;
    if (wanted?.chatId === chatId && wanted.id === messageId) {
      // The read mark about to go names a message that is gone (the server would refuse
      // it): the newest other one seen below it is marked instead, if any.
      const below = this.open?.id === chatId
        ? this.open.list.sorted().filter((m) => m.id < messageId && m.sender.id !== this.me.id).at(-1)
        : null;
      this.readWanted = below && below.id > (this.readSent.get(chatId) ?? 0) ? { chatId, id: below.id } : null;
    }
    if (this.open?.id === chatId && this.open.list.remove(messageId)) this.renderMessages();
    const chat = this.chats.get(chatId);
    if (chat?.last_message?.id === messageId) this.refreshChat(chatId); // the new last one
  }

  chatChanged(chat) {
    const participant = chat.participants.some((p) => p.id === this.me.id);
    if (!participant && this.me.role !== "admin") {
      this.chatGone(chat.id); // taken off this chat (a new tutor, say)
      return;
    }
    const known = this.chats.get(chat.id) !== null;
    this.chats.put(chat);
    // The event carries no unread count (it is per reader): a chat already listed keeps its
    // own, since closing a chat or changing its people reads nothing; only a chat new to this
    // page (a teacher just given it, say) asks for its count. Fewer asks also means fewer
    // that can race the chat's deletion.
    if (!known) this.refreshChat(chat.id);
    this.renderChats();
    if (this.open?.id === chat.id) {
      this.renderChatFrame();
      this.renderMessages();
    }
  }

  onTyping(frame) {
    if (frame.user.id === this.me.id) return;
    if (!this.typing.has(frame.chat_id)) this.typing.set(frame.chat_id, new Map());
    this.typing.get(frame.chat_id).set(frame.user.id, {
      name: frame.user.name,
      until: Date.now() + TYPING_SHOWN_MS,
    });
    this.renderTyping();
    setTimeout(() => this.renderTyping(), TYPING_SHOWN_MS + 50);
  }

  stoppedTyping(chatId, userId) {
    if (this.typing.get(chatId)?.delete(userId)) this.renderTyping();
  }

  // --- drawing ------------------------------------------------------------------------

  isParticipant(chat) {
    return chat.participants.some((p) => p.id === this.me.id);
  }

  canPost(chat) {
    return chat.is_active && this.isParticipant(chat) && this.me.role !== "admin";
  }

  renderChats() {
    let empty = t("loading");
    if (this.chatsState === "ready") empty = this.me.role === "parent" ? t("parentNoChats") : t("noChats");
    else if (this.chatsState !== "loading") empty = this.chatsState;
    this.chatListView.render(this.chats.list(), {
      openId: this.open?.id ?? null,
      meId: this.me.id,
      emptyText: empty,
    });
    show(byId("chats-retry"), this.chatsState !== "loading" && this.chatsState !== "ready");
  }

  renderChatFrame() {
    const chat = this.open && this.chats.get(this.open.id);
    byId("chat-title").textContent = chat ? chat.title : "";
    const others = (chat?.participants ?? []).filter((p) => p.id !== this.me.id);
    byId("chat-sub").textContent = others.length
      ? t("participants", { names: joinNames(others.map((p) => `${p.name} (${roleName(p.role)})`)) })
      : "";
    const canPost = chat ? this.canPost(chat) : false;
    const tag = byId("chat-tag");
    tag.textContent = t("readOnly");
    show(tag, Boolean(chat) && !canPost);
    const notice = byId("chat-notice");
    let text = "";
    if (chat && !canPost) {
      if (!chat.is_active) text = t("chatClosed");
      else if (this.me.role === "admin") text = t("viewerReadOnly");
      else text = t("notParticipantReadOnly");
    }
    notice.textContent = text;
    show(notice, text !== "");
    const composer = byId("composer");
    if (!canPost && !composer.hidden) this.composer.clear();
    show(composer, canPost);
    this.renderTyping();
  }

  renderMessages({ stickToBottom = false } = {}) {
    const o = this.open;
    if (!o) return;
    const chat = this.chats.get(o.id);
    const list = o.stale ?? o.list;
    const pending = this.outbox
      .forChat(o.id)
      .map((p) => ({ ...p.message, pending: { state: p.state, error: p.error } }));
    this.view.render([...list.sorted(), ...pending], {
      me: this.me.id,
      chat,
      canPost: chat ? this.canPost(chat) : false,
      canDeleteAny: this.me.role === "admin",
      loaded: list.loaded,
      hasOlder: list.hasOlder,
      loadingOlder: o.loadingOlder,
      loadError: o.loadError,
      stickToBottom,
    });
  }

  renderTyping() {
    const el = byId("typing");
    const now = Date.now();
    const who = [...(this.typing.get(this.open?.id)?.values() ?? [])]
      .filter((x) => x.until > now)
      .map((x) => x.name);
    el.textContent = !who.length
      ? ""
      : who.length === 1
        ? t("typingOne", { name: who[0] })
        : t("typingMany", { names: joinNames(who) });
  }

  renderConnection({ state, retryAt }) {
    const bar = byId("conn");
    const button = byId("conn-retry");
    clearInterval(this.countdown);
    if (state === "waiting") {
      const draw = () => {
        const s = Math.max(1, Math.ceil((retryAt - Date.now()) / 1000));
        byId("conn-text").textContent = t("reconnecting", { s });
      };
      draw();
      this.countdown = setInterval(draw, 1000);
      button.textContent = t("reconnectNow");
      show(button, true);
      show(bar, true);
    } else if (state === "connecting" && this.client.attempt > 0) {
      byId("conn-text").textContent = t("connecting");
      show(button, false);
      show(bar, true);
    } else {
      show(bar, false);
    }
  }

  notice(text) {
    const el = byId("notice");
    el.textContent = text;
    show(el, true);
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => show(el, false), NOTICE_MS);
  }
}

function reason(err) {
  return err?.status === 0 ? t("noConnection") : (err?.message ?? String(err));
}

function translatePage() {
  document.documentElement.lang = lang;
  document.title = t("appTitle");
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
  }
  for (const el of document.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
  for (const el of document.querySelectorAll("[data-i18n-label]")) {
    el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }
}

function signedOut(message) {
  app?.stop();
  forgetToken();
  showSignIn(message);
}

function showSignIn(message = "") {
  show(byId("app"), false);
  show(byId("signin"), true);
  const error = byId("signin-error");
  error.textContent = message;
  show(error, Boolean(message));
  byId("signin-token").focus();
}

let app = null;

function main() {
  performance.mark("bridge:start"); // the modules are loaded and run
  const token = takeToken();
  if (token) app = new App(token);
  translatePage();
  byId("signin").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = byId("signin-token").value.trim();
    if (!token) return;
    saveToken(token);
    location.reload();
  });
  if (!app) {
    showSignIn();
    return;
  }
  show(byId("app"), true);
  app.start();
}

main();
