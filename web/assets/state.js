// What the page knows, without any DOM: the chat list and the open chat's messages, and how
// REST answers and feed events change them. Every change is idempotent, so an event that
// arrives twice, or one already reflected in a REST answer, changes nothing.

export class ChatList {
  constructor() {
    this.chats = new Map(); // id -> chat object
    this.order = []; // ids, newest activity first
  }

  load(chats) {
    this.chats = new Map(chats.map((c) => [c.id, c]));
    this.order = chats.map((c) => c.id);
  }

  get(id) {
    return this.chats.get(id) ?? null;
  }

  list() {
    return this.order.map((id) => this.chats.get(id));
  }

  /** A chat from REST (with unread_count) or from the feed (without it: keep ours). */
  put(chat) {
    const known = this.chats.get(chat.id);
    const merged = { ...chat };
    if (merged.unread_count === undefined) merged.unread_count = known?.unread_count ?? 0;
    this.chats.set(chat.id, merged);
    if (!known) this.order.unshift(chat.id); // a new chat: the newest activity
    return merged;
  }

  remove(id) {
    this.chats.delete(id);
    this.order = this.order.filter((x) => x !== id);
  }

  /** A new message: the chat moves to the top; another user's unseen message counts as
   * unread. Returns false for a message the chat already knew of. */
  messageCreated(message, meId, { seen = false } = {}) {
    const chat = this.chats.get(message.chat_id);
    if (!chat) return false;
    const last = chat.last_message;
    if (last && last.id >= message.id) return false;
    chat.last_message = message;
    if (message.sender.id !== meId && !seen) chat.unread_count = (chat.unread_count ?? 0) + 1;
    this.order = [chat.id, ...this.order.filter((x) => x !== chat.id)];
    return true;
  }

  messageUpdated(message) {
    const chat = this.chats.get(message.chat_id);
    if (chat?.last_message?.id === message.id) chat.last_message = message;
  }

  /** My own read mark reached `messageId`: nothing after it is unread if it is the last. */
  readUpTo(chatId, messageId) {
    const chat = this.chats.get(chatId);
    if (!chat) return true;
    if (!chat.last_message || messageId >= chat.last_message.id) {
      chat.unread_count = 0;
      return true;
    }
    return false; // the count needs the server
  }
}

/** One chat's loaded messages (a window of the newest ones, growing upwards) and the
 * optimistic copies of messages being sent. */
export class MessageList {
  constructor(chatId) {
    this.chatId = chatId;
    this.byId = new Map();
    this.deleted = new Set(); // so a late page cannot bring one back
    this.hasOlder = true;
    this.loaded = false;
  }

  /** Messages from a REST page. `older`: a page before what is loaded. */
  addPage(page, { older = false } = {}) {
    for (const m of page.messages) this.put(m);
    if (older || !this.loaded) {
      // Fewer than asked for: nothing older is left.
      this.hasOlder = page.messages.length >= page.limit && this.byId.size < page.total;
    }
    this.loaded = true;
  }

  put(message) {
    if (message.chat_id !== this.chatId || this.deleted.has(message.id)) return false;
    const known = this.byId.get(message.id);
    // Keep the newest version: an edit is newer than what a slower page reply carried.
    if (known && known.edited_at && (!message.edited_at || message.edited_at < known.edited_at)) {
      return false;
    }
    this.byId.set(message.id, { ...message, reactions: message.reactions ?? known?.reactions ?? [] });
    return true;
  }

  /** An edit from the feed: only for a message in the loaded window (or just posted). */
  update(message) {
    if (!this.byId.has(message.id)) return false;
    return this.put(message);
  }

  remove(id) {
    this.deleted.add(id);
    return this.byId.delete(id);
  }

  get(id) {
    return this.byId.get(id) ?? null;
  }

  oldestId() {
    let oldest = null;
    for (const id of this.byId.keys()) if (oldest === null || id < oldest) oldest = id;
    return oldest;
  }

  newestId() {
    let newest = null;
    for (const id of this.byId.keys()) if (newest === null || id > newest) newest = id;
    return newest;
  }

  sorted() {
    return [...this.byId.values()].sort((a, b) => a.id - b.id);
  }

  /** `userId` read up to `messageId`: it joins read_by of the others' messages up to there. */
  read(userId, messageId) {
    let changed = false;
    for (const m of this.byId.values()) {
      if (m.id <= messageId && m.sender.id !== userId && !m.read_by.includes(userId)) {
        m.read_by = [...m.read_by, userId];
        changed = true;
      }
    }
    return changed;
  }

  reaction(event, added) {
    const m = this.byId.get(event.message_id);
    if (!m) return false;
    const reactions = (m.reactions ?? []).map((r) => ({ ...r, user_ids: [...r.user_ids] }));
    let entry = reactions.find((r) => r.emoji === event.emoji);
    if (added) {
      if (!entry) reactions.push((entry = { emoji: event.emoji, user_ids: [] }));
      if (!entry.user_ids.includes(event.user_id)) entry.user_ids.push(event.user_id);
    } else if (entry) {
      entry.user_ids = entry.user_ids.filter((u) => u !== event.user_id);
    }
    m.reactions = reactions.filter((r) => r.user_ids.length);
    return true;
  }
}

/** Messages being sent, per chat, kept across chat switches until confirmed or discarded. */
export class Outbox {
  constructor() {
    this.byChat = new Map(); // chat id -> Map(client_id -> pending)
  }

  add(chatId, pending) {
    if (!this.byChat.has(chatId)) this.byChat.set(chatId, new Map());
    this.byChat.get(chatId).set(pending.client_id, pending);
  }

  get(chatId, clientId) {
    return this.byChat.get(chatId)?.get(clientId) ?? null;
  }

  forChat(chatId) {
    return [...(this.byChat.get(chatId)?.values() ?? [])];
  }

  remove(chatId, clientId) {
    return this.byChat.get(chatId)?.delete(clientId) ?? false;
  }
}
