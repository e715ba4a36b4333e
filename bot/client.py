"""A thin async client of the Pachca API (its base URL is the config's ``pachca.api_url``).

It sends one HTTP request per call and never retries: POSTs are not idempotent, so whether and
when to retry is the caller's decision, informed by `PachcaError.retryable` and `.retry_after`.
Every failure, including a garbled body, surfaces as a `PachcaError`.

A hostile or broken server gets no further than a failed call: an answer is read as a stream
and abandoned past `MAX_RESPONSE_BYTES` (never held whole), a whole call is bounded by the
timeout, and `Retry-After` is capped at `MAX_RETRY_AFTER_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import secrets
import time
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from bot.models import (
    AddMembersRequest,
    DataEnvelope,
    MessageCreateFields,
    MessageCreateRequest,
    MessageFileFields,
    MessageUpdateFields,
    MessageUpdateRequest,
    PachcaMessage,
    PachcaThread,
    ReactionRequest,
    UploadParams,
    WebhookEventPage,
    WebhookEventsResponse,
)

M = TypeVar("M", bound=BaseModel)

_REDACTED = "***"
# Pachca's API answers are small JSON documents; more than this is a broken or hostile server.
# A file download (a later feature) reads with a cap of its own: see `read_capped`.
MAX_RESPONSE_BYTES = 2 * 1024 * 1024
# A Retry-After beyond this is not believed: one chat must not wait for ever.
MAX_RETRY_AFTER_S = 3600.0
_CHUNK = 64 * 1024


class PachcaError(Exception):
    """A failed Pachca call.

    `status` is None when no response arrived (timeout, connection error). `codes`/`messages`
    come from Pachca's ApiError (`{"errors": [{"code", "message", ...}]}`) or OAuthError
    (`{"error", "error_description"}`) body, empty when the body was not one of those.
    """

    def __init__(
        self,
        description: str,
        *,
        method: str = "",
        path: str = "",
        status: int | None = None,
        codes: list[str] | None = None,
        messages: list[str] | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.codes = codes or []
        self.messages = messages or []
        self.retry_after = retry_after
        super().__init__(f"{method} {path}: {description}" if method else description)

    @property
    def retryable(self) -> bool:
        """Whether the failure is transient; not whether repeating the request is safe."""
        if self.status is None:
            return True
        return self.status == 429 or self.status >= 500


class PachcaTimeout(PachcaError):
    """No response in time. The request may still have been applied by Pachca."""


class PachcaConnectionError(PachcaError):
    """The connection failed or broke. The request may have been applied if it was sent."""


class PachcaResponseTooLarge(PachcaError):
    """The answer was longer than the cap; reading stopped there."""

    @property
    def retryable(self) -> bool:
        # Whatever the status: a proxy's or Pachca's passing fault as far as we can tell, and
        # the outbox's attempts bound how often it is tried.
        return True


class PachcaBadResponse(PachcaError):
    """A 2xx answer whose body is not the documented shape."""

    def __init__(self, description: str, *, transient: bool, **kwargs: Any) -> None:
        super().__init__(description, **kwargs)
        self.transient = transient

    @property
    def retryable(self) -> bool:
        # Non-JSON (a proxy's page) is a passing fault; well-formed JSON of the wrong shape means
        # the API changed, and repeating the call will not fix that.
        return self.transient


class PachcaClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._token = token
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                # Compressed answers are decoded here under the cap (see read_capped); asking
                # for none keeps the common case a plain copy.
                "Accept-Encoding": "identity",
            },
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )
        # Files go to and come from the bucket's presigned addresses: never with the token.
        self._files = httpx.AsyncClient(
            headers={"Accept-Encoding": "identity"},
            timeout=httpx.Timeout(timeout),
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"PachcaClient(base_url={str(self._http.base_url)!r})"

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._files.aclose()

    async def __aenter__(self) -> PachcaClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- messages -------------------------------------------------------------------------

    async def create_message(
        self,
        *,
        entity_type: str,
        entity_id: int,
        content: str,
        parent_message_id: int | None = None,
        display_name: str | None = None,
        display_avatar_url: str | None = None,
        skip_invite_mentions: bool | None = None,
        files: list[MessageFileFields] | None = None,
    ) -> PachcaMessage:
        """POST /messages. `display_*` (max 255 chars) are honoured for a bot token only.
        `files`: uploaded files (`create_upload`, `upload_file`) the message carries.

        `skip_invite_mentions=True` stops Pachca from adding @mentioned users to a thread.
        """
        body = MessageCreateRequest(
            message=MessageCreateFields(
                entity_type=entity_type,
                entity_id=entity_id,
                content=content,
                parent_message_id=parent_message_id,
                display_name=display_name,
                display_avatar_url=display_avatar_url,
                skip_invite_mentions=skip_invite_mentions,
                files=files or None,
            )
        )
        envelope = await self._call("POST", "/messages", DataEnvelope[PachcaMessage], body=body)
        return envelope.data

    async def update_message(
        self,
        message_id: int,
        content: str,
        *,
        display_name: str | None = None,
        display_avatar_url: str | None = None,
    ) -> PachcaMessage:
        """PUT /messages/{id}."""
        body = MessageUpdateRequest(
            message=MessageUpdateFields(
                content=content, display_name=display_name, display_avatar_url=display_avatar_url
            )
        )
        path = f"/messages/{int(message_id)}"
        envelope = await self._call("PUT", path, DataEnvelope[PachcaMessage], body=body)
        return envelope.data

    async def delete_message(self, message_id: int) -> None:
        await self._send("DELETE", f"/messages/{int(message_id)}")

    async def get_message(self, message_id: int) -> PachcaMessage:
        path = f"/messages/{int(message_id)}"
        return (await self._call("GET", path, DataEnvelope[PachcaMessage])).data

    # --- files ----------------------------------------------------------------------------

    async def create_upload(self) -> UploadParams:
        """POST /uploads: fresh parameters for one direct upload (they expire)."""
        response, content = await self._send("POST", "/uploads")
        try:
            return UploadParams.from_answer(json.loads(content))
        except (json.JSONDecodeError, UnicodeDecodeError, ValidationError, AttributeError):
            raise PachcaBadResponse(
                f"HTTP {response.status_code} with an unexpected upload answer",
                transient=False,
                method="POST",
                path="/uploads",
                status=response.status_code,
            ) from None

    async def upload_file(
        self,
        params: UploadParams,
        *,
        name: str,
        content_type: str,
        size: int,
        chunks: AsyncIterable[bytes],
    ) -> str:
        """The multipart POST to `direct_url`: every field as received, then the file as the
        part `file`, last, streamed from ``chunks`` (``size`` bytes). The key the file got.
        An expired signature answers 403: ask `create_upload` again."""
        fields = params.form_fields(name)
        boundary = secrets.token_hex(16)
        head, tail = multipart_frame(boundary, fields, name, content_type)

        async def body() -> AsyncIterator[bytes]:
            yield head
            async for chunk in chunks:
                yield chunk
            yield tail

        request = self._files.build_request(
            "POST",
            params.direct_url,
            content=body(),
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(tail)),
            },
        )
        # Large files take longer than one API call: the clock allows a slow 256 KiB/s.
        await self._exchange(request, "POST", "/direct_url", self._timeout + size / 262_144)
        return dict(fields)["key"]

    @contextlib.asynccontextmanager
    async def open_file(self, url: str) -> AsyncIterator[FileDownload]:
        """GET a file's presigned link (no token): its declared size and its bytes as they
        arrive. Failures are PachcaErrors, while opening and while reading alike; each read
        waits at most the timeout, so a link that hangs fails."""
        path = "/(file link)"
        request = self._files.build_request("GET", url)
        try:
            response = await self._files.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise PachcaTimeout(
                f"timed out ({type(exc).__name__})", method="GET", path=path
            ) from None
        except httpx.RequestError as exc:
            raise PachcaConnectionError(
                f"connection failed ({type(exc).__name__})", method="GET", path=path
            ) from None
        try:
            if not response.is_success:
                content = await read_capped(response, MAX_RESPONSE_BYTES)
                raise self._error(response, content or b"", "GET", path)
            declared = response.headers.get("Content-Length", "")

            async def chunks() -> AsyncIterator[bytes]:
                try:
                    async for chunk in response.aiter_raw(_CHUNK):
                        yield chunk
                except httpx.TimeoutException as exc:
                    raise PachcaTimeout(
                        f"timed out ({type(exc).__name__})", method="GET", path=path
                    ) from None
                except httpx.RequestError as exc:
                    raise PachcaConnectionError(
                        f"connection failed ({type(exc).__name__})", method="GET", path=path
                    ) from None

            yield FileDownload(int(declared) if declared.isdigit() else None, chunks())
        finally:
            await response.aclose()

    # --- threads and members --------------------------------------------------------------

    async def create_thread(self, message_id: int) -> PachcaThread:
        """POST /messages/{id}/thread; Pachca returns the existing thread if there is one."""
        path = f"/messages/{int(message_id)}/thread"
        return (await self._call("POST", path, DataEnvelope[PachcaThread])).data

    async def add_chat_members(
        self, chat_id: int, member_ids: list[int], *, silent: bool = True
    ) -> None:
        """POST /chats/{id}/members; for a thread pass `thread.chat_id`, not `thread.id`."""
        body = AddMembersRequest(member_ids=member_ids, silent=silent)
        await self._send("POST", f"/chats/{int(chat_id)}/members", body=body)

    async def remove_chat_member(self, chat_id: int, user_id: int) -> None:
        """DELETE /chats/{id}/members/{user_id}; for a thread pass `thread.chat_id`. The chat's
        owner cannot be removed."""
        await self._send("DELETE", f"/chats/{int(chat_id)}/members/{int(user_id)}")

    # --- reactions ------------------------------------------------------------------------

    async def add_reaction(self, message_id: int, code: str) -> None:
        """POST /messages/{id}/reactions: the caller's reaction; one already set stays as it is."""
        body = ReactionRequest(code=code)
        await self._send("POST", f"/messages/{int(message_id)}/reactions", body=body)

    async def remove_reaction(self, message_id: int, code: str) -> None:
        """DELETE /messages/{id}/reactions?code=...: the caller's own reaction."""
        path = f"/messages/{int(message_id)}/reactions"
        await self._send("DELETE", path, params={"code": code})

    # --- webhook history ------------------------------------------------------------------

    async def list_webhook_events(
        self, *, limit: int = 50, cursor: str | None = None
    ) -> WebhookEventPage:
        """GET /webhooks/events: one page (limit 1..50) of saved webhook events."""
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        page = await self._call("GET", "/webhooks/events", WebhookEventsResponse, params=params)
        paginate = page.meta.paginate
        # has_next is optional in the spec; without it a full page is the only hint of more.
        has_next = paginate.has_next if paginate.has_next is not None else len(page.data) >= limit
        return WebhookEventPage(page.data, next_cursor=paginate.next_page, has_next=has_next)

    async def delete_webhook_event(self, event_id: str) -> None:
        await self._send("DELETE", f"/webhooks/events/{quote(str(event_id), safe='')}")

    # --- plumbing -------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        model: type[M],
        *,
        body: BaseModel | None = None,
        params: dict[str, str | int] | None = None,
    ) -> M:
        response, content = await self._send(method, path, body=body, params=params)
        try:
            raw = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise PachcaBadResponse(
                f"HTTP {response.status_code} with a non-JSON body",
                transient=True,
                method=method,
                path=path,
                status=response.status_code,
            ) from None
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            # from None and no field values in the text: they may hold message content.
            raise PachcaBadResponse(
                f"HTTP {response.status_code} with an unexpected body "
                f"({exc.error_count()} validation errors)",
                transient=False,
                method=method,
                path=path,
                status=response.status_code,
            ) from None

    async def _exchange(
        self, request: httpx.Request, method: str, path: str, within_s: float
    ) -> httpx.Response:
        """Send a prepared request (the file client's); a 2xx answer, else a PachcaError."""
        response, content = await self._answer(self._files, request, method, path, within_s)
        if not response.is_success:
            raise self._error(response, content or b"", method, path)
        return response

    async def _send(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        params: dict[str, str | int] | None = None,
        max_body_bytes: int = MAX_RESPONSE_BYTES,
    ) -> tuple[httpx.Response, bytes]:
        """One call: the response (its headers) and its body, read up to ``max_body_bytes``."""
        # exclude_none: optional fields we do not set must be absent, not null, for the spec.
        payload = body.model_dump(exclude_none=True) if body is not None else None
        request = self._http.build_request(method, path, json=payload, params=params)
        response, content = await self._answer(
            self._http, request, method, path, self._timeout, max_body_bytes
        )
        if response.is_success:
            if content is None:
                raise PachcaResponseTooLarge(
                    f"HTTP {response.status_code} with a body over {max_body_bytes} bytes",
                    method=method,
                    path=path,
                    status=response.status_code,
                )
            return response, content
        # An oversized error body is dropped: the status still says what happened.
        raise self._error(response, content or b"", method, path)

    async def _answer(
        self,
        http: httpx.AsyncClient,
        request: httpx.Request,
        method: str,
        path: str,
        within_s: float,
        max_body_bytes: int = MAX_RESPONSE_BYTES,
    ) -> tuple[httpx.Response, bytes | None]:
        """Send ``request`` and read its body up to ``max_body_bytes`` (None past it); every
        failure to get an answer becomes the PachcaError that says which."""
        try:
            # httpx times each read; this bounds the whole call, so a body that trickles in
            # a byte at a time cannot hold the caller either.
            async with asyncio.timeout(within_s):
                response = await http.send(request, stream=True)
                try:
                    content = await read_capped(response, max_body_bytes)
                finally:
                    await response.aclose()
        except TimeoutError:
            raise PachcaTimeout("timed out (the whole call)", method=method, path=path) from None
        except (zlib.error, UnreadableBody):
            raise PachcaBadResponse(
                "a body in an encoding that cannot be read",
                transient=True,
                method=method,
                path=path,
            ) from None
        except httpx.TimeoutException as exc:
            raise PachcaTimeout(
                f"timed out ({type(exc).__name__})", method=method, path=path
            ) from None
        except httpx.RequestError as exc:
            # from None: the text we keep is enough to decide, and a chained httpx exception
            # would drag the request (and its headers) into tracebacks.
            raise PachcaConnectionError(
                self._redact(f"connection failed ({type(exc).__name__}: {exc})"),
                method=method,
                path=path,
            ) from None
        return response, content

    def _error(
        self, response: httpx.Response, content: bytes, method: str, path: str
    ) -> PachcaError:
        codes: list[str] = []
        messages: list[str] = []
        try:
            body = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None  # e.g. a proxy's HTML error page
        if isinstance(body, dict):
            if isinstance(body.get("errors"), list):  # ApiError
                for item in body["errors"]:
                    if isinstance(item, dict):
                        codes += [str(item["code"])] if item.get("code") is not None else []
                        messages += [str(item["message"])] if item.get("message") else []
            elif isinstance(body.get("error"), str):  # OAuthError
                codes.append(body["error"])
                if isinstance(body.get("error_description"), str):
                    messages.append(body["error_description"])
        messages = [self._redact(m) for m in messages]
        summary = f"HTTP {response.status_code}"
        if codes:
            summary += f" [{', '.join(codes)}]"
        summary += f": {'; '.join(messages) or response.reason_phrase}"
        return PachcaError(
            summary,
            method=method,
            path=path,
            status=response.status_code,
            codes=codes,
            messages=messages,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    def _redact(self, text: str) -> str:
        # Belt and braces: nothing we build should contain the token, but error texts echo
        # server and library messages we do not control.
        # A very short token (only ever a test's) would match inside ordinary words.
        return text.replace(self._token, _REDACTED) if len(self._token) >= 8 else text


@dataclass(frozen=True, slots=True)
class FileDownload:
    size: int | None  # as the server declared it
    chunks: AsyncIterator[bytes]


def multipart_frame(
    boundary: str, fields: list[tuple[str, str]], filename: str, content_type: str
) -> tuple[bytes, bytes]:
    """What goes before and after a file's bytes in a multipart/form-data body: the text
    fields, then the head of the part `file` (the name as a browser writes it: raw UTF-8,
    with quote, CR and LF escaped); the closing boundary."""
    out = bytearray()
    for name, value in fields:
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += value.encode() + b"\r\n"
    quoted = filename.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
    out += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{quoted}"\r\nContent-Type: {content_type}\r\n\r\n'
    ).encode()
    return bytes(out), f"\r\n--{boundary}--\r\n".encode()


