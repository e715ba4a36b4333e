"""The blob store's one interface, on a local folder and on S3 (moto's server): streaming
writes with a cap that keeps nothing when passed, reads in chunks, deletion, and keys that
can never name a path."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store.blob_s3 import PART_BYTES, S3Blobs
from store.blobs import BlobMissing, BlobStore, BlobTooLarge, LocalBlobs, new_key


@pytest.fixture(params=["local", "s3"])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    store: BlobStore
    if request.param == "s3":
        section = request.getfixturevalue("s3_bucket")
        store = S3Blobs(
            section["bucket"],
            endpoint_url=section["endpoint_url"],
            region=section["region"],
            prefix=section["prefix"],
        )
    else:
        store = LocalBlobs(tmp_path / "files")
    await store.start()
    yield store
    await store.close()


async def pieces(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def read_all(store: BlobStore, key: str) -> bytes:
    blob = await store.open(key)
    out = bytearray()
    async for chunk in blob.chunks:
        out += chunk
    assert len(out) == blob.size
    return bytes(out)


async def keys(store: BlobStore) -> list[str]:
    if isinstance(store, LocalBlobs):
        return sorted(p.name for p in store.root.rglob("*") if p.is_file())
    assert isinstance(store, S3Blobs)
    listed = await store.client.list_objects_v2(Bucket=store.bucket)
    pending = await store.client.list_multipart_uploads(Bucket=store.bucket)
    return sorted(
        [o["Key"].removeprefix(store.prefix) for o in listed.get("Contents", [])]
        + [u["Key"] for u in pending.get("Uploads", [])]
    )


async def test_write_read_delete(blobs: BlobStore) -> None:
    key = new_key()
    assert await blobs.write(key, pieces(b"hello ", b"world"), max_bytes=11) == 11
    assert await read_all(blobs, key) == b"hello world"
    assert await keys(blobs) == [key]
    await blobs.delete(key)
    await blobs.delete(key)  # twice is fine
    with pytest.raises(BlobMissing):
        await blobs.open(key)
    assert await keys(blobs) == []


async def test_past_the_cap_reading_stops_and_nothing_is_kept(blobs: BlobStore) -> None:
    read: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        for i in range(1000):
            read.append(i)
            yield b"x" * 1024

    with pytest.raises(BlobTooLarge):
        await blobs.write(new_key(), endless(), max_bytes=10 * 1024)
    assert len(read) == 11  # stopped at the first chunk past the cap
    assert await keys(blobs) == []


async def test_a_source_that_breaks_keeps_nothing(blobs: BlobStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * 1024
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        await blobs.write(new_key(), broken(), max_bytes=1 << 20)
    assert await keys(blobs) == []


async def test_large_files_stream_in_parts(blobs: BlobStore) -> None:
    """More than one S3 part (a multipart upload), and read back in chunks."""
    key = new_key()
    chunk = bytes(range(256)) * 1024  # 256 KiB
    count = PART_BYTES * 2 // len(chunk) + 3
    written = await blobs.write(key, pieces(*[chunk] * count), max_bytes=len(chunk) * count)
    assert written == len(chunk) * count
    blob = await blobs.open(key)
    assert blob.size == written
    got = bytearray()
    reads = 0
    async for piece in blob.chunks:
        got += piece
        reads += 1
    assert got == chunk * count
    assert reads > 1  # handed back in chunks, not whole
    # A multipart upload that passes the cap is aborted: nothing stays, not even parts.
    with pytest.raises(BlobTooLarge):
        await blobs.write(new_key(), pieces(*[chunk] * count), max_bytes=PART_BYTES + 1)
    assert await keys(blobs) == [key]


@pytest.mark.parametrize("key", ["../escape", "a/b", "", "short", "x" * 65, "name.png"])
async def test_keys_that_could_name_a_path_are_refused(blobs: BlobStore, key: str) -> None:
    with pytest.raises(ValueError):
        await blobs.write(key, pieces(b"x"), max_bytes=10)
    with pytest.raises(ValueError):
        await blobs.open(key)


async def test_partial_writes_left_by_a_crash_are_dropped_later(tmp_path: Path) -> None:
    store = LocalBlobs(tmp_path / "files")
    await store.start()
    partial = store.incoming / "deadbeefdeadbeefdeadbeefdeadbeef.1234"
    partial.write_bytes(b"half a file")
    assert await store.drop_partial(older_than_s=3600) == 0  # fresh: maybe still being written
    old = time.time() - 7200
    os.utime(partial, (old, old))
    assert await store.drop_partial(older_than_s=3600) == 1
    assert not partial.exists()
