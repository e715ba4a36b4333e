"""The API description, ``GET /api/v1/openapi.json`` (docs/api.md): an OpenAPI 3.1 document
of every route, built from what the routes declare.

Each handler declares its operation next to itself::

    @routes.put("/api/v1/users/{user_id}")
    @documented(Operation("Create or replace a user", SERVICE, {200: UserAnswer}, body=UserIn))
    @service_only
    async def put_user(request): ...

``body`` is the input model the handler validates with; the responses are the TypedDicts (or
models) its answers are built as (bridge/forum/views.py). The schemas are generated from those
same types with pydantic, so the document cannot describe another shape than the one served.
The method and path come from the router: the document lists exactly the app's routes, and
``undocumented_routes`` names any route without a declaration (a test fails on one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar, get_origin

import orjson
from aiohttp import web
from pydantic import TypeAdapter
from typing_extensions import TypedDict

from bridge.forum.inputs import MAX_ID_CHARS, MAX_INT

# Security schemes (the keys of components.securitySchemes); None: no authentication.
SERVICE = "serviceToken"
USER = "userToken"
SIGNED = "pachcaSignature"
PUBLIC = None

H = TypeVar("H", bound=Callable[..., Any])


class ErrorDetail(TypedDict):
    code: str
    message: str


class ErrorBody(TypedDict):
    """Every error answer (docs/api.md, Errors)."""

    error: ErrorDetail


@dataclass(frozen=True)
class Param:
    """A query parameter."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Raw:
    """A body that is not JSON (a page, a script, metrics text), of one of these types."""

    content_types: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Multipart:
    """A multipart/form-data request body of binary parts, by part name."""

    parts: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class Operation:
    summary: str
    auth: str | None
    # status -> the answer's type (a TypedDict or model), Raw, or None for no body.
    responses: Mapping[int, Any]
    body: Any = None  # the request body's model, or Multipart
    query: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()  # besides those every such route may give (below)
    description: str = ""
    tags: tuple[str, ...] = field(default=())


_OPERATIONS: dict[Callable[..., Any], Operation] = {}


def documented(operation: Operation) -> Callable[[H], H]:
    """Declare a handler's operation (put it right above the auth decorator)."""

    def declare(handler: H) -> H:
        _OPERATIONS[handler] = operation
        return handler

    return declare


def operation_of(route: web.AbstractRoute) -> Operation | None:
    return _OPERATIONS.get(route.handler)


def undocumented_routes(app: web.Application) -> list[str]:
    return [
        f"{route.method} {route.resource.canonical}"
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None and operation_of(route) is None
    ]


# Path parameters, by name: the same meaning wherever they appear (handlers/body.py).
INT_ID = {"type": "integer", "minimum": 0, "maximum": MAX_INT}
PLATFORM_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS}
PATH_PARAMS: dict[str, tuple[dict[str, Any], str]] = {
    "user_id": (PLATFORM_ID, "the platform's user id"),
    "enrollment_id": (PLATFORM_ID, "the platform's enrollment id"),
    "chat_id": (INT_ID, "a chat id (ASCII digits)"),
    "message_id": (INT_ID, "a message id (ASCII digits)"),
    "job_id": (INT_ID, "an outbox job id (ASCII digits)"),
    "file_id": ({"type": "string", "minLength": 1, "maxLength": 64}, "a file id"),
    "emoji": ({"type": "string", "minLength": 1}, "one emoji, percent-encoded"),
    "version": ({"type": "string"}, "the assets' version (the page names it)"),
    "name": ({"type": "string"}, "an asset's file name"),
}

# What any route of a kind may answer, besides its own statuses.
_BY_AUTH = {SERVICE: (401,), USER: (401,), SIGNED: (401,), PUBLIC: ()}
_WITH_BODY = (400, 408, 413)
_STATUS_TEXT = {
    101: "Switching Protocols: the WebSocket feed",
    200: "OK",
    304: "Not Modified: the client holds this version",
    201: "Created",
    204: "No Content",
    400: "invalid_request (or invalid_content, chat_inactive)",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    422: "unknown_user",
    429: "rate_limited (Retry-After)",
    503: "unavailable",
}
_SECURITY_SCHEMES = {
    SERVICE: {
        "type": "http",
        "scheme": "bearer",
        "description": "one of auth.service_tokens: the platform backend and operators",
    },
    USER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "a web-client token: HS256, sub = the platform's user id, exp required",
    },
    SIGNED: {
        "type": "apiKey",
        "in": "header",
        "name": "Pachca-Signature",
        "description": "HMAC-SHA256 of the raw body with pachca.signing_secret, hex",
    },
}


