// Unit tests of web/assets/state.js: how REST answers and feed events change what the page
// shows. Every change must be idempotent (an event seen twice, or one a REST answer already
// reflects, changes nothing).

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Attachments,
  COMMON_EMOJI,
  ChatList,
  MAX_FILES,
  MessageList,
  Outbox,
  holdsReaction,
  reactionSummary,
} from "../../web/assets/state.js";

const SAM = { id: "s1", name: "Sam", role: "student" };
const TESS = { id: "t1", name: "Tess", role: "teacher" };

const msg = (id, sender = TESS, extra = {}) => ({
  id,
  chat_id: 7,
  sender,
  content: `m${id}`,
  created_at: "2026-01-01T10:00:00+00:00",
  edited_at: null,
  reply_to_id: null,
  read_by: [],
  client_id: null,
  ...extra,
});

const chat = (id, lastId = null, unread = 0) => ({
  id,
  title: `chat ${id}`,
  is_active: true,
  participants: [SAM, TESS],
  last_message: lastId ? { ...msg(lastId), chat_id: id } : null,
  unread_count: unread,
});

test("a new message from someone else moves its chat up and counts once", () => {
  const chats = new ChatList();
  chats.load([chat(1, 10), chat(7, 5)]);
  const m = msg(11);
  assert.equal(chats.messageCreated(m, SAM.id), true);
  assert.equal(chats.messageCreated(m, SAM.id), false); // the same event again
  assert.deepEqual(chats.order, [7, 1]);
  assert.equal(chats.get(7).unread_count, 1);
  chats.messageCreated(msg(12, SAM), SAM.id); // one's own message is not unread
  chats.messageCreated(msg(13), SAM.id, { seen: true }); // seen on screen
  assert.equal(chats.get(7).unread_count, 1);
  assert.equal(chats.get(7).last_message.id, 13);
});

test("a message a REST answer already counted is not counted again", () => {
  const chats = new ChatList();
  chats.load([chat(7, 20, 3)]);
  chats.messageCreated(msg(19), SAM.id);
  chats.messageCreated(msg(20), SAM.id);
  assert.equal(chats.get(7).unread_count, 3);
});

test("chats from the feed keep the reader's unread count; new ones go to the top", () => {
  const chats = new ChatList();
  chats.load([chat(1, null, 2), chat(7, null, 4)]);
  const { unread_count: _omitted, ...fromFeed } = chat(7);
  chats.put({ ...fromFeed, is_active: false });
  assert.equal(chats.get(7).unread_count, 4);
  assert.equal(chats.get(7).is_active, false);
  chats.put({ ...chat(9) });
  assert.deepEqual(chats.order, [9, 1, 7]);
  chats.remove(1);
  assert.deepEqual(chats.order, [9, 7]);
});

test("one's own read mark at the last message clears the count; earlier needs the server", () => {
  const chats = new ChatList();
  chats.load([chat(7, 20, 3)]);
  assert.equal(chats.readUpTo(7, 18), false);
  assert.equal(chats.get(7).unread_count, 3);
  assert.equal(chats.readUpTo(7, 20), true);
  assert.equal(chats.get(7).unread_count, 0);
});

test("pages fill the list oldest first and say whether older ones remain", () => {
  const list = new MessageList(7);
  list.addPage({ messages: [msg(3), msg(4)], total: 4, limit: 2 });
  assert.equal(list.hasOlder, true);
  assert.equal(list.oldestId(), 3);
  list.addPage({ messages: [msg(1), msg(2)], total: 4, limit: 2 }, { older: true });
  assert.equal(list.hasOlder, false);
  assert.deepEqual(list.sorted().map((m) => m.id), [1, 2, 3, 4]);
  const short = new MessageList(7);
  short.addPage({ messages: [msg(1)], total: 1, limit: 50 });
  assert.equal(short.hasOlder, false);
});

