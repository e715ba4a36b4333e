"""The kinds of outbox job, and carrying out one against Pachca (docs/pachca.md).

The forum services queue jobs by kind (the constants below) in their own transactions; the
worker (bridge/pachca/worker.py) runs them here. Each kind reads the current state of what it
reports (a message's text at delivery time, the chat's teacher now), so a job that waited
still sends the truth. The outcome is a `Done` - with, for kinds that learn a Pachca id, the
write that records it, run by the worker in the same transaction that marks the job done - or
an exception: `Postpone` (cannot run yet, not a failure), `Retry` (failed, try again later),
`Permanent` (will never succeed) or any `PachcaError` (the worker classifies it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from bot.client import PachcaClient, PachcaError
from bot.mentions import neutralise
from bot.models import MessageFileFields
from bridge import policy
from bridge.feed.events import FeedEvent
from bridge.forum import waiting
from bridge.forum.files import is_inline
from bridge.pachca.pacing import Pacer, WaitTooLong
from bridge.runtime import Runtime, utcnow
from store import files as file_store
from store import outbox as outbox_store
from store import pachca_links as links
from store import reactions as reaction_store
from store import waiting as waiting_store
from store.blobs import BlobMissing
from store.tx import Tx

log = structlog.get_logger("bridge.outbox")

# The kinds of job, and their payloads.
OPEN_THREAD = "open_thread"  # {"chat_id"}: root message in the channel, thread, members
ADD_MEMBER = "add_member"  # {"chat_id", "user_id"}: add a teacher/tutor to the thread's chat
POST_MESSAGE = "post_message"  # {"message_id"}: post a web message into the thread
EDIT_MESSAGE = "edit_message"  # {"message_id"}: follow an edit
DELETE_MESSAGE = "delete_message"  # {"message_id"}: follow a deletion
SEND_TEXT = "send_text"  # {"entity_type", "entity_id", "content"}: a bot answer
# Threads follow the policy. With "thread_chat_id" / "thread_id" the payload names the thread
# of a deleted chat: such jobs hang off no chat row (chat_id NULL), in the chat's lane.
REMOVE_MEMBER = "remove_member"  # {"chat_id", "pachca_user_id"}: out of the thread's chat
POST_NOTE = "post_note"  # {"chat_id", "note"}: the bot's note in the thread (NOTES)
# {"message_id"}: the bot's reactions on the Pachca copy follow the emoji web users hold.
SYNC_REACTIONS = "sync_reactions"
# {"pachca_message_id", and "create": {...} for a message not stored yet}: copy a Pachca
# message's files into the forum (bridge/pachca/file_copies.py).
COPY_FILES = "copy_files"

# {"chat_id", "since"}: the bot reminds the teacher or tutor of a chat waiting since then
# (bridge/ops/reminders.py), unless it has been answered meanwhile.
REMIND = "remind"

# A thread is a chat in Pachca; this is the web app's address of a chat (the form of the
# `url` Pachca gives its messages: https://app.pachca.com/chats/<chat id>?message=<id>).
THREAD_LINK = "https://app.pachca.com/chats/{thread_chat_id}"

# The bot's notes in a thread when its forum chat changes state.
NOTES = {
    "closed": "This forum chat is closed: replies here are no longer delivered to the student.",
    "reopened": "This forum chat is open again: replies here reach the student.",
    "deleted": "This forum chat was deleted: replies here are no longer delivered to anyone.",
}

T = TypeVar("T")
# Runs in the transaction that marks the job done; the feed events it returns are published
# after the commit.
Finish = Callable[[Tx], Awaitable[Sequence[FeedEvent] | None]]

DISPLAY_NAME_MAX = 255  # Pachca's limit on display_name
# Pachca answers these for a message that is already gone (the spec's `message_deleted`).
GONE_CODES = frozenset({"not_found", "message_deleted"})


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    chat_id: int | None
    kind: str
    payload: dict[str, Any]
    attempts: int  # including the run in progress


@dataclass(frozen=True, slots=True)
class Done:
    finish: Finish | None = None  # runs in the transaction that marks the job done
    skipped: str | None = None  # why there was nothing to send, when there was not


class Postpone(Exception):
    """The job cannot run yet (no channel configured, its thread not open, a rate-limit slot
    too far away). It waits without using up an attempt."""

    def __init__(self, reason: str, *, delay: float | None = None, log_once: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.delay = delay  # None: the worker's default wait
        self.log_once = log_once


class Retry(Exception):
    """A failure worth another attempt, after the usual backoff."""


class Permanent(Exception):
    """The job can never succeed as it stands: dead-letter it at once."""


def _display_name(name: str) -> str:
    return neutralise(name)[:DISPLAY_NAME_MAX]


def is_gone(exc: PachcaError) -> bool:
    return exc.status in (404, 410) or (exc.status == 422 and bool(GONE_CODES & {*exc.codes}))


class Deliveries:
    def __init__(self, rt: Runtime, pacer: Pacer, *, max_pacing_wait_s: float):
        self.rt = rt
        self.pacer = pacer
        self.max_pacing_wait_s = max_pacing_wait_s
        self._kinds: dict[str, Callable[[Job, PachcaClient], Awaitable[Done]]] = {
            OPEN_THREAD: self.open_thread,
            ADD_MEMBER: self.add_member,
            POST_MESSAGE: self.post_message,
            EDIT_MESSAGE: self.edit_message,
            DELETE_MESSAGE: self.delete_message,
            SEND_TEXT: self.send_text,
            REMOVE_MEMBER: self.remove_member,
            POST_NOTE: self.post_note,
            SYNC_REACTIONS: self.sync_reactions,
            REMIND: self.remind,
        }

    def register(self, kind: str, handler: Callable[[Job, PachcaClient], Awaitable[Done]]) -> None:
        """A kind carried out elsewhere (one that needs the forum's writers, which import
        this module)."""
        self._kinds[kind] = handler

    async def run(self, job: Job, client: PachcaClient) -> Done:
        handler = self._kinds.get(job.kind)
        if handler is None:
            raise Permanent(f"unknown job kind {job.kind!r}")
        try:
            return await handler(job, client)
        except KeyError as exc:
            raise Permanent(f"payload lacks {exc.args[0]!r}") from None

    async def paced_call(self, chat_key: str | None, call: Callable[[], Awaitable[T]]) -> T:
        """``_call`` for kinds carried out elsewhere."""
        return await self._call(chat_key, call)

    async def _call(self, chat_key: str | None, call: Callable[[], Awaitable[T]]) -> T:
        """One Pachca call, paced: ``chat_key`` names the Pachca chat of a message call."""
        cfg = self.rt.live.current.pachca
        try:
            await self.pacer.acquire(
                chat_key,
                per_chat=cfg.rate_per_chat,
                overall=cfg.rate_global,
                max_wait=self.max_pacing_wait_s,
            )
        except WaitTooLong as exc:
            raise Postpone(str(exc), delay=exc.wait) from None
        try:
            return await call()
        except PachcaError as exc:
            if exc.status == 429:
                # Message calls are limited per chat, everything else per token.
                self.pacer.pause(chat_key, exc.retry_after if exc.retry_after is not None else 1.0)
            raise

    # --- threads and members -------------------------------------------------------------

    async def open_thread(self, job: Job, client: PachcaClient) -> Done:
        """Root message in the channel, thread on it, then the teacher or tutor as a member.

        Resumable: each id is stored the moment it is known, so a retry after a failure never
        posts a second root message and never asks for the thread twice.
        """
        chat_id = int(job.payload["chat_id"])
        async with self.rt.db.read() as conn:
            chat = await links.chat_thread(conn, chat_id)
        if chat is None:
            return Done(skipped="the chat was deleted")
        thread_chat_id = chat["pachca_thread_chat_id"]
        if thread_chat_id is None:
            root_id = chat["pachca_root_message_id"]
            if root_id is None:
                root_id = await self._post_root(chat, client)
            try:
                thread = await self._call(None, lambda: client.create_thread(root_id))
            except PachcaError as exc:
                if not is_gone(exc):
                    raise
                # Someone deleted the root message in Pachca: post a fresh one next time.
                async with self.rt.db.write() as conn:
                    await links.set_chat_thread(conn, chat_id, pachca_root_message_id=None)
                raise Retry(f"the root message is gone in Pachca ({exc})") from None
            async with self.rt.db.write() as conn:
                await links.set_chat_thread(
                    conn, chat_id, pachca_thread_id=thread.id, pachca_thread_chat_id=thread.chat_id
                )
            thread_chat_id = thread.chat_id
            log.info("pachca thread opened", chat_id=chat_id, thread_id=thread.id)
        async with self.rt.db.read() as conn:
            partners = await links.partners(conn, chat_id, policy.PARTNER_ROLES)
        linked = [p["pachca_user_id"] for p in partners if p["pachca_user_id"] is not None]
        for p in partners:
            if p["pachca_user_id"] is None:
                log.info(
                    "not added to the pachca thread: no Pachca account linked yet",
                    chat_id=chat_id,
                    user_id=p["user_id"],
                )
        if linked:
            await self._call(
                None, lambda: client.add_chat_members(thread_chat_id, linked, silent=True)
            )
            if await self._undo_if_deleted(chat_id, thread_chat_id, linked, client):
                return Done(skipped="the chat was deleted meanwhile; members taken out again")
        return Done()

    async def _post_root(self, chat: Any, client: PachcaClient) -> int:
        cfg = self.rt.live.current.pachca
        channel = cfg.channel_for(chat["type"], chat["subject_id"])
        if channel is None:
            raise Postpone(
                f"no Pachca channel configured for {chat['type']} chats of subject "
                f"{chat['subject_id']!r} (pachca.channels)",
                log_once=True,
            )
        root = await self._call(
            f"discussion:{channel}",
            lambda: client.create_message(
                entity_type="discussion",
                entity_id=channel,
                # The title names the student: "@all" as a name must not ping the channel.
                content=neutralise(chat["title"]),
                skip_invite_mentions=True,
            ),
        )
        # Its own transaction, at once: if the thread call fails, the retry reuses this root.
        async with self.rt.db.write() as conn:
            await links.set_chat_thread(conn, chat["id"], pachca_root_message_id=root.id)
        return root.id

    async def add_member(self, job: Job, client: PachcaClient) -> Done:
        chat_id, user_id = int(job.payload["chat_id"]), str(job.payload["user_id"])
        async with self.rt.db.read() as conn:
            chat = await links.chat_thread(conn, chat_id)
            partners = (
                await links.partners(conn, chat_id, policy.PARTNER_ROLES)
                if chat is not None
                else []
            )
        if chat is None:
            return Done(skipped="the chat was deleted")
        if chat["pachca_thread_chat_id"] is None:
            # Opening the thread adds whoever is the partner then.
            return Done(skipped="the chat's Pachca thread is not open")
        partner = next((p for p in partners if p["user_id"] == user_id), None)
        if partner is None:
            return Done(skipped="no longer the chat's teacher or tutor")
        if partner["pachca_user_id"] is None:
            log.info(
                "not added to the pachca thread: no Pachca account linked yet",
                chat_id=chat_id,
                user_id=user_id,
            )
            return Done(skipped="no Pachca account linked")
        thread_chat_id, member = chat["pachca_thread_chat_id"], partner["pachca_user_id"]
        await self._call(
            None, lambda: client.add_chat_members(thread_chat_id, [member], silent=True)
        )
        if await self._undo_if_deleted(chat_id, thread_chat_id, [member], client):
            return Done(skipped="the chat was deleted meanwhile; member taken out again")
        return Done()

    async def _undo_if_deleted(
        self, chat_id: int, thread_chat_id: int, members: list[int], client: PachcaClient
    ) -> bool:
        """Whether the chat was deleted while its members were being added - then its
        closing jobs, queued behind this one, may have run before the call landed, so the
        members are taken out again here."""
        async with self.rt.db.read() as conn:
            if await links.chat_thread(conn, chat_id) is not None:
                return False
        for member in members:
            try:
                await self._call(
                    None, lambda m=member: client.remove_chat_member(thread_chat_id, m)
                )
            except PachcaError as exc:
                if exc.status != 404:
                    raise
        return True

    # --- messages ----------------------------------------------------------------------------

    async def _message(self, job: Job) -> Any:
        async with self.rt.db.read() as conn:
            return await links.message_for_delivery(conn, int(job.payload["message_id"]))

    async def post_message(self, job: Job, client: PachcaClient) -> Done:
        m = await self._message(job)
        if m is None:
            return Done(skipped="the message is gone")
        if m["deleted_at"] is not None:
            return Done(skipped="deleted before it was posted")
        if m["pachca_message_id"] is not None:
            return Done(skipped="already in Pachca")
        if m["source"] != "web":
            return Done(skipped="came from Pachca")
        thread_id = m["pachca_thread_id"]
        if thread_id is None:
            # The chat's open_thread job ran before this one (per-chat order) and did not
            # finish: it is dead. Retrying it opens the thread, and this job then follows.
            raise Postpone("waiting for the chat's Pachca thread to be opened")
        files = await self._upload_files(m["id"], client)
        created = await self._call(
            f"thread:{thread_id}",
            lambda: client.create_message(
                entity_type="thread",
                entity_id=thread_id,
                # Nobody in Pachca is pinged or invited by what a web user writes.
                content=neutralise(m["content"]),
                display_name=_display_name(m["sender_name"]),
                parent_message_id=m["reply_to_pachca_id"],
                skip_invite_mentions=True,
                files=files,
            ),
        )
        message_id, pachca_id = m["id"], created.id

        async def record(conn: Tx) -> None:
            await links.set_message_pachca_id(conn, message_id, pachca_id)
            # Reacted to before it was posted (its post job was dead and retried, say): the
            # bot's reactions follow now that the copy exists.
            if await reaction_store.has_web_reactions(conn, message_id):
                await queue_reaction_sync(conn, message_id, m["chat_id"], utcnow())

        return Done(finish=record)

    async def _upload_files(self, message_id: int, client: PachcaClient) -> list[MessageFileFields]:
        """The message's files, uploaded to Pachca (``POST /uploads``, then the direct upload),
        for the ``files`` of its post. Each key is stored the moment it is known, so a retry
        uploads only what is not there yet."""
        async with self.rt.db.read() as conn:
            rows = await file_store.of_message(conn, message_id)
        out: list[MessageFileFields] = []
        for row in rows:
            key = row["pachca_key"]
            if key is None:
                key = await self._upload(row, client)
                if key is None:
                    continue
                async with self.rt.db.write() as conn:
                    await file_store.set_pachca_key(conn, row["id"], key)
            file_type = "image" if is_inline(row["content_type"]) else "file"
            out.append(
                MessageFileFields(key=key, name=row["name"], file_type=file_type, size=row["size"])
            )
        return out

    async def _upload(self, row: Any, client: PachcaClient) -> str | None:
        """One file's upload; its key. An expired upload signature (403) asks for new
        parameters once; a second refusal fails the attempt (the job is retried)."""
        for last in (False, True):
            params = await self._call(None, client.create_upload)
            try:
                blob = await self.rt.blobs.open(row["storage_key"])
            except BlobMissing:
                log.warning("a file's bytes are gone; posted without it", file_id=row["id"])
                return None
            try:
                return await client.upload_file(
                    params,
                    name=row["name"],
                    content_type=row["content_type"],
                    size=blob.size,
                    chunks=blob.chunks,
                )
            except PachcaError as exc:
                if exc.status != 403 or last:
                    raise
                log.info("pachca upload signature refused; asking for new ones", exc=str(exc))
            finally:
                await blob.close()
        return None  # not reached: the second pass returns or raises

    async def edit_message(self, job: Job, client: PachcaClient) -> Done:
        m = await self._message(job)
        if m is None:
            return Done(skipped="the message is gone")
        if m["deleted_at"] is not None:
            return Done(skipped="deleted since; the deletion follows")
        pachca_id = m["pachca_message_id"]
        if pachca_id is None:
            return Done(skipped="never posted to Pachca")
        try:
            await self._call(
                f"thread:{m['pachca_thread_id']}",
                lambda: client.update_message(
                    pachca_id,
                    neutralise(m["content"]),
                    display_name=_display_name(m["sender_name"]),
                ),
            )
        except PachcaError as exc:
            if is_gone(exc):
                return Done(skipped="the Pachca copy is gone")
            raise
        return Done()

    async def delete_message(self, job: Job, client: PachcaClient) -> Done:
        m = await self._message(job)
        if m is None:
            return Done(skipped="the message is gone")
        pachca_id = m["pachca_message_id"]
        if pachca_id is None:
            return Done(skipped="never posted to Pachca")
        try:
            await self._call(
                f"thread:{m['pachca_thread_id']}", lambda: client.delete_message(pachca_id)
            )
        except PachcaError as exc:
            if is_gone(exc):
                return Done(skipped="already gone in Pachca")
            raise
        return Done()

    async def send_text(self, job: Job, client: PachcaClient) -> Done:
        p = job.payload
        entity_type, entity_id = str(p["entity_type"]), int(p["entity_id"])
        await self._call(
            f"{entity_type}:{entity_id}",
            lambda: client.create_message(
                entity_type=entity_type,
                entity_id=entity_id,
                # Answers quote names and chat titles.
                content=neutralise(str(p["content"])),
                parent_message_id=p.get("parent_message_id"),
            ),
        )
        return Done()

    # --- threads follow the policy: removals and notes ------------------------------------

    async def remove_member(self, job: Job, client: PachcaClient) -> Done:
        """Remove a Pachca account from a thread's chat, unless it may be there when the job
        runs (the chat's teacher or tutor again, staff, the bot): the truth at run time, so
        a teacher replaced and brought back is not removed.

        A payload naming ``thread_chat_id`` is about a deleted chat's thread: nobody but the
        bot and staff may stay there."""
        p = job.payload
        member = int(p["pachca_user_id"])
        thread_chat_id = p.get("thread_chat_id")
        chat_type: str | None = None
        partners: list[tuple[int | None, str]] = []
        if thread_chat_id is None:
            chat_id = int(p["chat_id"])
            async with self.rt.db.read() as conn:
                chat = await links.chat_thread(conn, chat_id)
                rows = await links.partners(conn, chat_id, policy.PARTNER_ROLES) if chat else []
            if chat is None:
                return Done(skipped="the chat was deleted")
            thread_chat_id, chat_type = chat["pachca_thread_chat_id"], chat["type"]
            if thread_chat_id is None:
                # Opening the thread adds only whoever is the partner then.
                return Done(skipped="the chat's Pachca thread is not open")
            partners = [(r["pachca_user_id"], r["user_role"]) for r in rows]
        cfg = self.rt.live.current.pachca
        if policy.may_be_in_thread(
            member,
            chat_type=chat_type,
            partners=partners,
            bot_user_id=cfg.bot_user_id,
            staff_user_ids=cfg.staff_user_ids,
        ):
            return Done(skipped="may be a member of the thread")
        thread = int(thread_chat_id)
        try:
            await self._call(None, lambda: client.remove_chat_member(thread, member))
        except PachcaError as exc:
            if exc.status == 404:
                return Done(skipped="not a member of the thread")
            raise
        log.info("removed from a pachca thread", thread_chat_id=thread, pachca_user_id=member)
        return Done()

    async def post_note(self, job: Job, client: PachcaClient) -> Done:
        """The bot's note in a thread (NOTES). A payload naming ``thread_id`` is about a
        deleted chat's thread."""
        p = job.payload
        content = NOTES[str(p["note"])]
        thread_id = p.get("thread_id")
        if thread_id is None:
            async with self.rt.db.read() as conn:
                chat = await links.chat_thread(conn, int(p["chat_id"]))
            if chat is None:
                return Done(skipped="the chat was deleted")
            thread_id = chat["pachca_thread_id"]
            if thread_id is None:
                return Done(skipped="the chat's Pachca thread is not open")
        thread = int(thread_id)
        try:
            await self._call(
                f"thread:{thread}",
                lambda: client.create_message(
                    entity_type="thread", entity_id=thread, content=content
                ),
            )
        except PachcaError as exc:
            if is_gone(exc):
                return Done(skipped="the thread is gone in Pachca")
            raise
        return Done()

    # --- reminders of waiting chats ------------------------------------------------------------

    async def remind(self, job: Job, client: PachcaClient) -> Done:
        """A direct message to the teacher or tutor of a chat still waiting since the time
        the reminder was queued for: the state is read again now, so an answer that came
        while the job waited means no reminder."""
        chat_id = int(job.payload["chat_id"])
        async with self.rt.db.read() as conn:
            row = await waiting_store.reminder_facts(conn, chat_id, policy.PARTNER_ROLES)
        if row is None or row["since"] is None:
            return Done(skipped="answered, or no longer active")
        if row["since"].isoformat() != job.payload["since"]:
            return Done(skipped="answered; a later question waits")
        recipient = row["assignee_pachca_user_id"]
        if recipient is None:
            log.info(
                "reminder not sent: no Pachca account linked",
                chat_id=chat_id,
                user_id=row["assignee_id"],
            )
            return Done(skipped="no Pachca account linked")
        thread = row["pachca_thread_chat_id"]
        link = THREAD_LINK.format(thread_chat_id=thread) if thread is not None else None
        content = waiting.reminder_text(row, utcnow(), link)
        await self._call(
            f"user:{recipient}",
            lambda: client.create_message(
                entity_type="user",
                entity_id=recipient,
                # It quotes the student's name and the chat's title.
                content=neutralise(content),
            ),
        )
        return Done()

    # --- the bot's reactions -----------------------------------------------------------------

    async def sync_reactions(self, job: Job, client: PachcaClient) -> Done:
        """Make the bot's reactions on a message's Pachca copy what web users hold now: add
        the emoji they hold that the bot does not, take back those nobody on the web holds any
        longer. What the bot holds is kept in the database. Coalesced like edits (one waiting
        job covers every change made before it starts), and every call is one Pachca repeats
        harmlessly, so a retry after a failure midway just finishes the work."""
        message_id = int(job.payload["message_id"])
        async with self.rt.db.read() as conn:
            m = await links.message_for_delivery(conn, message_id)
            wanted = await reaction_store.web_emoji(conn, message_id)
            held = await reaction_store.bot_emoji(conn, message_id)
        if m is None:
            return Done(skipped="the message is gone")
        if m["deleted_at"] is not None:
            return Done(skipped="the message was deleted")
        pachca_id = m["pachca_message_id"]
        if pachca_id is None:
            return Done(skipped="not in Pachca; its post brings its reactions along")
        added: list[str] = []
        for emoji in (e for e in wanted if e not in held):
            try:
                await self._call(None, lambda e=emoji: client.add_reaction(pachca_id, e))
            except PachcaError as exc:
                if is_gone(exc):
                    return Done(skipped="the Pachca copy is gone")
                if exc.status != 422:
                    raise
                # Over one of Pachca's limits (20 emoji per user, 30 per message): the bot
                # cannot hold this one; the forum still shows it.
                log.warning(
                    "pachca refused the bot's reaction",
                    message_id=message_id,
                    pachca_message_id=pachca_id,
                    codes=exc.codes,
                )
                continue
            added.append(emoji)
        removed = sorted(held - set(wanted))
        for emoji in removed:
            try:
                await self._call(None, lambda e=emoji: client.remove_reaction(pachca_id, e))
            except PachcaError as exc:
                if exc.status != 404:  # not held (any more): nothing to take back
                    raise

        async def record(conn: Tx) -> None:
            await reaction_store.set_bot_emoji(conn, message_id, added=added, removed=removed)

        return Done(finish=record)


async def queue_reaction_sync(tx: Tx, message_id: int, chat_id: int, now: Any) -> None:
    """Queue the job that makes the bot's reactions on the message's Pachca copy follow web
    users' - unless one waits already: it will see this change too."""
    await outbox_store.enqueue_unless_waiting(
        tx,
        SYNC_REACTIONS,
        {"message_id": message_id},
        chat_id=chat_id,
        message_id=message_id,
        now=now,
    )
