"""Calls from pages on other origins (CORS) to the web-client API (docs/api.md).

For an origin listed in ``server.cors_origins``, on the web-client paths only: a preflight
(``OPTIONS`` with ``Access-Control-Request-Method``) is answered 204 here, naming the methods
the path takes and the request headers a client sends; every other answer, errors included,
carries ``Access-Control-Allow-Origin``. Any other origin gets no CORS header at all (its
preflight falls through to the router: 405). The platform and admin API never answer CORS:
they are called by servers, with a token no page should hold.

The list is read once, when the app is built: ``server`` keys take a restart.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import hdrs, web

from handlers.errors import Handler

# The web-client API: the paths a browser holding a user token calls (the feed included).
WEB_CLIENT_PREFIXES = ("/api/v1/chats", "/api/v1/messages", "/api/v1/files", "/api/v1/ws")
ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-ID"
EXPOSED_HEADERS = "Retry-After, X-Request-ID"  # a page may read these of an answer
PREFLIGHT_MAX_AGE_S = "600"

CORS_ORIGINS = web.AppKey("cors_origins", frozenset)


def is_web_client_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in WEB_CLIENT_PREFIXES)


def same_origin(request: web.Request, origin: str) -> bool:
    """Whether ``origin`` is the service's own, as the request reached it: the Host header,
    whatever the scheme (a proxy in front may end TLS)."""
    return urlsplit(origin).netloc.lower() == request.host.lower()


def origin_allowed(request: web.Request, origin: str) -> bool:
    """For the feed's upgrade: the service's own origin, or a listed one."""
    return same_origin(request, origin) or origin.lower() in request.app[CORS_ORIGINS]


def _allowed_methods(request: web.Request) -> set[str] | None:
    """The methods the request's path takes (None: no route has this path)."""
    match = request.match_info
    exc = match.http_exception
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return set(exc.allowed_methods)
    if exc is not None:
        return None
    resource = match.route.resource
    if resource is None:
        return None
    return {route.method for route in resource}


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    origins = request.app[CORS_ORIGINS]
    origin = request.headers.get(hdrs.ORIGIN)
    if not origins or not is_web_client_path(request.path):
        return await handler(request)
    allowed = origin is not None and origin.lower() in origins
    wanted = request.headers.get(hdrs.ACCESS_CONTROL_REQUEST_METHOD)
    if allowed and request.method == hdrs.METH_OPTIONS and wanted:
        methods = _allowed_methods(request)
        if methods:
            methods.discard(hdrs.METH_HEAD)
            return web.Response(
                status=204,
                headers={
                    hdrs.ACCESS_CONTROL_ALLOW_ORIGIN: origin,
                    hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(sorted(methods)),
                    hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_HEADERS,
                    hdrs.ACCESS_CONTROL_MAX_AGE: PREFLIGHT_MAX_AGE_S,
                    hdrs.VARY: "Origin",
                },
            )
    response = await handler(request)
    if response.prepared:  # a WebSocket: its headers are gone already
        return response
    # Whether an origin is allowed changes the answer: caches must key on it.
    response.headers.add(hdrs.VARY, "Origin")
    if allowed:
        assert origin is not None
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
        response.headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = EXPOSED_HEADERS
    return response


def setup(app: web.Application, origins: list[str]) -> None:
    app[CORS_ORIGINS] = frozenset(o.lower() for o in origins)
