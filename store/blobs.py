"""The blob store: where files' bytes live, behind one small interface.

Two kinds: ``LocalBlobs`` (a folder; the default) and ``S3Blobs`` (an S3-compatible bucket,
store/blob_s3.py, so that several instances share files). Both stream: ``write`` takes the
bytes as they arrive and stops reading the moment they pass the cap (nothing is kept then),
``open`` hands them back in chunks. Nothing holds a whole file in memory.

Keys are made by the bridge (``new_key``), never from a user's file name, and are checked
again here, so no key can reach outside the folder or the bucket's prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

CHUNK_BYTES = 256 * 1024
_KEY = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


class BlobTooLarge(Exception):
    """The bytes passed the cap; reading stopped there and nothing was kept."""


class BlobMissing(Exception):
    """No blob under that key."""


def new_key() -> str:
    """A fresh random key (also the file's id): 128 bits, hex."""
    return secrets.token_hex(16)


def check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError("not a blob key")
    return key


@dataclass(frozen=True, slots=True)
class BlobReader:
    """An open blob: its size, its bytes in chunks, and how to let it go early."""

    size: int
    chunks: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]


class BlobStore(ABC):
    async def start(self) -> None:  # noqa: B027 - most stores need nothing started
        """Open what the store needs (a client, a folder)."""

    async def close(self) -> None:  # noqa: B027
        """Let go of what ``start`` opened."""

    @abstractmethod
    async def write(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> int:
        """Store ``chunks`` under ``key``; the size written. BlobTooLarge once past
        ``max_bytes`` (reading stops there, and nothing is kept). Any other failure, the
        source's included, also keeps nothing and propagates."""

    @abstractmethod
    async def open(self, key: str) -> BlobReader:
        """The blob's bytes, in chunks; BlobMissing when there is none."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the blob; nothing happens when there is none."""

    def local_path(self, key: str) -> Path | None:
        """The file holding the blob, when the store is a folder (served with sendfile)."""
        return None

    async def drop_partial(self, older_than_s: float) -> int:
        """Remove what writes cut short by a crash left behind, older than this; how many.
        (S3 keeps an interrupted multipart upload out of sight: a bucket lifecycle rule
        aborts those, docs/operations.md.)"""
        return 0


class LocalBlobs(BlobStore):
    """A folder: ``<root>/<first two characters of the key>/<key>``. A write goes to a
    temporary file in ``<root>/.incoming`` and is renamed into place once complete, so a
    reader never sees half a file and a cut-off write leaves nothing behind."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.incoming = self.root / ".incoming"

    async def start(self) -> None:
        self.incoming.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        key = check_key(key)
        return self.root / key[:2] / key

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    async def write(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> int:
        final = self._path(key)
        self.incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = self.incoming / f"{key}.{secrets.token_hex(4)}"
        size = 0
        try:
            # Writes of a chunk land in the page cache: a blocking call too short to be
            # worth a thread hop per chunk.
            with partial.open("wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise BlobTooLarge(f"over {max_bytes} bytes")
                    out.write(chunk)
            final.parent.mkdir(exist_ok=True, mode=0o700)
            os.replace(partial, final)
        except BaseException:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise
        return size

    async def open(self, key: str) -> BlobReader:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise BlobMissing(key) from None
        size = os.fstat(handle.fileno()).st_size

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while block := await asyncio.to_thread(handle.read, CHUNK_BYTES):
                    yield block
            finally:
                handle.close()

        async def close() -> None:
            handle.close()

        return BlobReader(size, chunks(), close)

    async def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    async def drop_partial(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        dropped = 0
        if not self.incoming.is_dir():
            return 0
        for partial in self.incoming.iterdir():
            with contextlib.suppress(OSError):
                if partial.stat().st_mtime < cutoff:
                    partial.unlink()
                    dropped += 1
        return dropped


def make_blob_store(storage: str, path: str, s3: object) -> BlobStore:
    """The store ``files.storage`` names (``s3``: the ``files.s3`` settings)."""
    if storage == "s3":
        from store.blob_s3 import S3Blobs  # aiobotocore is loaded only when used

        return S3Blobs.from_config(s3)
    return LocalBlobs(path)
