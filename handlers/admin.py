"""Admin views (service token): the outbox - what waits, what died, and retrying it - and the
chats whose students wait for an answer."""

from __future__ import annotations

from aiohttp import web

from bridge.forum.waiting import WaitingPage
from bridge.ops.outbox_admin import MAX_LIMIT, JobAnswer, OutboxPage
from handlers.auth import service_only
from handlers.body import int_param, path_int
from handlers.keys import SERVICES
from handlers.openapi import SERVICE, Operation, Param, documented
from handlers.responses import json_response
from store import outbox as outbox_store

routes = web.RouteTableDef()
TAGS = ("admin",)


@routes.get("/api/v1/admin/outbox")
@documented(
    Operation(
        "Outbox jobs by status, and how many there are of each",
        SERVICE,
        {200: OutboxPage},
        query=(
            Param(
                "status",
                {"type": "string", "enum": list(outbox_store.STATUSES)},
                "default dead",
            ),
            Param("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}, "default 100"),
            Param("after_id", {"type": "integer", "minimum": 0}, "jobs after this id"),
        ),
        errors=(400,),
        tags=TAGS,
    )
)
@service_only
async def list_outbox(request: web.Request) -> web.Response:
    result = await request.app[SERVICES].outbox_admin.list(
        request.query.get("status", "dead"),
        limit=int_param(request, "limit", 100),
        after_id=int_param(request, "after_id", 0),
    )
    return json_response(result)


@routes.post("/api/v1/admin/outbox/{job_id}/retry")
@documented(
    Operation(
        "Run a dead or waiting job again now",
        SERVICE,
        {200: JobAnswer},
        errors=(400, 404),
        tags=TAGS,
    )
)
@service_only
async def retry_job(request: web.Request) -> web.Response:
    result = await request.app[SERVICES].outbox_admin.retry(path_int(request, "job_id"))
    return json_response(result)


@routes.get("/api/v1/admin/waiting")
@documented(
    Operation(
        "Chats whose student waits for an answer, longest wait first",
        SERVICE,
        {200: WaitingPage},
        query=(Param("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "default 100"),),
        errors=(400,),
        tags=TAGS,
    )
)
@service_only
async def list_waiting(request: web.Request) -> web.Response:
    result = await request.app[SERVICES].waiting.list(limit=int_param(request, "limit", 100))
    return json_response(result)


def setup(app: web.Application) -> None:
    app.add_routes(routes)