test("a deleted message stays deleted when a slower page still carries it", () => {
  const list = new MessageList(7);
  list.put(msg(5));
  assert.equal(list.remove(5), true);
  list.addPage({ messages: [msg(5), msg(6)], total: 2, limit: 50 });
  assert.deepEqual(list.sorted().map((m) => m.id), [6]);
});

test("an edit is not undone by an older copy; edits outside the window are ignored", () => {
  const list = new MessageList(7);
  list.put(msg(5));
  list.update(msg(5, TESS, { content: "new", edited_at: "2026-01-01T10:05:00+00:00" }));
  list.put(msg(5)); // a page that was read before the edit
  assert.equal(list.get(5).content, "new");
  assert.equal(list.update(msg(99, TESS, { edited_at: "2026-01-01T10:06:00+00:00" })), false);
  assert.equal(list.get(99), null);
  assert.equal(list.put({ ...msg(100), chat_id: 8 }), false); // another chat's message
});

test("read marks of others fill read_by of the messages up to the mark", () => {
  const list = new MessageList(7);
  for (const id of [1, 2, 3]) list.put(msg(id, SAM));
  list.put(msg(4, TESS));
  assert.equal(list.read(TESS.id, 3), true);
  assert.equal(list.read(TESS.id, 3), false);
  assert.deepEqual(list.sorted().map((m) => m.read_by), [["t1"], ["t1"], ["t1"], []]);
});

test("reactions are added and removed per user; an emoji nobody holds disappears", () => {
  const list = new MessageList(7);
  list.put(msg(1));
  const event = (user_id, emoji) => ({ message_id: 1, user_id, emoji });
  list.reaction(event("s1", "👍"), true);
  list.reaction(event("t1", "👍"), true);
  list.reaction(event("t1", "👍"), true);
  list.reaction(event("s1", "🎉"), true);
  assert.deepEqual(list.get(1).reactions, [
    { emoji: "👍", user_ids: ["s1", "t1"] },
    { emoji: "🎉", user_ids: ["s1"] },
  ]);
  list.reaction(event("s1", "🎉"), false);
  assert.deepEqual(list.get(1).reactions, [{ emoji: "👍", user_ids: ["s1", "t1"] }]);
});

test("a reaction event already shown (one's own PUT, then its echo) changes nothing", () => {
  const list = new MessageList(7);
  list.put(msg(1, TESS, { reactions: [{ emoji: "👍", user_ids: ["t1"] }] }));
  const before = list.get(1).reactions;
  assert.equal(list.reaction({ message_id: 1, user_id: "s1", emoji: "👍" }, true), true);
  assert.equal(list.reaction({ message_id: 1, user_id: "s1", emoji: "👍" }, true), false);
  assert.equal(list.reaction({ message_id: 1, user_id: "s1", emoji: "🎉" }, false), false);
  assert.equal(list.reaction({ message_id: 9, user_id: "s1", emoji: "👍" }, true), false);
  // A new array each change (so the view's signature sees it); the old one is untouched.
  assert.deepEqual(before, [{ emoji: "👍", user_ids: ["t1"] }]);
  assert.deepEqual(list.get(1).reactions, [{ emoji: "👍", user_ids: ["t1", "s1"] }]);
  // Taking one's own back leaves the others'; the last one out removes the emoji.
  list.reaction({ message_id: 1, user_id: "s1", emoji: "👍" }, false);
  list.reaction({ message_id: 1, user_id: "t1", emoji: "👍" }, false);
  assert.deepEqual(list.get(1).reactions, []);
});

test("a message from a page keeps the reactions it carries; the order first used is kept", () => {
  const list = new MessageList(7);
  list.put(msg(1, TESS, { reactions: [{ emoji: "🎉", user_ids: ["t1"] }, { emoji: "👍", user_ids: ["s1"] }] }));
  list.reaction({ message_id: 1, user_id: "s1", emoji: "🎉" }, true);
  assert.deepEqual(list.get(1).reactions.map((r) => r.emoji), ["🎉", "👍"]);
});

