"""HTTP/1.1 over a bare socket, for what no well-behaved client sends: header bytes that are not
UTF-8, bodies that stop half way, connections that never send a request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names; the last line of a repeated name wins
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


@contextlib.asynccontextmanager
async def connection(
    host: str, port: int
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def request_bytes(
    method: str, target: str, headers: list[tuple[str, bytes]], body: bytes = b""
) -> bytes:
    """A request head (header values as raw bytes) and body; the body's declared length is
    whatever ``headers`` says (it may promise more than is sent)."""
    lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: test"]
    lines += [name.encode() + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def read_response(reader: asyncio.StreamReader) -> RawResponse:
    """One response with a Content-Length (all the service sends) or up to EOF."""
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif int(status_line.split()[1]) == 101:
        body = b""
    else:
        body = await reader.read()
    return RawResponse(int(status_line.split()[1]), headers, body)


async def send(host: str, port: int, data: bytes) -> RawResponse:
    async with connection(host, port) as (reader, writer):
        writer.write(data)
        await writer.drain()
        return await read_response(reader)


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection (EOF or reset), after any bytes it sent."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    return True


async def websocket_close_code(reader: asyncio.StreamReader) -> int:
    """The code of the first frame after a 101, which must be a close frame (unmasked, as
    a server sends it)."""
    first, length = await reader.readexactly(2)
    assert first & 0x0F == 0x8, f"expected a close frame, got opcode {first & 0x0F}"
    payload = await reader.readexactly(length & 0x7F)
    return int.from_bytes(payload[:2], "big")
