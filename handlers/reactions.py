"""Reactions on messages (docs/api.md), behind user tokens: ``PUT`` and ``DELETE``
``/api/v1/messages/{message_id}/reactions/{emoji}``, the emoji percent-encoded in the path."""

from __future__ import annotations

from aiohttp import web

from handlers.auth import principal, user_only
from handlers.body import path_int
from handlers.keys import SERVICES
from handlers.openapi import USER, Operation, documented

PATH = "/api/v1/messages/{message_id}/reactions/{emoji}"
routes = web.RouteTableDef()


@routes.put(PATH)
@documented(
    Operation(
        "React to a message with one emoji",
        USER,
        {204: None},
        errors=(400, 403, 404, 429),
        tags=("web client",),
    )
)
@user_only
async def add_reaction(request: web.Request) -> web.Response:
    await request.app[SERVICES].reactions.add(
        principal(request), path_int(request, "message_id"), request.match_info["emoji"]
    )
    return web.Response(status=204)


@routes.delete(PATH)
@documented(
    Operation(
        "Take one's reaction back",
        USER,
        {204: None},
        errors=(400, 403, 404, 429),
        tags=("web client",),
    )
)
@user_only
async def remove_reaction(request: web.Request) -> web.Response:
    await request.app[SERVICES].reactions.remove(
        principal(request), path_int(request, "message_id"), request.match_info["emoji"]
    )
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    app.add_routes(routes)
