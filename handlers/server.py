"""Running the app: bind, serve, stop cleanly on SIGTERM/SIGINT."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from bridge.config import Config
from handlers.app import create_app


def serve(config: Config, config_path: str | Path | None = None) -> None:
    app = create_app(config, config_path=config_path)
    # run_app handles SIGINT/SIGTERM: it stops accepting, lets in-flight requests finish
    # (up to shutdown_timeout), runs on_shutdown (sockets closed with 1001) and cleanups.
    web.run_app(
        app,
        host=config.server.host,
        port=config.server.port,
        shutdown_timeout=config.server.shutdown_timeout_s,
        access_log=None,
        print=None,
        handle_signals=True,
    )
