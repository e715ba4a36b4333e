"""Writing messages and read marks (docs/api.md): one short transaction each, holding
the change, its feed event and its outbox job, published after commit. ``add_message`` is the
one writer of new messages, shared with the Pachca relay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from bridge import policy
from bridge.auth import Principal
from bridge.errors import (
    ChatInactive,
    Forbidden,
    InvalidContent,
    InvalidRequest,
    NotFound,
    RateLimited,
)
from bridge.feed import events as ev
from bridge.forum import views, waiting
from bridge.forum.access_cache import AccessCache
from bridge.forum.chats import ChatAccess, ChatRights, load_access, load_marks, require_view
from bridge.forum.inputs import MAX_CONTENT_CHARS, MessageEdit, NewMessage, ReadMark
from bridge.pachca.jobs import DELETE_MESSAGE, EDIT_MESSAGE, POST_MESSAGE
from bridge.runtime import Runtime, utcnow
from store import files as file_store
from store import forum
from store import messages as message_store
from store import new_messages as new_message_store
from store import outbox as outbox_store
from store.errors import Conflict
from store.tx import Tx

log = structlog.get_logger("bridge.messages")


@dataclass(frozen=True, slots=True)
class Posted:
    message: dict[str, Any]
    created: bool  # False when a repeated client_id returned the first message


def check_content(content: str, *, with_files: bool = False) -> None:
    """Section "Messages" of docs/api.md: not blank (unless files come with it), not too
    long, no NUL."""
    if not with_files and not content.strip():
        raise InvalidContent("content must not be empty")
    if len(content) > MAX_CONTENT_CHARS:
        raise InvalidContent(f"content must be at most {MAX_CONTENT_CHARS} characters")
    if "\x00" in content:  # PostgreSQL text cannot hold it; refused on SQLite alike
        raise InvalidContent("content must not contain NUL characters")


@dataclass(frozen=True, slots=True)
class _Draft:
    """A new message ready to write: the store's unit and, without files, its message object
    and event (known before the insert, its id 0)."""

    new: new_message_store.NewMessage
    unnumbered: views.MessageObj | None

    def written(self, rt: Runtime, added: new_message_store.Added) -> None:
        """After the write: an answer's waiting time is observed."""
        if added.waited_since is not None:
            at = self.new.values["created_at"]
            rt.observe_answer(max(0.0, (at - added.waited_since).total_seconds()))

    def created(self, added: new_message_store.Added) -> tuple[dict[str, Any], ev.FeedEvent]:
        """The message object and its event, for a draft without files."""
        assert self.unnumbered is not None and self.new.event is not None
        assert added.event_id is not None
        message: dict[str, Any] = {**self.unnumbered, "id": added.id}
        event = ev.appended(self.new.chat_id, self.new.event, added.id, added.event_id)
        return message, event


def _draft(
    rt: Runtime,
    row: dict[str, Any],
    now: datetime,
    *,
    sender_name: str,
    sender_role: str,
    last_at: datetime,
    post_to_pachca: bool,
    with_files: bool,
) -> _Draft:
    chat_id = row["chat_id"]
    unnumbered = None
    about = None
    if not with_files:
        # The message object is known before the insert: the statement that writes the
        # message appends its event too (one round trip on PostgreSQL).
        unnumbered = _message_obj(rt, row, 0, [], sender_name=sender_name, sender_role=sender_role)
        about = ev.message_created(chat_id, unnumbered, now)
    new = new_message_store.NewMessage(
        row,
        last_at=last_at,
        now=now,
        starts_wait=waiting.starts_wait(sender_role),
        ends_wait=waiting.ends_wait(sender_role),
        job=POST_MESSAGE if post_to_pachca else None,
        event=about,
    )
    return _Draft(new, unnumbered)


