"""Admin views (service token): the outbox - what waits, what died, and retrying it - and the
chats whose students wait for an answer."""

from __future__ import annotations

from aiohttp import web

from handlers.auth import service_only
from handlers.body import int_param, path_int
from handlers.keys import SERVICES
from handlers.responses import json_response

routes = web.RouteTableDef()


@routes.get("/api/v1/admin/outbox")
@service_only
async def list_outbox(request: web.Request) -> web.Response:
    result = await request.app[SERVICES].outbox_admin.list(
        request.query.get("status", "dead"),
        limit=int_param(request, "limit", 100),
        after_id=int_param(request, "after_id", 0),
    )
    return json_response(result)


@routes.post("/api/v1/admin/outbox/{job_id}/retry")
@service_only
async def retry_job(request: web.Request) -> web.Response:
    result = await request.app[SERVICES].outbox_admin.retry(path_int(request, "job_id"))
    return json_response(result)


@routes.get("/api/v1/admin/waiting")
@service_only
async def list_waiting(request: web.Request) -> web.Response:
    result = await request.app[SERVICES].waiting.list(limit=int_param(request, "limit", 100))
    return json_response(result)


def setup(app: web.Application) -> None:
    app.add_routes(routes)
