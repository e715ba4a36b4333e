"""Request bodies and parameters, parsed into the services' input models."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from aiohttp import web
from pydantic import ValidationError

from bridge.errors import InvalidRequest, NotFound, RequestTimeout
from bridge.forum.inputs import MAX_ID_CHARS, MAX_INT, Input
from handlers.keys import SERVICES

M = TypeVar("M", bound=Input)


async def read_body(request: web.Request) -> bytes:
    """The whole body, which must arrive within ``server.body_timeout_s`` of the moment the
    handler asks for it (right after the head and the authentication): else 408, and the
    connection is closed (handlers/errors.py). A client cannot hold a connection, and the
    handler waiting on it, by sending its body slowly. Over ``client_max_size``: 413."""
    if request.content.is_eof():
        # The usual case, a small body that came with the head: no timer to set.
        return await request.read()
    timeout = request.app[SERVICES].config.server.body_timeout_s
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {timeout:g} s") from None


async def read_model(request: web.Request, model: type[M]) -> M:
    raw = await read_body(request)
    if not raw.strip():
        raise InvalidRequest("a JSON body is required")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """The first problem, with its field path; input values are not echoed back."""
    err = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in err["loc"])
    if err["type"] == "json_invalid":
        return "malformed JSON"
    return f"{where}: {err['msg']}" if where else err["msg"]


def int_param(
    request: web.Request, name: str, default: int | None = None, invalid: int | None = None
) -> int | None:
    """A query integer, ``default`` when absent, ``invalid`` (None unless given) when not an
    integer: the service rejects that value at the point the contract orders."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        return invalid
    return value if in_int64(value) else invalid


def in_int64(value: int) -> bool:
    """Whether the database's BIGINT can hold it (the driver cannot even bind more)."""
    return -MAX_INT - 1 <= value <= MAX_INT


def path_int(request: web.Request, name: str) -> int:
    """An integer path id: ASCII digits only. Anything else (a sign, spaces, other scripts'
    digits, which ``int()`` would all accept) names no such object."""
    raw = request.match_info[name]
    value = int(raw) if raw.isascii() and raw.isdigit() else None
    if value is None or not in_int64(value):
        raise NotFound(f"no such {name.removesuffix('_id')}")
    return value


def path_id(request: web.Request, name: str, *, creating: bool = False) -> str:
    """A platform id from the path. One no record can have (too long, or holding NUL) is
    refused before the database sees it: 400 when it would be created, else 404."""
    value = request.match_info[name]
    if len(value) <= MAX_ID_CHARS and "\x00" not in value:
        return value
    if creating:
        raise InvalidRequest(f"{name} must be at most {MAX_ID_CHARS} characters, without NUL")
    raise NotFound(f"no such {name.removesuffix('_id')}")
