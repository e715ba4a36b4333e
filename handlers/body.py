"""Request bodies and parameters, parsed into the services' input models."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web
from pydantic import ValidationError

from bridge.errors import InvalidRequest, NotFound
from bridge.inputs import Input

M = TypeVar("M", bound=Input)


async def read_model(request: web.Request, model: type[M]) -> M:
    raw = await request.read()  # over client_max_size -> 413 from aiohttp
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


def int_param(request: web.Request, name: str, default: int | None = None) -> int | None:
    """A query integer, ``default`` when absent, None when not an integer (the service
    rejects it at the point the contract orders)."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        return None


def path_int(request: web.Request, name: str) -> int:
    """An integer path id; anything else names no such object."""
    try:
        return int(request.match_info[name])
    except ValueError:
        raise NotFound(f"no such {name.removesuffix('_id')}") from None
