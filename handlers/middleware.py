"""Request id and one structured log line per request, plus the request metrics."""

from __future__ import annotations

import contextlib
import re
import time
import uuid

import structlog
from aiohttp import web

from handlers.errors import Handler
from handlers.keys import SERVICES

log = structlog.get_logger("bridge.http")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def route_name(request: web.Request) -> str:
    """The route's pattern (not the concrete path), to keep metric labels bounded."""
    info = request.match_info.route.resource
    return info.canonical if info is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-ID", "")
    request_id = incoming if _SAFE_ID.match(incoming) else uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-ID"] = request_id
        return response
    finally:
        route = route_name(request)
        request.app[SERVICES].metrics.requests.labels(route, str(status)).inc()
        # The path only: a query string may carry a token (the WebSocket feed's ?token=).
        # A log sink that fails (a closed stderr) must not fail the request it describes.
        with contextlib.suppress(OSError, ValueError):
            log.info(
                "request",
                method=request.method,
                path=request.path,
                route=route,
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )
        structlog.contextvars.unbind_contextvars("request_id")
