"""Files in forum chats (docs/api.md, "Files"): uploads, looking one up, and the checks of a
signed download link.

An upload is streamed into the blob store as it arrives and stopped as soon as it passes
``files.max_bytes``; only a complete, valid file gets its row. The row names the blob by a
random key - the user's file name is stored as given and never touches a path.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from bridge.auth import Principal
from bridge.errors import ChatInactive, DomainError, Forbidden, InvalidRequest, NotFound
from bridge.forum import views
from bridge.forum.chats import ChatAccess, load_access, require_view
from bridge.runtime import Runtime, utcnow
from store import files as file_store
from store.blobs import (
    CHUNK_BYTES,
    BlobMissing,
    BlobReader,
    BlobStore,
    BlobTooLarge,
    new_key,
)
from store.tx import Row

log = structlog.get_logger("bridge.files")

MAX_NAME_CHARS = 255
# The size of the pieces downloads are sent in, and uploads read in: small, so that many
# uploads at once hold little (what is read goes straight to the blob store).
CHUNK = CHUNK_BYTES
UPLOAD_CHUNK = 64 * 1024
# Served inline: images a browser shows and never runs. Everything else (SVG and HTML
# included) is served as an attachment.
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
DEFAULT_TYPE = "application/octet-stream"
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


class PayloadTooLarge(DomainError):
    code, status = "payload_too_large", 413


def check_name(name: str | None) -> str:
    """A file name as given, refused when it is missing, too long, or holds a path separator
    or a control character (NUL included)."""
    if not name:
        raise InvalidRequest("the file part needs a file name")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidRequest(f"the file name must be at most {MAX_NAME_CHARS} characters")
    if any(c in "/\\" or ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidRequest("the file name must not hold /, \\ or control characters")
    return name


def media_type(value: str | None) -> str:
    """The content type as sent, without parameters; a malformed one is octet-stream."""
    bare = (value or "").split(";", 1)[0].strip().lower()
    return bare if _MEDIA_TYPE.match(bare) else DEFAULT_TYPE


def is_inline(content_type: str) -> bool:
    return content_type in INLINE_TYPES


@dataclass(frozen=True, slots=True)
class Download:
    """What the download route serves: the file's bytes as a path on this machine (local
    storage: served with sendfile) or as chunks."""

    name: str
    size: int
    content_type: str
    path: Path | None
    storage_key: str
    blobs: BlobStore

    async def open(self) -> BlobReader:
        """The bytes in chunks; NotFound when they are gone."""
        try:
            return await self.blobs.open(self.storage_key)
        except BlobMissing:
            raise NotFound("no such file") from None


class Files:
    def __init__(self, rt: Runtime):
        self.rt = rt

    async def access_for_upload(self, who: Principal, chat_id: int) -> ChatAccess:
        """The checks before the body: the chat (404), posting there (403), an active chat
        (400 chat_inactive); then the upload counts as a write (429 past the limit)."""
        async with self.rt.db.read() as conn:
            access = await load_access(conn, chat_id)
        require_view(who, access)
        if not access.can_post(who):
            raise Forbidden("you may not post in this chat")
        if not access.is_active:
            raise ChatInactive("this chat is read-only")
        self.rt.count_write(who.id)
        return access

    async def upload(
        self,
        who: Principal,
        access: ChatAccess,
        name: str | None,
        content_type: str | None,
        chunks: AsyncIterable[bytes],
    ) -> views.FileObj:
        """Store an uploaded file; its file object. Nothing is kept when it fails: too
        large (413), empty (400), or its body broken off (whatever ``chunks`` raises)."""
        name = check_name(name)
        key = new_key()
        max_bytes = self.rt.live.current.files.max_bytes
        try:
            size = await self.rt.blobs.write(key, chunks, max_bytes)
        except BlobTooLarge:
            raise PayloadTooLarge(f"a file may be at most {max_bytes} bytes") from None
        row: dict[str, Any] = {
            "id": key,
            "chat_id": access.id,
            "uploader_id": who.id,
            "message_id": None,
            "position": 0,
            "name": name,
            "size": size,
            "content_type": media_type(content_type),
            "storage_key": key,
            "created_at": utcnow(),
        }
        try:
            if size == 0:
                raise InvalidRequest("the file is empty")
            async with self.rt.db.write() as tx:
                await file_store.insert_file(tx, row)
        except BaseException:
            await self.rt.blobs.delete(key)
            raise
        return views.file_obj(row, self.rt.file_links)

    async def describe(self, who: Principal, file_id: str) -> views.FileObj:
        """A file with a fresh link, for whoever may see its chat; before it is sent, for its
        uploader only (404 for anyone else)."""
        async with self.rt.db.read() as conn:
            row = await self._live(conn, file_id)
            if row["message_id"] is None:
                if row["uploader_id"] != who.id:
                    raise NotFound("no such file")
            else:
                require_view(who, await load_access(conn, row["chat_id"]))
        return views.file_obj(row, self.rt.file_links)

    async def for_download(self, file_id: str, expires: str, signature: str) -> Download:
        """The file a signed link names: 403 for a changed or expired link, then 404 for a
        file that is gone."""
        if not self.rt.file_links.valid(file_id, expires, signature):
            raise Forbidden("the link is invalid or has expired")
        async with self.rt.db.read() as conn:
            row = await self._live(conn, file_id)
        key = row["storage_key"]
        path = self.rt.blobs.local_path(key)
        if path is not None and not path.is_file():
            raise NotFound("no such file")
        return Download(row["name"], row["size"], row["content_type"], path, key, self.rt.blobs)

    async def _live(self, conn: Any, file_id: str) -> Row:
        row = await file_store.get_file(conn, file_id) if len(file_id) <= 64 else None
        # A deleted chat (its enrollment deleted) takes its files along, before the sweep.
        if row is None or row["deleted_at"] is not None or not row["chat_exists"]:
            raise NotFound("no such file")
        return row
