"""Running the app: bind, serve at most ``server.max_connections`` connections, stop cleanly on
SIGTERM/SIGINT.

aiohttp's ``run_app`` accepts every connection it is offered. A client that opens connections
and sends nothing (or half a request) can then use up the process's file descriptors: accept()
fails with EMFILE over and over (asyncio logs each failure), and the database, Redis and
Pachca connections fail with it. So connections are counted here, and past the cap a new one
is closed as soon as it is accepted; one log line says the cap was reached, and one, once a
tenth of the slots are free again, how many were refused meanwhile.

Deadlines, which free what a slow or silent client holds:
- the request head (request line and headers): aiohttp's keep-alive timer runs from the moment
  a connection opens, or its previous response was sent, and closes a connection that has not
  delivered a whole head by then (``KEEPALIVE_TIMEOUT_S``, also the idle time a kept-alive
  connection is allowed);
- the body: ``server.body_timeout_s`` (handlers/body.py).

On SIGTERM or SIGINT: the listening socket closes, in-flight requests get up to
``server.shutdown_timeout_s``, WebSockets are closed with 1001 (on_shutdown), then the app's
cleanups run, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import resource
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.web_request import BaseRequest
from yarl import URL

from bridge.config import Config, ServerConfig
from bridge.errors import StartupFailed
from handlers.app import create_app
from handlers.errors import ERROR_CODES
from handlers.keys import SERVICES

log = structlog.get_logger("bridge.server")

KEEPALIVE_TIMEOUT_S = 75.0
BACKLOG = 128
# Descriptors kept free of client connections: the database pool (and the SQLite WAL files),
# Redis, the Pachca client's pool, logs, and the refused connections of one accept burst,
# each of which holds a descriptor until it is closed.
FD_RESERVE = 256
UNLIMITED_FDS_CAP = 65_536


def default_max_connections(fd_limit: int | None = None) -> int:
    """The cap when ``server.max_connections`` is not set: the soft RLIMIT_NOFILE
    (``ulimit -n``) less a reserve (``FD_RESERVE``, at most half the limit)."""
    if fd_limit is None:
        fd_limit, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if fd_limit == resource.RLIM_INFINITY:
        return UNLIMITED_FDS_CAP
    return max(fd_limit - min(FD_RESERVE, fd_limit // 2), 1)


class ConnectionCap:
    """Counts the connections being served; says whether one more may be."""

    def __init__(self, limit: int, on_refused: Callable[[], None] = lambda: None):
        self.limit = limit
        self.open = 0
        self._on_refused = on_refused
        self._full = False
        self._refused = 0  # in the current episode
        # Hysteresis: an episode ends when a tenth of the slots are free again, so a service
        # hovering at the cap does not log a pair of lines per connection.
        self._resume_at = limit - max(1, limit // 10)

    def at_limit(self) -> bool:
        return self.open >= self.limit

    def admit(self) -> bool:
        """Count one more connection if there is room; else count it as refused."""
        if self.open < self.limit:
            self.open += 1
            return True
        self.refuse()
        return False

    def refuse(self) -> None:
        self._refused += 1
        self._on_refused()
        if not self._full:
            self._full = True
            log.warning(
                "connection cap reached: new connections are closed until some end",
                max_connections=self.limit,
            )

    def release(self) -> None:
        self.open -= 1
        if self._full and self.open <= self._resume_at:
            log.info(
                "connections back under the cap",
                open=self.open,
                max_connections=self.limit,
                refused=self._refused,
            )
            self._full = False
            self._refused = 0


class _Refused(asyncio.Protocol):
    """A connection over the cap: closed the moment it is made."""

    def __init__(self, cap: ConnectionCap):
        self._cap = cap

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._cap.refuse()  # even if a slot freed meanwhile: this protocol cannot serve
        transport.close()


class _JsonErrorsHandler(web.RequestHandler):
    """aiohttp's protocol, answering what it refuses before any handler runs (a request line
    or headers over its limits, a malformed head) in the API's error shape: JSON, without
    echoing the input back. Middlewares never see these requests."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("a response was sent already")  # as aiohttp does
        if status >= 500:
            self.log_exception("error handling request", exc_info=exc)
            code, text = "internal_error", "internal error"
        else:
            log.info("malformed request refused", status=status, error=type(exc).__name__)
            code = ERROR_CODES.get(status, "invalid_request")
            text = "the request line or headers are malformed or over the size limits"
        body = orjson.dumps({"error": {"code": code, "message": text}})
        response = web.Response(status=status, body=body, content_type="application/json")
        response.force_close()
        return response


