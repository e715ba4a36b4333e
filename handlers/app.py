"""create_app: the aiohttp application over one ``Services`` (bridge/services.py builds every
service; this module adds the routes, the middlewares and the lifecycle)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from bridge.config import Config
from bridge.services import Database, Services
from handlers import admin, cors, files, forum, openapi, ops, platform, reactions, webhooks, ws
from handlers import web as web_client
from handlers.errors import render_errors
from handlers.keys import SERVICES
from handlers.middleware import request_context

# Each feature adds its routes here: one call per feature module.
FEATURES: list[Callable[[web.Application], None]] = [
    platform.setup,
    forum.setup,
    ops.setup,
    webhooks.setup,
    ws.setup,
    admin.setup,
    web_client.setup,
    reactions.setup,
    files.setup,
    openapi.setup,  # describes the routes of every feature above
]


def create_app(
    config: Config,
    *,
    config_path: str | Path | None = None,
    migrate_on_start: bool = True,
    db: Database | None = None,
) -> web.Application:
    app = web.Application(
        # CORS inside the request log (preflights are logged too) and outside the error
        # rendering (errors carry its headers too).
        middlewares=[request_context, cors.cors, render_errors],
        client_max_size=config.server.max_body_bytes,
    )
    cors.setup(app, config.server.cors_origins)
    services = Services.build(config, db=db, config_path=config_path)
    app[SERVICES] = services

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await services.start(migrate_first=migrate_on_start)
        yield
        await services.stop()

    app.cleanup_ctx.append(lifecycle)
    for setup in FEATURES:
        setup(app)
    return app