def _message_obj(
    rt: Runtime,
    row: dict[str, Any],
    message_id: int,
    attached: list[Any],
    *,
    sender_name: str,
    sender_role: str,
) -> views.MessageObj:
    return views.message_obj(
        {
            **_NEW_MESSAGE,
            **row,
            "id": message_id,
            "sender_name": sender_name,
            "sender_role": sender_role,
            "files": attached,
        },
        links=rt.file_links,
    )


async def add_message(
    rt: Runtime,
    tx: Tx,
    row: dict[str, Any],
    now: datetime,
    *,
    sender_name: str,
    sender_role: str,
    last_at: datetime,
    post_to_pachca: bool,
    file_ids: Sequence[str] = (),
    uploader_id: str | None = None,
) -> tuple[dict[str, Any], ev.FeedEvent]:
    """The one writer of new messages, web posts and relayed Pachca messages alike, inside the
    caller's transaction: insert the message (``row``: its columns), make it the chat's last
    message (activity at ``last_at``), start or end the chat's wait for an answer, queue its
    post to Pachca (``post_to_pachca``: a web message), and append its ``message.created``
    event. Returns the message object and the event, to publish after commit; Conflict when
    a constraint refused it (a repeated client_id or Pachca message id, a chat deleted
    meanwhile). ``add_message_alone`` is the same for a message that needs nothing else in
    its transaction.

    ``file_ids`` are attached in their order: files ``uploader_id`` (default: the sender)
    uploaded to this chat that no message holds yet; InvalidRequest otherwise, and the
    caller's transaction fails with it, so nothing is written."""
    draft = _draft(
        rt,
        row,
        now,
        sender_name=sender_name,
        sender_role=sender_role,
        last_at=last_at,
        post_to_pachca=post_to_pachca,
        with_files=bool(file_ids),
    )
    added = await new_message_store.add(tx, draft.new)
    draft.written(rt, added)
    if not file_ids:
        return draft.created(added)
    chat_id = row["chat_id"]
    attached = await file_store.attach(
        tx,
        file_ids,
        uploader_id=uploader_id or row["sender_id"],
        chat_id=chat_id,
        message_id=added.id,
    )
    if attached is None:
        raise InvalidRequest(
            "file_ids must name files you uploaded to this chat that no message holds yet"
        )
    numbered = _message_obj(
        rt, row, added.id, attached, sender_name=sender_name, sender_role=sender_role
    )
    event = await rt.events.append(tx, ev.MESSAGE_CREATED, chat_id, {"message": numbered}, now)
    return dict(numbered), event


async def add_message_alone(
    rt: Runtime,
    row: dict[str, Any],
    now: datetime,
    *,
    sender_name: str,
    sender_role: str,
    post_to_pachca: bool,
) -> tuple[dict[str, Any], ev.FeedEvent]:
    """``add_message`` for a message without files that needs nothing else written with it,
    in a transaction of its own - shared, on PostgreSQL, with the messages of other chats
    written at the same moment (one statement for all of them, store/batching.py)."""
    draft = _draft(
        rt,
        row,
        now,
        sender_name=sender_name,
        sender_role=sender_role,
        last_at=row["created_at"],
        post_to_pachca=post_to_pachca,
        with_files=False,
    )
    added = await rt.db.write_batched(new_message_store.NEW_MESSAGES, draft.new)
    draft.written(rt, added)
    return draft.created(added)


# The columns a new message's row may leave out.
_NEW_MESSAGE = {"edited_at": None, "reply_to_id": None, "client_id": None, "reactions": None}


async def forget_blobs(rt: Runtime, keys: Sequence[str]) -> None:
    """Remove deleted files' bytes after the commit that deleted them. A failure is left to
    the sweeper (bridge/ops/maintenance.py), which retries until the bytes are gone."""
    for key in keys:
        try:
            await rt.blobs.delete(key)
        except Exception:
            log.warning("could not remove a deleted file's bytes yet", exc_info=True)