class _CountedHandler(_JsonErrorsHandler):
    """aiohttp's own protocol, admitted against the cap when its connection is made (the
    moment the count is exact) and released when it is lost. Nothing changes per request."""

    __slots__ = ("_admitted", "_cap")

    def __init__(self, cap: ConnectionCap, manager: web.Server, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self._cap = cap
        self._admitted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._cap.admit():
            transport.close()
            return
        self._admitted = True
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._admitted:
            return
        self._admitted = False
        self._cap.release()
        super().connection_lost(exc)


class _CappedSite(web.BaseSite):
    """A TCP site whose connections are made by ``protocol_factory`` (aiohttp's TCPSite
    always uses the runner's server, which admits everything)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
    ):
        super().__init__(runner, backlog=BACKLOG)
        self._host = host
        self._port = port
        self._protocol_factory = protocol_factory

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one chosen for port 0)."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def name(self) -> str:
        return str(URL.build(scheme="http", host=self._host, port=self.port))

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol_factory, self._host, self._port, backlog=self._backlog
        )


class Service:
    """The app on a listening socket, with the connection cap. ``start`` binds, ``stop``
    shuts down as on SIGTERM."""

    def __init__(
        self,
        app: web.Application,
        server: ServerConfig,
        *,
        keepalive_timeout_s: float = KEEPALIVE_TIMEOUT_S,
    ):
        self.app = app
        self.server = server
        self.max_connections = server.max_connections or default_max_connections()
        handler_kwargs: dict[str, Any] = {
            "keepalive_timeout": keepalive_timeout_s,
            "access_log": None,  # handlers/middleware.py logs each request
        }
        self._handler_kwargs = handler_kwargs
        self.runner = web.AppRunner(
            app,
            handle_signals=False,  # ours: see serve()
            shutdown_timeout=server.shutdown_timeout_s,
            **handler_kwargs,
        )
        self.cap: ConnectionCap | None = None
        self.site: _CappedSite | None = None

    @property
    def port(self) -> int:
        assert self.site is not None, "not started"
        return self.site.port

    async def start(self) -> None:
        await self.runner.setup()  # the app's startup: migrations, feed, workers
        refused = self.app[SERVICES].metrics.connections_refused
        self.cap = cap = ConnectionCap(self.max_connections, on_refused=refused.inc)
        manager = self.runner.server
        assert manager is not None
        loop = asyncio.get_running_loop()
        kwargs = self._handler_kwargs

        def protocol() -> asyncio.BaseProtocol:
            # Over the cap already: skip building a request parser for a connection that
            # is closed at once. The exact check is the handler's, when the connection is made.
            if cap.at_limit():
                return _Refused(cap)
            return _CountedHandler(cap, manager, loop=loop, **kwargs)

        self.site = _CappedSite(self.runner, self.server.host, self.server.port, protocol)
        try:
            await self.site.start()
        except OSError as exc:
            where = f"{self.server.host}:{self.server.port}"
            raise StartupFailed(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        log.info("listening", url=self.site.name, max_connections=self.max_connections)
        self._warn_about_config()
        if self.max_connections > default_max_connections():
            # Then accept() can still run out of descriptors before the cap is reached.
            log.warning(
                "server.max_connections is above what the file-descriptor limit leaves room "
                "for; raise the limit (ulimit -n) or lower the cap",
                max_connections=self.max_connections,
                fd_limit=resource.getrlimit(resource.RLIMIT_NOFILE)[0],
            )

    def _warn_about_config(self) -> None:
        """What a first run usually lacks, said once at start."""
        config = self.app[SERVICES].config
        if not config.auth.service_tokens:
            log.warning(
                "no service token is set (auth.service_tokens, BRIDGE_AUTH__SERVICE_TOKENS): "
                "the platform API answers 401 to every request"
            )
        if not config.pachca.enabled:
            log.warning("Pachca is disabled (pachca.enabled): chats are not mirrored to Pachca")

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to shutdown_timeout_s), close
        WebSockets with 1001, run the app's cleanups."""
        await self.runner.cleanup()


def serve(config: Config, config_path: str | Path | None = None) -> None:
    asyncio.run(_serve_until_signalled(config, config_path))


async def _serve_until_signalled(config: Config, config_path: str | Path | None) -> None:
    service = Service(create_app(config, config_path=config_path), config.server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        # Kept through the shutdown, so a second signal does not cut it short.
        loop.add_signal_handler(sig, stop.set)
    try:
        await service.start()
        await stop.wait()
        log.info("stopping")
    finally:
        await service.stop()
        for sig in signals:
            loop.remove_signal_handler(sig)
