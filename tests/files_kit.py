"""Uploading files and looking into the blob store, for the tests of files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from handlers.keys import SERVICES
from store.blob_s3 import S3Blobs
from store.blobs import LocalBlobs
from tests.world import World

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def form(name: str | None, data: bytes, content_type: str = "image/png") -> aiohttp.FormData:
    # As a browser sends it: the file name raw (UTF-8), not percent-encoded.
    body = aiohttp.FormData(quote_fields=False)
    body.add_field("file", data, filename=name, content_type=content_type)
    return body


async def upload(
    world: World,
    user: str,
    chat_id: int,
    name: str = "homework.png",
    data: bytes = PNG,
    content_type: str = "image/png",
) -> dict[str, Any]:
    resp = await world.client.post(
        f"/api/v1/chats/{chat_id}/files",
        data=form(name, data, content_type),
        headers=world.auth(user),
    )
    assert resp.status == 201, await resp.text()
    return (await resp.json())["file"]


async def stored_blobs(client: TestClient) -> list[str]:
    """The keys of every blob in the app's store (partial writes included)."""
    blobs = client.app[SERVICES].rt.blobs
    if isinstance(blobs, LocalBlobs):
        if not blobs.root.exists():
            return []
        return sorted(str(p.relative_to(blobs.root)) for p in blobs.root.rglob("*") if p.is_file())
    assert isinstance(blobs, S3Blobs)
    answer = await blobs.client.list_objects_v2(Bucket=blobs.bucket)
    pending = await blobs.client.list_multipart_uploads(Bucket=blobs.bucket)
    keys = [o["Key"] for o in answer.get("Contents", [])]
    return sorted(keys + [f"(multipart) {u['Key']}" for u in pending.get("Uploads", [])])


def storage_sections(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """The ``files`` config section of a test run on ``kind`` storage."""
    if kind == "s3":
        return {"storage": "s3", "s3": request.getfixturevalue("s3_bucket")}
    return {"storage": "local", "path": str(tmp_path / "files")}