test("reactions as drawn: counts and one's own marked; taking back what one holds", () => {
  const reactions = [
    { emoji: "👍", user_ids: ["t1", "s1"] },
    { emoji: "👨‍👩‍👧", user_ids: ["t1"] },
  ];
  assert.deepEqual(reactionSummary(reactions, "s1"), [
    { emoji: "👍", count: 2, mine: true, userIds: ["t1", "s1"] },
    { emoji: "👨‍👩‍👧", count: 1, mine: false, userIds: ["t1"] },
  ]);
  assert.deepEqual(reactionSummary(undefined, "s1"), []);
  assert.equal(holdsReaction({ reactions }, "👍", "s1"), true);
  assert.equal(holdsReaction({ reactions }, "👨‍👩‍👧", "s1"), false);
  assert.equal(holdsReaction({ reactions: [] }, "👍", "s1"), false);
  // The picker offers a few distinct single emoji.
  assert.ok(COMMON_EMOJI.length >= 5 && COMMON_EMOJI.length <= 10);
  assert.equal(new Set(COMMON_EMOJI).size, COMMON_EMOJI.length);
});

test("attachments upload one by one and the message may go once all are uploaded", () => {
  const files = new Attachments();
  const { added, refused } = files.add([
    { name: "a.png", size: 10 },
    { name: "b.pdf", size: 20 },
  ]);
  assert.equal(refused, 0);
  assert.deepEqual(added.map((i) => [i.name, i.state]), [["a.png", "uploading"], ["b.pdf", "uploading"]]);
  assert.equal(files.ready(), false);
  assert.equal(files.progress(added[1].key, 0.5), true);
  files.progress(added[1].key, 0.25);
  assert.equal(files.get(added[1].key).progress, 0.5, "progress never goes back");
  // The second finishes first; the order of file_ids stays the order attached.
  files.uploaded(added[1].key, { id: "fb" });
  files.uploaded(added[0].key, { id: "fa" });
  assert.equal(files.ready(), true);
  assert.deepEqual(files.files().map((f) => f.id), ["fa", "fb"]);
});

test("a failed upload holds the message back until retried or removed", () => {
  const files = new Attachments();
  const [a, b] = files.add([{ name: "a", size: 1 }, { name: "b", size: 1 }]).added;
  files.uploaded(a.key, { id: "fa" });
  files.failed(b.key, "too large");
  assert.equal(files.ready(), false);
  assert.equal(files.get(b.key).error, "too large");
  assert.equal(files.retrying(a.key), null, "only a failed one is retried");
  assert.equal(files.retrying(b.key).state, "uploading");
  assert.equal(files.ready(), false);
  assert.equal(files.remove(b.key), true);
  assert.equal(files.ready(), true);
  // An upload that ends after its file was removed changes nothing.
  assert.equal(files.uploaded(b.key, { id: "fb" }), false);
  assert.deepEqual(files.files().map((f) => f.id), ["fa"]);
});

test("at most MAX_FILES files are attached to one message", () => {
  const files = new Attachments();
  const many = Array.from({ length: MAX_FILES + 2 }, (_, n) => ({ name: `f${n}`, size: n }));
  const { added, refused } = files.add(many);
  assert.equal(MAX_FILES, 10);
  assert.equal(added.length, MAX_FILES);
  assert.equal(refused, 2);
  assert.equal(files.add([{ name: "more", size: 1 }]).refused, 1);
  files.clear();
  assert.equal(files.size, 0);
});

test("the outbox keeps sends per chat until removed", () => {
  const outbox = new Outbox();
  outbox.add(7, { client_id: "a" });
  outbox.add(7, { client_id: "b" });
  outbox.add(8, { client_id: "c" });
  assert.deepEqual(outbox.forChat(7).map((p) => p.client_id), ["a", "b"]);
  assert.equal(outbox.remove(7, "a"), true);
  assert.equal(outbox.remove(7, "a"), false);
  assert.equal(outbox.get(8, "c").client_id, "c");
  assert.deepEqual(outbox.forChat(9), []);
});
