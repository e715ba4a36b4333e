"""create_app: the composition root that builds and wires everything."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import structlog
from aiohttp import web

from bridge.auth import Tokens, load_generated_secret
from bridge.config import Config, LiveConfig
from bridge.feed.redis import RedisFeed
from bridge.feed.transport import Feed, MemoryFeed
from bridge.ops.metrics import Metrics
from bridge.ops.reload import ConfigWatcher, share_auth_changes
from bridge.runtime import Runtime
from bridge.services import Services
from handlers import admin, background, forum, ops, platform, webhooks, ws
from handlers import web as web_client
from handlers.errors import render_errors
from handlers.keys import CONFIG_WATCHER, METRICS, SERVICES
from handlers.middleware import request_context
from store import migrate
from store.db import Database, safe_url

log = structlog.get_logger("bridge.app")

# Each feature adds its routes and background work here: one call per feature module.
FEATURES: list[Callable[[web.Application], None]] = [
    platform.setup,
    forum.setup,
    ops.setup,
    webhooks.setup,
    ws.setup,
    admin.setup,
    background.setup,
    web_client.setup,
]


def make_feed(config: Config) -> Feed:
    if config.feed.backend == "redis":
        assert config.feed.url is not None  # the config validator requires it
        return RedisFeed(config.feed.url, config.feed.channel)
    return MemoryFeed()


def create_app(
    config: Config,
    *,
    config_path: str | Path | None = None,
    migrate_on_start: bool = True,
    db: Database | None = None,
) -> web.Application:
    app = web.Application(
        middlewares=[request_context, render_errors],
        client_max_size=config.server.max_body_bytes,
    )
    live = LiveConfig(config, config_path)
    database = db or Database(config.database.url)
    rt = Runtime(live=live, db=database, feed=make_feed(config), tokens=Tokens(live, ""))
    app[SERVICES] = Services(rt)
    app[METRICS] = Metrics()
    watcher = ConfigWatcher(live, config_path) if config_path is not None else None
    if watcher is not None:
        app[CONFIG_WATCHER] = watcher
    share_auth_changes(live, rt.feed, watcher)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if migrate_on_start:
            await migrate.upgrade(database)
        rt.tokens.use_generated(await load_generated_secret(database))
        database.start_checkpoints()
        await rt.feed.start()
        if watcher is not None:
            watcher.start()
        log.info(
            "started",
            database=safe_url(database.url),
            feed=config.feed.backend,
            pachca_enabled=config.pachca.enabled,
        )
        yield
        if watcher is not None:
            await watcher.stop()
        await rt.feed.stop()
        await database.dispose()

    # Registered first, so it runs its cleanup last, after every feature has stopped.
    app.cleanup_ctx.append(lifecycle)
    for setup in FEATURES:
        setup(app)
    return app
