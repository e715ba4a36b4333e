"""What the sandbox records of each request, and the failures a test can script.

Each scripted fault applies to the next `n` requests matching `method`/`path` (any when None;
`path` is an fnmatch pattern below the API prefix, such as "/messages/*", or "/direct_url" for
direct uploads, or "/attaches/*" for file downloads), after the token check. The failed request
is not applied to the state, except with hang_next(after_handling=True). Faults are used in the
order they were added.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web

Json = dict[str, Any]
MalformedKind = Literal["html_502", "garbage_200", "wrong_shape_200"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- records --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FormPart:
    """One part of a multipart request, as sent (a file part with its name and size)."""

    name: str
    value: str | None  # a text field's value; None for a file
    filename: str | None = None
    size: int | None = None  # bytes read of a file part


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # below the API prefix, e.g. "/messages/1001"; "/direct_url"; "/attaches/..."
    query: dict[str, str]
    json: Any  # the parsed body; None when there was none or it was not JSON
    body: bytes  # empty for a multipart request: see `form`
    headers: dict[str, str]
    at: float  # event-loop time, to check pacing (e.g. that Retry-After was honoured)
    form: list[FormPart] = field(default_factory=list)  # a multipart body's parts, in order


@dataclass(frozen=True)
class Violation:
    method: str
    path: str
    errors: list[str]
    body: Any


# --- answers --------------------------------------------------------------------------------


def now_iso() -> str:
    """Pachca's timestamp format, YYYY-MM-DDThh:mm:ss.sssZ (UTC)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def api_error(
    status: int,
    code: str,
    message: str,
    *,
    key: str = "base",
    headers: dict[str, str] | None = None,
) -> web.Response:
    item = {"key": key, "value": None, "message": message, "code": code, "payload": None}
    return web.json_response({"errors": [item]}, status=status, headers=headers)


def oauth_error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def data(obj: Any, status: int = 200) -> web.Response:
    return web.json_response({"data": obj}, status=status)


class SandboxError(ValueError):
    """A refused action: the answer Pachca gives (status, error code, field)."""

    def __init__(self, status: int, code: str, message: str, *, key: str = "base"):
        super().__init__(message)
        self.status = status
        self.code = code
        self.key = key

    def response(self) -> web.Response:
        if self.status in (401, 403):  # the spec answers these with OAuthError
            return oauth_error(self.status, self.code, str(self))
        return api_error(self.status, self.code, str(self), key=self.key)


# --- faults ---------------------------------------------------------------------------------


@dataclass
class Fault:
    remaining: int
    method: str | None
    path: str | None  # an fnmatch pattern below the prefix, e.g. "/messages*"
    respond: Callable[[], web.Response] | None = None  # answered instead of handling
    stream: Handler | None = None  # likewise, for an answer written piece by piece
    delay: float = 0.0
    delay_after_handling: bool = False
    gate: asyncio.Event | None = None  # handled only once this is set

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and (self.method is None or self.method == method)
            and (self.path is None or fnmatch.fnmatchcase(path, self.path))
        )


