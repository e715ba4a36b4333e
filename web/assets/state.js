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

  /** A reaction.added / reaction.removed event (or one's own PUT / DELETE that succeeded):
   * `{message_id, user_id, emoji}`. Entries keep the order in which each emoji was first
   * used; one nobody holds any longer disappears. Returns whether anything changed. */
  reaction(event, added) {
    const m = this.byId.get(event.message_id);
    if (!m) return false;
    const reactions = m.reactions ?? [];
    const entry = reactions.find((r) => r.emoji === event.emoji);
    const holds = Boolean(entry?.user_ids.includes(event.user_id));
    if (added === holds) return false; // already so: an echo of what is shown
    if (added) {
      m.reactions = entry
        ? reactions.map((r) => (r === entry ? { ...r, user_ids: [...r.user_ids, event.user_id] } : r))
        : [...reactions, { emoji: event.emoji, user_ids: [event.user_id] }];
    } else {
      m.reactions = reactions
        .map((r) => (r === entry ? { ...r, user_ids: r.user_ids.filter((u) => u !== event.user_id) } : r))
        .filter((r) => r.user_ids.length);
    }
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

// --- reactions --------------------------------------------------------------------------

/** What the reaction picker offers (any single emoji is allowed; these are the usual ones). */
export const COMMON_EMOJI = ["👍", "❤️", "😂", "😮", "😢", "🙏", "🎉", "✅"];

/** A message's reactions as drawn: `[{emoji, count, mine, userIds}]`, in the order first used. */
export function reactionSummary(reactions, me) {
  return (reactions ?? [])
    .filter((r) => r.user_ids.length)
    .map((r) => ({ emoji: r.emoji, count: r.user_ids.length, mine: r.user_ids.includes(me), userIds: r.user_ids }));
}

/** Whether `me` holds `emoji` on the message: choosing it again takes it back. */
export function holdsReaction(message, emoji, me) {
  return Boolean(message.reactions?.some((r) => r.emoji === emoji && r.user_ids.includes(me)));
}

// --- files attached to the message being written ----------------------------------------

/** At most this many files in one message (section 10). */
export const MAX_FILES = 10;

/** The files attached in the composer: each is uploaded at once (so sending is quick) and
 * sent by its id. Items: `{key, name, size, state: "uploading"|"done"|"failed", progress,
 * file, error, source}`; `source` is the File, kept to try a failed upload again. */
export class Attachments {
  constructor() {
    this.items = [];
    this.nextKey = 1;
  }

  /** Attach `files` (File-likes: name, size); returns `{added, refused}`: those over
   * MAX_FILES are refused. */
  add(files) {
    const added = [];
    let refused = 0;
    for (const source of files) {
      if (this.items.length >= MAX_FILES) {
        refused += 1;
        continue;
      }
      const item = {
        key: this.nextKey++,
        name: source.name ?? "file",
        size: source.size ?? 0,
        state: "uploading",
        progress: 0,
        file: null,
        error: null,
        source,
      };
      this.items.push(item);
      added.push(item);
    }
    return { added, refused };
  }

  get(key) {
    return this.items.find((i) => i.key === key) ?? null;
  }

  progress(key, fraction) {
    const item = this.get(key);
    if (!item || item.state !== "uploading") return false;
    item.progress = Math.max(item.progress, Math.min(1, fraction));
    return true;
  }

  uploaded(key, file) {
    const item = this.get(key);
    if (!item) return false; // removed while it was uploading
    Object.assign(item, { state: "done", progress: 1, file, error: null });
    return true;
  }

  failed(key, error) {
    const item = this.get(key);
    if (!item) return false;
    Object.assign(item, { state: "failed", error });
    return true;
  }

  retrying(key) {
    const item = this.get(key);
    if (!item || item.state !== "failed") return null;
    Object.assign(item, { state: "uploading", progress: 0, error: null });
    return item;
  }

  remove(key) {
    const before = this.items.length;
    this.items = this.items.filter((i) => i.key !== key);
    return this.items.length !== before;
  }

  clear() {
    this.items = [];
  }

  get size() {
    return this.items.length;
  }

  /** Every attached file is uploaded: the message may go. */
  ready() {
    return this.items.every((i) => i.state === "done");
  }

  /** The uploaded files, in the order attached: their ids become the message's file_ids. */
  files() {
    return this.items.filter((i) => i.state === "done").map((i) => i.file);
  }
}