class UnreadableBody(Exception):
    """A Content-Encoding this client does not decode."""


async def read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The body of a streamed response, or None once it proves longer than ``limit`` bytes:
    reading stops there, so no more than ``limit`` (plus one network chunk) is ever held.

    The cap applies to the decoded body too: gzip and deflate are decompressed here, in
    bounded steps, so a small compressed bomb cannot expand past it either.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        return None  # said so up front: nothing is read
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    chunks: list[bytes] = []
    size = 0
    async for raw in response.aiter_raw(_CHUNK):
        pieces = [raw] if decoder is None else _inflate(decoder, raw, limit - size + 1)
        for piece in pieces:
            size += len(piece)
            if size > limit:
                return None
            chunks.append(piece)
    if decoder is not None:
        tail = decoder.flush(limit - size + 1)
        if size + len(tail) > limit:
            return None
        chunks.append(tail)
    return b"".join(chunks)


def _decoder(encoding: str) -> zlib._Decompress | None:
    encoding = encoding.strip().lower()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    if encoding in ("", "identity"):
        return None
    # We asked for identity; an encoding we cannot bound is not read as if it were plain.
    raise UnreadableBody(f"unsupported Content-Encoding {encoding!r}")


def _inflate(decoder: zlib._Decompress, data: bytes, room: int) -> list[bytes]:
    """Decompress ``data`` in steps of at most ``room`` bytes; stops once past it."""
    out: list[bytes] = []
    produced = 0
    while data and produced <= room:
        piece = decoder.decompress(data, max(room - produced, 1))
        out.append(piece)
        produced += len(piece)
        data = decoder.unconsumed_tail
    return out


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP-date, at most
    `MAX_RETRY_AFTER_S`; None if bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    # An absurd wait (1e12 s) would block a chat for good and overflow a datetime.
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)