class FaultScript:
    """The scripting methods, and the waiting they need. Mixed into the sandbox."""

    _faults: list[Fault]
    _closing: asyncio.Event

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first scripted fault for this request, used up by one."""
        fault = next((f for f in self._faults if f.matches(method, path)), None)
        if fault is not None:
            fault.remaining -= 1
        return fault

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        def respond() -> web.Response:
            if status in (401, 403):  # the spec answers these with OAuthError
                return oauth_error(status, "forbidden", "Scripted failure")
            return api_error(status, "unhandled", "Scripted failure")

        self._faults.append(Fault(n, method, path, respond=respond))

    def rate_limit_next(
        self,
        n: int = 1,
        *,
        retry_after: float | str = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """429, code rate_limit, `Retry-After: retry_after` (a number, or any string)."""
        if isinstance(retry_after, float) and retry_after.is_integer():
            retry_after = int(retry_after)
        headers = {"Retry-After": str(retry_after)}

        def respond() -> web.Response:
            return api_error(429, "rate_limit", "Too many requests", headers=headers)

        self._faults.append(Fault(n, method, path, respond=respond))

    def hang_next(
        self,
        n: int = 1,
        *,
        seconds: float = 30.0,
        after_handling: bool = False,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Delay the answer. With `after_handling` the request is applied first and only the
        response is late: a client that times out does not know its message was created."""
        self._faults.append(
            Fault(n, method, path, delay=seconds, delay_after_handling=after_handling)
        )

    def hold_next(
        self, n: int = 1, *, method: str | None = None, path: str | None = None
    ) -> asyncio.Event:
        """Keep the next `n` matching requests waiting until the returned event is set, then
        handle them normally: a Pachca that is slow for exactly as long as a test needs."""
        gate = asyncio.Event()
        self._faults.append(Fault(n, method, path, gate=gate))
        return gate

    def malformed_next(
        self,
        n: int = 1,
        *,
        kind: MalformedKind = "html_502",
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """kind: "html_502" (a proxy's error page), "garbage_200" (200, body not JSON) or
        "wrong_shape_200" (200, JSON without the documented `data`)."""
        responses: dict[str, Callable[[], web.Response]] = {
            "html_502": lambda: web.Response(
                status=502,
                text="<html><body><h1>502 Bad Gateway</h1></body></html>",
                content_type="text/html",
            ),
            "garbage_200": lambda: web.Response(
                status=200, text='{"data": {"id": 1', content_type="application/json"
            ),
            "wrong_shape_200": lambda: web.json_response({"result": "ok"}),
        }
        self._faults.append(Fault(n, method, path, respond=responses[kind]))

    def huge_next(
        self,
        n: int = 1,
        *,
        size: int = 8 * 1024 * 1024,
        status: int = 200,
        document: Any = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer with `size` bytes, written in 64 KiB pieces with no Content-Length (so a
        client learns the size only by reading): a hostile server. The body is `document` as
        JSON (when given) padded with whitespace, so a client without a cap would take it for
        a good answer. The request is not applied."""
        head = json.dumps(document).encode() if document is not None else b""
        self._faults.append(
            Fault(n, method, path, stream=_streamer(status, "application/json", head, size))
        )

    def oversize_next(
        self, n: int = 1, *, size: int, method: str | None = "GET", path: str = "/attaches/*"
    ) -> None:
        """A file download that sends more than the file: its bytes, then zeros up to `size`
        bytes in all, chunked, with no Content-Length (a client learns the size only by
        reading, so it must count)."""

        async def stream(request: web.Request) -> web.StreamResponse:
            head = self.object_bytes(request.match_info.get("key", ""))
            return await _streamer(200, "application/octet-stream", head, size)(request)

        self._faults.append(Fault(n, method, path, stream=stream))

    def object_bytes(self, key: str) -> bytes:
        """The stored bytes of an uploaded object ("" for none); the sandbox overrides this."""
        return b""

    # --- waiting --------------------------------------------------------------------------

    async def sleep(self, seconds: float) -> None:
        """Sleep, cut short when the sandbox shuts down (so a test's teardown does not wait
        out a hang)."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), seconds)

    async def wait_for(self, gate: asyncio.Event) -> None:
        """Until ``gate`` is set or the sandbox shuts down."""
        waits = [asyncio.ensure_future(e.wait()) for e in (gate, self._closing)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def apply_fault(
        self, fault: Fault | None, request: web.Request
    ) -> web.StreamResponse | None:
        """Wait or answer as `fault` says, before handling; an answer replaces the handler's."""
        if fault is None:
            return None
        if fault.gate is not None:
            await self.wait_for(fault.gate)
        if not fault.delay_after_handling:
            await self.sleep(fault.delay)
        if fault.respond is not None:
            return fault.respond()
        if fault.stream is not None:
            return await fault.stream(request)
        return None


def _streamer(status: int, content_type: str, head: bytes, size: int) -> Handler:
    """A handler writing `head`, then padding up to `size` bytes, chunked, 64 KiB a piece."""
    pad = b" " if content_type == "application/json" else b"\0"

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(status=status)
        response.content_type = content_type
        response.enable_chunked_encoding()
        await response.prepare(request)
        piece = pad * 65536
        try:
            if head:
                await response.write(head)
            for _ in range(0, max(size - len(head), 0), len(piece)):
                await response.write(piece)
            await response.write_eof()
        except ConnectionError:
            pass  # the client stopped reading and left, as it should
        return response

    return stream
