"""Health, readiness and metrics (docs/operations.md)."""

from __future__ import annotations

import asyncio
from typing import Literal, NotRequired

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from typing_extensions import TypedDict

from handlers.keys import SERVICES
from handlers.openapi import PUBLIC, Operation, Raw, documented
from handlers.responses import json_response

routes = web.RouteTableDef()
TAGS = ("ops",)


class Health(TypedDict):
    status: Literal["ok"]


class Readiness(TypedDict):
    status: Literal["ok", "unavailable"]
    database: NotRequired[Literal["unreachable", "schema not current"]]


READY_TIMEOUT_S = 2.0


@routes.get("/healthz")
@documented(Operation("The process answers", PUBLIC, {200: Health}, tags=TAGS))
async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


@routes.get("/readyz")
@documented(
    Operation(
        "The database answers and its schema is current (else 503)",
        PUBLIC,
        {200: Readiness, 503: Readiness},
        tags=TAGS,
    )
)
async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            current = await services.schema_is_current()
    except Exception:
        return json_response({"status": "unavailable", "database": "unreachable"}, status=503)
    if not current:
        return json_response(
            {"status": "unavailable", "database": "schema not current"}, status=503
        )
    return json_response({"status": "ok"})


@routes.get("/metrics")
@documented(
    Operation(
        "Prometheus metrics",
        PUBLIC,
        {200: Raw(("text/plain",), "the Prometheus text format")},
        tags=TAGS,
    )
)
async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[SERVICES].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def setup(app: web.Application) -> None:
    app.add_routes(routes)