class _Schemas:
    """components.schemas, filled as types are referenced."""

    def __init__(self) -> None:
        self.components: dict[str, Any] = {}

    def ref(self, tp: Any, mode: str) -> dict[str, Any]:
        schema = TypeAdapter(tp).json_schema(
            ref_template="#/components/schemas/{model}",
            mode=mode,  # type: ignore[arg-type]
        )
        defs = schema.pop("$defs", {})
        if mode == "serialization":
            # Answers are closed: a key the document does not name is a drift, and fails
            # clients' validation (and the tests') rather than slipping through.
            for sub in (schema, *defs.values()):
                if "properties" in sub:
                    sub.setdefault("additionalProperties", False)
        self.components.update(defs)
        name = getattr(tp, "__name__", None) if get_origin(tp) is None else None
        if name is None:  # a union, a list or a dict of something: inline
            return schema
        self.components[name] = schema
        return {"$ref": f"#/components/schemas/{name}"}


def _response(schemas: _Schemas, status: int, answer: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"description": _STATUS_TEXT.get(status, str(status))}
    if answer is None:
        return out
    if isinstance(answer, Raw):
        out["content"] = {t: {"schema": {"type": "string"}} for t in answer.content_types}
        if answer.description:
            out["description"] = answer.description
        return out
    out["content"] = {"application/json": {"schema": schemas.ref(answer, "serialization")}}
    if status == 429:
        out["headers"] = {
            "Retry-After": {
                "description": "whole seconds to wait",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return out


def _operation(
    schemas: _Schemas, route: web.AbstractRoute, path: str, op: Operation
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": op.summary,
        "operationId": route.handler.__name__,
    }
    if op.description:
        out["description"] = op.description
    if op.tags:
        out["tags"] = list(op.tags)
    out["security"] = [{op.auth: []}] if op.auth else []
    params = []
    for name in _path_names(path):
        schema, description = PATH_PARAMS[name]
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": schema,
                "description": description,
            }
        )
    for q in op.query:
        params.append(
            {
                "name": q.name,
                "in": "query",
                "required": q.required,
                "schema": q.schema,
                "description": q.description,
            }
        )
    if params:
        out["parameters"] = params
    if isinstance(op.body, Multipart):
        binary = {"type": "string", "contentMediaType": "application/octet-stream"}
        out["requestBody"] = {
            "required": True,
            "description": op.body.description,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {name: binary for name in op.body.parts},
                        "required": list(op.body.parts),
                    }
                }
            },
        }
    elif op.body is not None:
        out["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.ref(op.body, "validation")}},
        }
    responses = {str(s): _response(schemas, s, a) for s, a in sorted(op.responses.items())}
    failures = {*_BY_AUTH[op.auth], *op.errors}
    if op.body is not None:
        failures.update(_WITH_BODY)
    for status in sorted(failures):
        responses[str(status)] = _response(schemas, status, ErrorBody)
    # Anything else (500 internal_error, 405 for another method) is the error body too.
    responses["default"] = {
        "description": "an error (internal_error, method_not_allowed, ...)",
        "content": {"application/json": {"schema": schemas.ref(ErrorBody, "serialization")}},
    }
    out["responses"] = responses
    return out


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def build_document(app: web.Application) -> dict[str, Any]:
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        op = operation_of(route)
        if route.method == "HEAD" or op is None or route.resource is None:
            continue
        path = route.resource.canonical
        paths.setdefault(path, {})[route.method.lower()] = _operation(schemas, route, path, op)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pachca-bridge",
            "version": _version(),
            "description": "The bridge between a learning platform's forum chats and Pachca. "
            "Errors are always the ErrorBody shape. The WebSocket feed's frames are described "
            "in docs/websocket.md.",
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


def _version() -> str:
    try:
        return metadata.version("pachca-bridge")
    except metadata.PackageNotFoundError:
        return "0"


DOCUMENT = web.AppKey("openapi_document", bytes)


class OpenApiDocument(TypedDict):
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


@documented(
    Operation(
        "This document: the API described as OpenAPI 3.1",
        PUBLIC,
        {200: OpenApiDocument},
        tags=("ops",),
    )
)
async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[DOCUMENT], content_type="application/json")


async def _build_on_startup(app: web.Application) -> None:
    # Built once the router is frozen: every feature has added its routes by then.
    app[DOCUMENT] = orjson.dumps(build_document(app))


def setup(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", openapi_json)
    app.on_startup.append(_build_on_startup)