class MessageWriter:
    def __init__(self, rt: Runtime, access: AccessCache):
        self.rt = rt
        self.access = access  # chats' rights, kept a few seconds, told of changes by the feed

    async def access_for_posting(self, who: Principal, chat_id: int) -> ChatRights:
        """Existence (404) and permission (403), before the body is even looked at. From
        this instance's copy of the chat's rights when it has a recent one (every change to
        them reaches every instance's copy at once: bridge/forum/access_cache.py)."""
        access = await self.access.get(chat_id)
        require_view(who, access)
        if not access.can_post(who):
            raise Forbidden("you may not post in this chat")
        return access

    async def post(self, who: Principal, access: ChatRights, body: NewMessage) -> Posted:
        """A new message, or, for a ``client_id`` already used, the message it first made.
        The repeat is found by the constraint on (sender, client_id) - or, when this body
        would be refused, by a look before refusing - so a post costs no look-up first. A
        repeat is no write: it never counts against the posting limit."""
        try:
            check_content(body.content, with_files=bool(body.file_ids))
            if not access.is_active:
                raise ChatInactive("this chat is read-only")
            self.rt.count_write(who.id)
        except (InvalidContent, ChatInactive, RateLimited):
            if body.client_id is not None:
                first = await self._first(who, access, body.client_id)
                if first is not None:
                    return first
            raise
        now = utcnow()
        row = {
            "chat_id": access.id,
            "sender_id": who.id,
            "content": body.content,
            "created_at": now,
            "reply_to_id": body.reply_to_id,
            "source": "web",
            "client_id": body.client_id,
        }
        try:
            if body.reply_to_id is None and not body.file_ids:
                message, event = await add_message_alone(
                    self.rt,
                    row,
                    now,
                    sender_name=who.name,
                    sender_role=who.role,
                    post_to_pachca=True,
                )
            else:
                async with self.rt.db.write() as tx:
                    if body.reply_to_id is not None and not await message_store.is_live_in_chat(
                        tx, body.reply_to_id, access.id
                    ):
                        raise InvalidRequest("reply_to_id must name a message of this chat")
                    message, event = await add_message(
                        self.rt,
                        tx,
                        row,
                        now,
                        sender_name=who.name,
                        sender_role=who.role,
                        last_at=now,
                        post_to_pachca=True,
                        file_ids=body.file_ids,
                    )
        except Conflict:
            return await self._after_conflict(who, access, body)
        except InvalidRequest:  # the reply's message is gone, say: a retry still gets its first
            first = None
            if body.client_id is not None:
                first = await self._first(who, access, body.client_id)
            if first is None:
                raise
            self.rt.uncount_write(who.id)
            return first
        await self.rt.publish([event])
        return Posted(message, created=True)

    async def _first(self, who: Principal, access: ChatRights, client_id: str) -> Posted | None:
        """The message ``who`` first posted with ``client_id``, if any."""
        async with self.rt.db.read() as conn:
            first = await message_store.by_client_id(conn, who.id, client_id)
        return None if first is None else await self._repeated(access, first)

    async def _after_conflict(self, who: Principal, access: ChatRights, body: NewMessage) -> Posted:
        """The insert hit a constraint: a concurrent post with the same client_id won the
        race (return its message), or the chat was deleted meanwhile (404)."""
        if body.client_id is not None:
            first = await self._first(who, access, body.client_id)
            if first is not None:
                self.rt.uncount_write(who.id)
                return first
        raise NotFound("no such chat")

    async def _repeated(self, access: ChatRights, first: Any) -> Posted:
        """The message a repeated client_id posted first, with the read marks as they are now
        (the rights posting was checked against are a kept copy; read marks never are)."""
        async with self.rt.db.read() as conn:
            marks = await load_marks(conn, access.id)
        return Posted(views.message_obj(first, marks, links=self.rt.file_links), created=False)

    async def _load_own(self, who: Principal, message_id: int) -> tuple[Any, ChatAccess]:
        async with self.rt.db.read() as conn:
            row = await message_store.get_message(conn, message_id)
            if row is None:
                raise NotFound("no such message")
            access = await load_access(conn, row["chat_id"])
        require_view(who, access)
        return row, access

    async def editable(self, who: Principal, message_id: int) -> tuple[Any, ChatAccess]:
        """The message, checked to exist (404) and to be the caller's to edit (403)."""
        row, access = await self._load_own(who, message_id)
        if row["sender_id"] != who.id or not access.can_post(who):
            raise Forbidden("only the author may edit a message")
        return row, access

    async def edit(
        self, who: Principal, row: Any, access: ChatAccess, body: MessageEdit
    ) -> dict[str, Any]:
        check_content(body.content)
        if not access.is_active:
            raise ChatInactive("this chat is read-only")
        self.rt.count_write(who.id)
        now = utcnow()
        message_id = row["id"]
        async with self.rt.db.write() as conn:
            await message_store.update_message(
                conn, message_id, {"content": body.content, "edited_at": now}
            )
            if row["source"] == "web":
                # The edit job sends the text the message has when it runs: while one waits,
                # it carries this edit too, and a burst of edits makes one delivery.
                await outbox_store.enqueue_unless_waiting(
                    conn,
                    EDIT_MESSAGE,
                    {"message_id": message_id},
                    chat_id=access.id,
                    message_id=message_id,
                    now=now,
                )
            message = views.message_obj(
                {**row, "content": body.content, "edited_at": now},
                access.marks(),
                links=self.rt.file_links,
            )
            event = await self.rt.events.append(
                conn, ev.MESSAGE_UPDATED, access.id, {"message": message}, now
            )
        await self.rt.publish([event])
        return message

    async def delete(self, who: Principal, message_id: int) -> None:
        row, access = await self._load_own(who, message_id)
        if not policy.can_delete(
            who.role, access.type, access.is_member(who.id), row["sender_id"] == who.id
        ):
            raise Forbidden("you may not delete this message")
        self.rt.count_write(who.id)
        now = utcnow()
        async with self.rt.db.write() as conn:
            await message_store.update_message(conn, message_id, {"deleted_at": now})
            await waiting.message_deleted(conn, access.id, row["sender_role"])
            # Its files go with it: their links answer 404 from the commit on.
            blob_keys = await file_store.delete_of_message(conn, message_id, now)
            if access.chat["last_message_id"] == message_id:
                newest = await message_store.newest_live(conn, access.id)
                await forum.set_last_message(
                    conn,
                    access.id,
                    newest["id"] if newest else None,
                    newest["created_at"] if newest else access.chat["created_at"],
                )
            await outbox_store.enqueue(
                conn, DELETE_MESSAGE, {"message_id": message_id}, chat_id=access.id, now=now
            )
            event = await self.rt.events.append(
                conn, ev.MESSAGE_DELETED, access.id, {"message_id": message_id}, now
            )
        await self.rt.publish([event])
        await forget_blobs(self.rt, blob_keys)

    async def access_for_reading(self, who: Principal, chat_id: int) -> ChatAccess:
        async with self.rt.db.read() as conn:
            access = await load_access(conn, chat_id)
        require_view(who, access)
        if not policy.can_mark_read(who.role, access.type, access.is_member(who.id)):
            raise Forbidden("read marks are kept for the chat's participants only")
        return access

    async def mark_read(self, who: Principal, access: ChatAccess, body: ReadMark) -> None:
        now = utcnow()
        async with self.rt.db.write() as conn:
            if not await message_store.is_live_in_chat(conn, body.message_id, access.id):
                raise InvalidRequest("message_id must name a message of this chat")
            if not await forum.mark_read(conn, access.id, who.id, body.message_id):
                return  # already read that far: nothing changes, nothing to announce
            event = await self.rt.events.append(
                conn,
                ev.READ,
                access.id,
                {"user_id": who.id, "message_id": body.message_id},
                now,
            )
        await self.rt.publish([event])
