"""Pachca -> forum files: the outbox job that copies a Pachca message's files into the blob
store (docs/pachca.md, "Files from Pachca").

A message webhook carries no files, so the relay (bridge/pachca/relay.py) queues this job for
every message it relays, in the chat's lane, in the transaction that records the webhook's
delivery key - a redelivered webhook stops at the key and queues nothing:

- a message with text is created at once; the job reads the message (``GET /messages/{id}``)
  and, when it holds files, attaches their copies to it (``message.updated``);
- a message without text (files only) waits for the job, which creates it with the copies
  (``message.created``): it appears once its files are stored.

Each copy is streamed from the link Pachca gives into the blob store and recorded at once
under its Pachca file id, so a job that failed or died midway reuses what it already copied.
A file that fails to download is retried with the outbox's rules; one over ``files.max_bytes``,
or still failing on the job's last attempt, becomes a line in the content naming it. The
text is never lost. The message itself is written once: the job looks for it by its Pachca id
before creating it, and the column is unique.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import structlog

from bot.client import PachcaClient, PachcaError
from bot.models import PachcaFile, PachcaMessage
from bridge.config import is_loopback
from bridge.feed import events as ev
from bridge.forum import views
from bridge.forum.chats import access_from_rows
from bridge.forum.files import DEFAULT_TYPE, MAX_NAME_CHARS, media_type
from bridge.forum.messages import add_message
from bridge.pachca.jobs import Done, Job, Retry, is_gone
from bridge.runtime import Runtime, utcnow
from store import files as file_store
from store import forum
from store import messages as message_store
from store import pachca_links as links
from store.blobs import BlobTooLarge, new_key
from store.errors import Conflict
from store.tx import Tx

log = structlog.get_logger("bridge.outbox")

T = TypeVar("T")
Call = Callable[[str | None, Callable[[], Awaitable[T]]], Awaitable[T]]

# Stands for the text of a message that has neither text nor files Pachca would show.
ATTACHMENT_NOTE = "[attachment]"
# The text of a file-only message whose files could not even be listed.
UNREADABLE = "[files not copied: the message could not be read from Pachca]"


def not_copied(name: str, why: str) -> str:
    return f"[file not copied: {name} ({why})]"


def safe_name(name: str) -> str:
    """A Pachca file's name as a forum file name: path separators and control characters
    replaced, at most 255 characters."""
    cleaned = "".join("_" if c in "/\\" or ord(c) < 0x20 or ord(c) == 0x7F else c for c in name)
    return cleaned[:MAX_NAME_CHARS] or "file"


def fetchable(url: str) -> bool:
    """Whether a file link may be fetched: https, or plain http to this machine (a test
    double), as for ``pachca.api_url`` - never plain http elsewhere."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host:
        return True
    return parts.scheme == "http" and is_loopback(host)


def guess_type(file: PachcaFile) -> str:
    guessed, _ = mimetypes.guess_type(file.name, strict=False)
    return media_type(guessed) if guessed else DEFAULT_TYPE


