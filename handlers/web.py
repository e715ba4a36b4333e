"""The web client (the ``web`` package): ``GET /`` the page, ``GET /client.js`` the ES module
for other front ends, and the page's assets under ``/assets/<content hash>/<name>``.

Every file is read once, when the app is built; a request only looks a response up. The hash
changes whenever any asset does, so assets are cached for a year as immutable, while the page
and ``/client.js`` are revalidated on every use (``no-cache`` with an ETag).

The page carries a strict Content-Security-Policy: its own scripts and styles only (no inline
script or style, nothing from another host), and no Referer is ever sent, because the sign-in
token travels in the URL fragment.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable

from aiohttp import web

from handlers.openapi import PUBLIC, Operation, Raw, documented

TAGS = ("web client",)

ASSETS_PLACEHOLDER = "{{assets}}"
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"

CSP = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",  # the API and the feed (same-origin ws:/wss: included)
        "img-src 'self' blob: data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",  # the sign-in form is handled by script, never submitted
        "frame-ancestors 'none'",
    ]
)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    headers: dict[str, str]
    etag: str


def _etag(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _file(body: bytes, content_type: str, cache: str, **extra: str) -> StaticFile:
    etag = _etag(body)
    headers = {
        **COMMON_HEADERS,
        "Content-Type": content_type,
        "Cache-Control": cache,
        "ETag": etag,
        **extra,
    }
    return StaticFile(body, headers, etag)


class WebClient:
    """The files of the ``web`` package, ready to serve."""

    def __init__(self, root: Traversable):
        assets_dir = root / "assets"
        raw: dict[str, bytes] = {}
        for entry in sorted(assets_dir.iterdir(), key=lambda e: e.name):
            suffix = "." + entry.name.rsplit(".", 1)[-1]
            if entry.is_file() and suffix in CONTENT_TYPES:
                raw[entry.name] = entry.read_bytes()
        digest = hashlib.sha256()
        for name, body in raw.items():
            digest.update(name.encode() + b"\0" + body + b"\0")
        self.version = digest.hexdigest()[:16]
        self.prefix = f"/assets/{self.version}"

        # Assets may be imported by pages on other origins (client.js as a module script
        # needs CORS): they are public files, so any origin may read them.
        shared = {"Access-Control-Allow-Origin": "*"}
        self.assets = {
            name: _file(body, CONTENT_TYPES["." + name.rsplit(".", 1)[-1]], IMMUTABLE, **shared)
            for name, body in raw.items()
        }
        self.client_js = _file(raw["client.js"], CONTENT_TYPES[".js"], REVALIDATE, **shared)
        page = (root / "index.html").read_text("utf-8").replace(ASSETS_PLACEHOLDER, self.prefix)
        self.page = _file(
            page.encode(),
            CONTENT_TYPES[".html"],
            REVALIDATE,
            **{"Content-Security-Policy": CSP, "X-Frame-Options": "DENY"},
        )


def respond(request: web.Request, file: StaticFile) -> web.Response:
    """The file, or 304 when the client already holds this version."""
    if _matches(request.headers.get("If-None-Match"), file.etag):
        headers = {k: v for k, v in file.headers.items() if k != "Content-Type"}
        return web.Response(status=304, headers=headers)
    return web.Response(body=file.body, headers=file.headers)


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


WEB_CLIENT = web.AppKey("web_client", WebClient)


PAGE_DOC = Raw(("text/html",), "the web client's page")
NOT_MODIFIED = {304: None}  # with If-None-Match naming the current version


@documented(Operation("The web client", PUBLIC, {200: PAGE_DOC, **NOT_MODIFIED}, tags=TAGS))
async def page(request: web.Request) -> web.Response:
    return respond(request, request.app[WEB_CLIENT].page)


@documented(
    Operation(
        "client.js, the API and feed client as an ES module",
        PUBLIC,
        {200: Raw(("text/javascript",), "an ES module"), **NOT_MODIFIED},
        tags=TAGS,
    )
)
async def client_module(request: web.Request) -> web.Response:
    return respond(request, request.app[WEB_CLIENT].client_js)


@documented(
    Operation(
        "One of the web client's files, cached as immutable",
        PUBLIC,
        {200: Raw(tuple(CONTENT_TYPES.values()), "a script, style sheet or image"), **NOT_MODIFIED},
        errors=(404,),
        tags=TAGS,
    )
)
async def asset(request: web.Request) -> web.Response:
    files = request.app[WEB_CLIENT]
    found = files.assets.get(request.match_info["name"])
    # Another version's path is not answered with this version's bytes: they would be
    # cached as immutable under the wrong name.
    if request.match_info["version"] != files.version or found is None:
        raise web.HTTPNotFound()
    return respond(request, found)


def setup(app: web.Application) -> None:
    app[WEB_CLIENT] = WebClient(resources.files("web"))
    app.router.add_get("/", page)
    app.router.add_get("/client.js", client_module)
    app.router.add_get("/assets/{version}/{name}", asset)
