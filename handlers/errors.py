"""Every failure as the JSON error body (docs/api.md): no HTML pages, no tracebacks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import structlog
from aiohttp import web

from bridge.errors import DomainError, RateLimited, RequestTimeout
from handlers.responses import json_response

log = structlog.get_logger("bridge.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp's own refusals (no route, wrong method, body too big) in the contract's codes.
ERROR_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    429: "rate_limited",
}


def error_response(status: int, code: str, message: str, **headers: str) -> web.Response:
    return json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers or None
    )


class ClosingResponse(web.Response):
    """A response after which its connection is closed at once: the rest of a request that
    is late is not waited for (aiohttp would otherwise linger, reading it, for seconds)."""

    def __init__(self, request: web.Request, **kwargs: Any):
        super().__init__(**kwargs)
        self._protocol = request.protocol
        self.force_close()  # Connection: close

    async def write_eof(self, data: bytes = b"") -> None:
        await super().write_eof(data)
        # The transport sends what it holds (this response), then closes.
        self._protocol.force_close()


def closing_error_response(
    request: web.Request, status: int, code: str, message: str
) -> web.Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return ClosingResponse(request, body=body, status=status, content_type="application/json")


@web.middleware
async def render_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RequestTimeout as exc:
        return closing_error_response(request, exc.status, exc.code, exc.message)
    except RateLimited as exc:
        retry = str(max(1, round(exc.retry_after + 0.5)))
        return error_response(exc.status, exc.code, exc.message, **{"Retry-After": retry})
    except DomainError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = ERROR_CODES.get(exc.status, "http_error")
        message = exc.reason if exc.status != 413 else "request body is too large"
        headers: dict[str, Any] = {}
        if exc.status == 405 and "Allow" in exc.headers:
            headers["Allow"] = exc.headers["Allow"]
        return error_response(exc.status, code, message, **headers)
    except Exception:
        log.exception("unhandled error", path=request.path, method=request.method)
        return error_response(500, "internal_error", "internal error")