class FileCopies:
    def __init__(self, rt: Runtime, call: Call[Any]):
        self.rt = rt
        self._call = call  # a paced Pachca call (Deliveries._call)

    async def run(self, job: Job, client: PachcaClient) -> Done:
        p = job.payload
        pachca_id = int(p["pachca_message_id"])
        async with self.rt.db.read() as conn:
            existing = await links.message_by_pachca_id(conn, pachca_id)
        if existing is not None and existing["deleted_at"] is not None:
            return Done(skipped="the message was deleted")
        creating = existing is None
        if creating and "create" not in p:
            return Done(skipped="the message is gone")
        try:
            message = await self._call(None, lambda: client.get_message(pachca_id))
        except PachcaError as exc:
            last_attempt = job.attempts >= self.rt.live.current.pachca.max_attempts
            if creating and last_attempt and not is_gone(exc) and exc.status != 429:
                # Never readable: the message still arrives, saying what is missing.
                return Done(finish=lambda tx: self._create(tx, p, None, [], [UNREADABLE]))
            if not is_gone(exc):
                raise
            message = None
        if message is None or message.deleted_at is not None:
            if creating:
                return Done(skipped="deleted in Pachca before its files were copied")
            return Done(skipped="deleted in Pachca")
        if not message.files and not creating:
            return Done(skipped="no files")
        sender_id = str(existing["sender_id"] if existing else p["create"]["sender_id"])
        chat_id = int(existing["chat_id"] if existing else p["create"]["chat_id"])
        copied, notes = await self._copy_all(job, client, message, chat_id, sender_id)

        if creating:

            async def create(tx: Tx) -> list[ev.FeedEvent]:
                return await self._create(tx, p, message, copied, notes)

            return Done(finish=create)

        message_id = int(existing["id"])  # type: ignore[index]

        async def attach(tx: Tx) -> list[ev.FeedEvent]:
            return await self._attach(tx, message_id, chat_id, sender_id, copied, notes)

        return Done(finish=attach)

    async def _copy_all(
        self, job: Job, client: PachcaClient, message: PachcaMessage, chat_id: int, sender_id: str
    ) -> tuple[list[str], list[str]]:
        """Copy each file (or reuse an earlier attempt's copy); the copies' ids in order, and
        the lines naming the files that cannot be copied."""
        copied: list[str] = []
        notes: list[str] = []
        last_attempt = job.attempts >= self.rt.live.current.pachca.max_attempts
        for file in message.files:
            async with self.rt.db.read() as conn:
                row = await file_store.by_pachca_file(conn, file.id)
            if row is not None:
                if row["message_id"] is None and row["deleted_at"] is None:
                    copied.append(row["id"])
                continue
            name = safe_name(file.name)
            if not fetchable(file.url):
                log.warning("a pachca file link is not https; not fetched", pachca_file_id=file.id)
                notes.append(not_copied(name, "could not be fetched"))
                continue
            try:
                copied.append(await self._copy(client, file, name, chat_id, sender_id))
            except BlobTooLarge:
                notes.append(not_copied(name, "too large"))
            except PachcaError as exc:
                if not last_attempt:
                    raise Retry(f"copying a file failed: {exc}") from None
                log.warning("a pachca file could not be copied", pachca_file_id=file.id)
                notes.append(not_copied(name, "could not be fetched"))
        return copied, notes

    async def _copy(
        self, client: PachcaClient, file: PachcaFile, name: str, chat_id: int, sender_id: str
    ) -> str:
        """Stream one file into the blob store and record it; its id."""
        key = new_key()
        max_bytes = self.rt.live.current.files.max_bytes
        async with client.open_file(file.url) as download:
            if download.size is not None and download.size > max_bytes:
                raise BlobTooLarge(f"declared {download.size} bytes")
            size = await self.rt.blobs.write(key, download.chunks, max_bytes)
        row = {
            "id": key,
            "chat_id": chat_id,
            "uploader_id": sender_id,
            "message_id": None,
            "position": 0,
            "name": name,
            "size": size,
            "content_type": guess_type(file),
            "storage_key": key,
            "created_at": utcnow(),
            "pachca_file_id": file.id,
        }
        try:
            async with self.rt.db.write() as tx:
                await file_store.insert_file(tx, row)
        except BaseException:
            await self.rt.blobs.delete(key)
            raise
        return key

    async def _create(
        self,
        tx: Tx,
        p: dict[str, Any],
        message: PachcaMessage | None,
        copied: Sequence[str],
        notes: Sequence[str],
    ) -> list[ev.FeedEvent]:
        spec = p["create"]
        chat_id = int(spec["chat_id"])
        rows = await forum.chat_access(tx, chat_id)
        if not rows:
            return []  # the chat was deleted meanwhile; the copies are swept
        access = access_from_rows(rows)
        text = message.content.replace("\x00", "") if message is not None else ""
        content = _with_notes(text, notes)
        if not content.strip() and not copied:
            content = ATTACHMENT_NOTE
        created_at = _moment(spec["created_at"])
        now = utcnow()
        try:
            _, event = await add_message(
                self.rt,
                tx,
                {
                    "chat_id": chat_id,
                    "sender_id": spec["sender_id"],
                    "content": content,
                    "created_at": created_at,
                    "edited_at": _moment(spec.get("edited_at")),
                    "reply_to_id": spec.get("reply_to_id"),
                    "source": "pachca",
                    "pachca_message_id": int(p["pachca_message_id"]),
                    "pachca_changed_at": _moment(spec.get("pachca_changed_at")),
                },
                now,
                sender_name=str(spec["sender_name"]),
                sender_role=str(spec["sender_role"]),
                last_at=max(access.chat["last_activity_at"], created_at),
                post_to_pachca=False,
                file_ids=copied,
            )
        except Conflict:
            # Made meanwhile (an edit that stood for the lost "new"): the retry attaches.
            raise Retry("the message was created meanwhile; attaching instead") from None
        return [event]

    async def _attach(
        self,
        tx: Tx,
        message_id: int,
        chat_id: int,
        sender_id: str,
        copied: Sequence[str],
        notes: Sequence[str],
    ) -> list[ev.FeedEvent]:
        row = await message_store.get_message(tx, message_id)
        if row is None:
            return []  # deleted meanwhile; the copies are swept
        if not copied and not notes:
            return []  # copied by an earlier job already
        if copied:
            attached = await file_store.attach(
                tx, copied, uploader_id=sender_id, chat_id=chat_id, message_id=message_id
            )
            if attached is None:
                raise Retry("a copied file was taken meanwhile")
        if notes:
            content = _with_notes(row["content"], notes)
            await message_store.update_message(tx, message_id, {"content": content})
        row = await message_store.get_message(tx, message_id)
        assert row is not None
        access = access_from_rows(await forum.chat_access(tx, chat_id))
        message = views.message_obj(row, access.marks(), links=self.rt.file_links)
        event = await self.rt.events.append(
            tx, ev.MESSAGE_UPDATED, chat_id, {"message": message}, utcnow()
        )
        return [event]


def _with_notes(content: str, notes: Sequence[str]) -> str:
    return "\n".join([content, *notes]) if content.strip() else "\n".join(notes)


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
