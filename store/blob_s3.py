"""The blob store in an S3-compatible bucket (AWS, MinIO, Yandex Object Storage), through
aiobotocore, so that several instances share files.

Credentials come from the environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, or
whatever else botocore's default chain finds), never from config.yaml.

A write is streamed: bytes are gathered into parts of ``PART_BYTES`` (S3's smallest part is
5 MiB) and sent as a multipart upload; a file smaller than one part is one PUT. Past the cap,
or on any failure, the multipart upload is aborted, so nothing is kept. A read streams the
object's body in chunks.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from store.blobs import CHUNK_BYTES, BlobMissing, BlobReader, BlobStore, BlobTooLarge, check_key

PART_BYTES = 5 * 1024 * 1024
_MISSING = {"NoSuchKey", "404", "NotFound"}


class S3Blobs(BlobStore):
    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        prefix: str = "",
    ):
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.region = region
        self.prefix = prefix
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None

    @classmethod
    def from_config(cls, s3: Any) -> S3Blobs:
        return cls(s3.bucket, endpoint_url=s3.endpoint_url, region=s3.region, prefix=s3.prefix)

    async def start(self) -> None:
        if self._client is not None:
            return
        stack = contextlib.AsyncExitStack()
        self._client = await stack.enter_async_context(
            get_session().create_client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region
            )
        )
        self._stack = stack

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = None
        self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("the S3 blob store is not started")
        return self._client

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def write(self, key: str, chunks: AsyncIterable[bytes], max_bytes: int) -> int:
        name = self._key(key)
        buffer = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise BlobTooLarge(f"over {max_bytes} bytes")
                buffer += chunk
                if len(buffer) >= PART_BYTES:
                    if upload_id is None:
                        started = await self.client.create_multipart_upload(
                            Bucket=self.bucket, Key=name
                        )
                        upload_id = started["UploadId"]
                    parts.append(await self._part(name, upload_id, len(parts) + 1, buffer))
                    buffer = bytearray()
            if upload_id is None:
                await self.client.put_object(Bucket=self.bucket, Key=name, Body=bytes(buffer))
                return size
            if buffer:
                parts.append(await self._part(name, upload_id, len(parts) + 1, buffer))
            await self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=name,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return size
        except BaseException:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=name, UploadId=upload_id
                    )
            raise

    async def _part(self, name: str, upload_id: str, number: int, data: bytearray) -> dict:
        answer = await self.client.upload_part(
            Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=bytes(data)
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    async def open(self, key: str) -> BlobReader:
        try:
            answer = await self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                raise BlobMissing(key) from None
            raise
        body = answer["Body"]

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while block := await body.read(CHUNK_BYTES):
                    yield block
            finally:
                body.close()

        async def close() -> None:
            body.close()

        return BlobReader(int(answer["ContentLength"]), chunks(), close)

    async def delete(self, key: str) -> None:
        # S3 answers a delete of a missing key with success too.
        await self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
