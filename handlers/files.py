"""Files (docs/api.md, "Files"): the multipart upload, a file's fresh link, and the download
a signed link names.

The upload is read part by part and its file streamed to the blob store as it arrives; the
body must be one part named ``file`` and nothing after it. The whole body must arrive within
``server.body_timeout_s`` (else 408, and the connection is closed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import quote

from aiohttp import BodyPartReader, MultipartReader, hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from typing_extensions import TypedDict

from bridge.errors import InvalidRequest, RequestTimeout
from bridge.forum.files import CHUNK, UPLOAD_CHUNK, Download, is_inline
from bridge.forum.views import FileObj
from handlers.auth import principal, user_only
from handlers.body import path_int
from handlers.errors import closing_error_response
from handlers.keys import SERVICES
from handlers.openapi import PUBLIC, USER, Multipart, Operation, Param, Raw, documented
from handlers.responses import json_response

routes = web.RouteTableDef()
TAGS = ("files",)


class FileAnswer(TypedDict):
    file: FileObj


# What a broken or cut-off multipart body raises while it is read.
_BROKEN_BODY = (ValueError, AssertionError, HttpProcessingError, ConnectionError, OSError)
_BROKEN = "the body must be multipart/form-data with one complete part named file"
# Room for the multipart framing around the file (boundaries, part headers, a long name).
MULTIPART_SLACK = 16 * 1024


@routes.post("/api/v1/chats/{chat_id}/files")
@documented(
    Operation(
        "Upload a file into a chat, to attach to a message with file_ids",
        USER,
        {201: FileAnswer},
        body=Multipart(("file",), "one part named file, its filename the file's name"),
        errors=(403, 404, 429),
        tags=TAGS,
    )
)
@user_only
async def upload_file(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    who = principal(request)
    access = await services.files.access_for_upload(who, path_int(request, "chat_id"))
    max_bytes = services.config.files.max_bytes
    if (request.content_length or 0) > max_bytes + MULTIPART_SLACK:
        # Said so up front: refused without reading, and the connection closed rather than
        # drained of a body nobody wants.
        return closing_error_response(
            request, 413, "payload_too_large", f"a file may be at most {max_bytes} bytes"
        )
    timeout = services.config.server.body_timeout_s
    try:
        async with asyncio.timeout(timeout):
            reader = await _multipart(request)
            part = await _file_part(reader)
            file = await services.files.upload(
                who,
                access,
                part.filename,
                part.headers.get(hdrs.CONTENT_TYPE),
                _chunks(reader, part),
            )
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None
    return json_response({"file": file}, status=201)


async def _multipart(request: web.Request) -> MultipartReader:
    if request.content_type != "multipart/form-data":
        raise InvalidRequest(_BROKEN)
    try:
        return await request.multipart()
    except _BROKEN_BODY:
        raise InvalidRequest(_BROKEN) from None


async def _file_part(reader: MultipartReader) -> BodyPartReader:
    try:
        part = await reader.next()
    except _BROKEN_BODY:
        raise InvalidRequest(_BROKEN) from None
    if not isinstance(part, BodyPartReader) or part.name != "file":
        raise InvalidRequest("the body must hold one part named file")
    return part


async def _chunks(reader: MultipartReader, part: BodyPartReader) -> AsyncIterator[bytes]:
    """The file's bytes as they arrive; at the end, nothing may follow the part. Raises
    InvalidRequest for a broken or cut-off body (the blob store then keeps nothing)."""
    try:
        while chunk := await part.read_chunk(UPLOAD_CHUNK):
            yield chunk
        if await reader.next() is not None:
            raise InvalidRequest("the body must hold only the part named file")
    except _BROKEN_BODY:
        raise InvalidRequest(_BROKEN) from None


@routes.get("/api/v1/files/{file_id}")
@documented(
    Operation("A file, with a fresh signed link", USER, {200: FileAnswer}, errors=(404,), tags=TAGS)
)
@user_only
async def get_file(request: web.Request) -> web.Response:
    file = await request.app[SERVICES].files.describe(
        principal(request), request.match_info["file_id"]
    )
    return json_response({"file": file})


@routes.get("/api/v1/files/{file_id}/content")
@documented(
    Operation(
        "A file's bytes, through the signed link a file object gives (no token)",
        PUBLIC,
        {200: Raw(("application/octet-stream",), "the file, with its own Content-Type")},
        query=(
            Param("expires", {"type": "string"}, "from the signed link", required=True),
            Param("signature", {"type": "string"}, "from the signed link", required=True),
        ),
        errors=(403, 404),
        tags=TAGS,
    )
)
async def download_file(request: web.Request) -> web.StreamResponse:
    """The bytes a signed link names: no Authorization header (an ``<img src>`` works)."""
    services = request.app[SERVICES]
    file = await services.files.for_download(
        request.match_info["file_id"],
        request.query.get("expires", ""),
        request.query.get("signature", ""),
    )
    headers = download_headers(file)
    if file.path is not None:
        # sendfile: the kernel copies the bytes, the process never holds them.
        return web.FileResponse(file.path, chunk_size=CHUNK, headers=headers)
    blob = await file.open()
    response = web.StreamResponse(headers=headers)
    response.content_length = blob.size
    try:
        await response.prepare(request)
        async for chunk in blob.chunks:
            await response.write(chunk)
        await response.write_eof()
    finally:
        await blob.close()
    return response


def download_headers(file: Download) -> dict[str, str]:
    """Inline only for the four image types; everything else, SVG and HTML included, as an
    attachment. Never sniffed, never run as a page."""
    disposition = "inline" if is_inline(file.content_type) else "attachment"
    ascii_name = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\%' else "_" for c in file.name)
    return {
        hdrs.CONTENT_TYPE: file.content_type,
        hdrs.CONTENT_DISPOSITION: (
            f"{disposition}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(file.name)}"
        ),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Referrer-Policy": "no-referrer",
        hdrs.CACHE_CONTROL: "private, max-age=300",
    }


def setup(app: web.Application) -> None:
    app.add_routes(routes)
