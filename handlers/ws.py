"""The WebSocket feed, ``GET /api/v1/ws?token=<JWT>[&since=<event_id>]`` (docs/websocket.md).

The edge only: it upgrades, authenticates the connection, parses client frames and hands
everything else to the hub (bridge/feed/hub.py), which keeps the socket following its user.

Close codes:
- 1001: the server is shutting down.
- 1009: a client frame over 64 KiB.
- 1011: an unexpected server error; reconnect with ``since``.
- 4400: ``since`` is not a non-negative integer.
- 4401: missing, bad or expired token (or one living longer than ``auth.max_token_ttl_s``),
  or unknown user. Also while connected: at the token's ``exp``; within 2 s of the user's role
  change or deletion; and when a reload of ``auth.jwt_secret``, ``auth.jwt_audience`` or
  ``auth.max_token_ttl_s`` makes the token unacceptable. Reconnecting gets what the user may
  see now.
- 4408: the client fell behind (its send queue, ``feed.send_queue_size`` frames, filled up);
  reconnect with ``since`` = the last event_id received.
- 4429: the user already holds ``limits.sockets_per_user`` open sockets on this instance.

Client frames: ``{"type": "ping"}`` -> ``{"type": "pong"}``; ``{"type": "typing", "chat_id": N}``
relays typing to the chat's other connected participants. Anything else gets
``{"type": "error", "code", "message"}`` and the socket stays open.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Annotated, Literal

import orjson
import structlog
from aiohttp import WSMsgType, web
from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError

from bridge.auth import Principal
from bridge.errors import DomainError, Forbidden, InvalidRequest, Unauthorized
from bridge.feed.connection import CloseReason, Conn
from bridge.feed.hub import Hub
from handlers.cors import origin_allowed
from handlers.keys import SERVICES
from handlers.openapi import PUBLIC, Operation, Param, documented

log = structlog.get_logger("bridge.ws")

HEARTBEAT_S = 30.0  # server pings; a peer that does not answer within half of it is dropped
MAX_FRAME_BYTES = 64 * 1024  # larger client frames: aiohttp closes with 1009
CLOSE_TIMEOUT_S = 5.0  # how long a close waits for the client's closing handshake
PONG_FRAME = b'{"type":"pong"}'

CLOSE_GOING_AWAY = 1001
CLOSE_INTERNAL_ERROR = 1011
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_SLOW = 4408
CLOSE_TOO_MANY = 4429
# The hub closes sockets for domain reasons; the wire says it with these codes.
CLOSE_CODES: dict[CloseReason, int] = {
    CloseReason.GOING_AWAY: CLOSE_GOING_AWAY,
    CloseReason.UNAUTHORIZED: CLOSE_UNAUTHORIZED,
    CloseReason.TOO_SLOW: CLOSE_TOO_SLOW,
    CloseReason.TOO_MANY: CLOSE_TOO_MANY,
}


class _Frame(BaseModel):
    # Unknown fields are an error, as in REST bodies: a client relying on one would be
    # silently ignored otherwise.
    model_config = ConfigDict(extra="forbid", frozen=True)


class PingFrame(_Frame):
    type: Literal["ping"]


class TypingFrame(_Frame):
    type: Literal["typing"]
    chat_id: StrictInt


ClientFrame = TypeAdapter(Annotated[PingFrame | TypingFrame, Field(discriminator="type")])


def text_frame_header(length: int) -> bytes:
    """The header of an unmasked, final text frame of ``length`` bytes (RFC 6455 5.2)."""
    if length < 126:
        return bytes((0x81, length))
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class SocketConn(Conn):
    __slots__ = ("transport", "ws")

    def __init__(
        self,
        ws: web.WebSocketResponse,
        user: Principal,
        token: str,
        transport: asyncio.Transport | None,
    ):
        super().__init__(user, token)
        self.ws = ws
        self.transport = transport

    def write_now(self, frame: bytes) -> bool:
        # The fast path of live delivery: no task, no await. Only when the transport has
        # nothing buffered (so it is not pushing back) and the socket is not closing; aiohttp
        # writes its own frames (pings, pongs, close) whole, so frames never interleave.
        transport = self.transport
        if (
            transport is None
            or self.ws.closed
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            return False
        transport.write(text_frame_header(len(frame)) + frame)
        return True

    async def transmit(self, frame: bytes) -> None:
        # A text frame of the publisher's bytes: no decoding, no re-encoding per recipient.
        await self.ws.send_frame(frame, WSMsgType.TEXT)

    async def terminate(self, reason: CloseReason, message: str) -> None:
        # No drain: a client that is not reading must not hold the close up.
        await self.ws.close(code=CLOSE_CODES[reason], message=message.encode(), drain=False)


def error_frame(code: str, message: str) -> bytes:
    return orjson.dumps({"type": "error", "code": code, "message": message})


def parse_since(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit():
        raise InvalidRequest("since must be a non-negative integer event id")
    return int(raw)


def parse_frame(msg_type: WSMsgType, data: object) -> PingFrame | TypingFrame:
    if msg_type is not WSMsgType.TEXT or not isinstance(data, str):
        raise InvalidRequest("frames must be JSON text")
    try:
        return ClientFrame.validate_json(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        if err["type"] == "json_invalid":
            raise InvalidRequest("malformed JSON") from None
        if err["type"] in ("union_tag_invalid", "union_tag_not_found", "dict_type"):
            raise InvalidRequest('expected {"type": "ping"} or {"type": "typing"}') from None
        where = ".".join(str(p) for p in err["loc"][1:])
        raise InvalidRequest(f"{where}: {err['msg']}" if where else err["msg"]) from None


@documented(
    Operation(
        "The live event feed: a WebSocket (docs/websocket.md)",
        PUBLIC,  # the token travels in the query: a bad one is a close code (4401), not a 401
        {101: None},
        query=(
            Param("token", {"type": "string"}, "a web-client token", required=True),
            Param("since", {"type": "integer", "minimum": 0}, "replay the events after this"),
        ),
        errors=(403,),
        description="403: the upgrade's Origin is neither the service's own nor listed in "
        "server.cors_origins. Without an upgrade (a plain GET), 400.",
        tags=("web client",),
    )
)
async def feed_socket(request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(request, origin):
        # A page of another origin could otherwise open the feed with a token it holds
        # (browsers do not apply CORS to WebSockets). Clients that send no Origin: unaffected.
        raise Forbidden("this origin may not open the feed (server.cors_origins)")
    ws = web.WebSocketResponse(
        heartbeat=HEARTBEAT_S,
        compress=False,  # a deflate context costs far more memory than the socket itself
        max_msg_size=MAX_FRAME_BYTES,
        timeout=CLOSE_TIMEOUT_S,
    )
    await ws.prepare(request)
    services = request.app[SERVICES]
    hub = services.hub
    token = request.query.get("token", "")
    changes_seen = hub.changes  # a change that lands while we authenticate is checked in join
    # The upgrade always succeeds, so that a browser sees the close code.
    try:
        who, claims = await services.authenticate(token)
    except Unauthorized as exc:
        await ws.close(code=CLOSE_UNAUTHORIZED, message=exc.message.encode())
        return ws
    except Exception:
        log.exception("feed socket authentication failed")  # the database, say
        await ws.close(code=CLOSE_INTERNAL_ERROR, message=b"internal error")
        return ws
    try:
        since = parse_since(request.query.get("since"))
    except InvalidRequest as exc:
        await ws.send_frame(error_frame(exc.code, exc.message), WSMsgType.TEXT)
        await ws.close(code=CLOSE_BAD_REQUEST, message=exc.message.encode())
        return ws

    conn = SocketConn(ws, who, token, request.transport)
    try:
        await hub.join(conn, since, claims.expires_at, changes_seen)
        async for msg in ws:
            if msg.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
            await handle_frame(hub, conn, msg.type, msg.data)
    except ConnectionResetError:
        pass  # the client went away mid-send
    except Exception:
        # The upgrade is done, so no error response is possible: log, and close as 1011.
        log.exception("feed socket failed", user_id=who.id)
        await ws.close(code=CLOSE_INTERNAL_ERROR, message=b"internal error")
    finally:
        hub.leave(conn)
    return ws


async def handle_frame(hub: Hub, conn: Conn, msg_type: WSMsgType, data: object) -> None:
    try:
        frame = parse_frame(msg_type, data)
        if isinstance(frame, PingFrame):
            hub.reply(conn, PONG_FRAME)
        else:
            await hub.typing(conn, frame.chat_id)
    except DomainError as exc:
        hub.reply(conn, error_frame(exc.code, exc.message))


async def close_sockets(app: web.Application) -> None:
    """On shutdown, before in-flight requests are waited for: every socket gets 1001."""
    await app[SERVICES].hub.shutdown()


def setup(app: web.Application) -> None:
    app.on_shutdown.append(close_sockets)
    app.router.add_get("/api/v1/ws", feed_socket)
