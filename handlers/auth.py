"""Authentication at the edge: service tokens for the platform backend, JWTs for web clients."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps

from aiohttp import web

from bridge.auth import Principal, bearer
from bridge.errors import Unauthorized
from handlers.keys import SERVICES

PRINCIPAL = web.RequestKey("principal", Principal)

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def service_only(handler: RouteHandler) -> RouteHandler:
    """The platform backend: ``Authorization: Bearer <one of auth.service_tokens>``."""

    @wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        token = bearer(request.headers.get("Authorization"))
        if token is None or not request.app[SERVICES].is_service_token(token):
            raise Unauthorized("a valid service token is required")
        return await handler(request)

    return wrapper


def user_only(handler: RouteHandler) -> RouteHandler:
    """A web client: ``Authorization: Bearer <JWT>`` naming a known user."""

    @wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        token = bearer(request.headers.get("Authorization"))
        if token is None:
            raise Unauthorized("a bearer token is required")
        request[PRINCIPAL], _claims = await request.app[SERVICES].authenticate(token)
        return await handler(request)

    return wrapper


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]
