"""The serving code of ``pachca-bridge serve`` (handlers/server.py), run in-process on a free
port: the connection cap, the deadline for a request head, and a clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import structlog
import yaml
from aiohttp import web

from bridge.config import Config, parse_config
from handlers.app import create_app
from handlers.keys import SERVICES
from handlers.server import Service, default_max_connections
from store.db import Database
from tests import rawhttp
from tests.conftest import JWT_SECRET, SERVICE_TOKEN
from tests.eventually import eventually

GIVE_UP_S = 10

HEALTH = rawhttp.request_bytes("GET", "/healthz", [])


@pytest.fixture
def serving_config(config_data: dict[str, Any]) -> Config:
    return parse_config(
        {**config_data, "server": {"host": "127.0.0.1", "port": 0, "max_connections": 3}}
    )


@contextlib.asynccontextmanager
async def running(
    database: Database, config: Config, app: web.Application | None = None, **kwargs: Any
) -> AsyncIterator[Service]:
    service = Service(app or create_app(config, db=database), config.server, **kwargs)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


class Conn:
    """A kept-alive client connection that has been served once (so the server counts it)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = cls(reader, writer)
        assert await conn.health() == 200
        return conn

    async def health(self) -> int:
        self.writer.write(HEALTH)
        resp = await asyncio.wait_for(rawhttp.read_response(self.reader), GIVE_UP_S)
        return resp.status

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def refused(port: int) -> bool:
    """Whether a new connection is closed at once, without an answer to a request."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with contextlib.suppress(ConnectionError):
            writer.write(HEALTH)
            await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(), GIVE_UP_S)
        except ConnectionError:
            data = b""
        return data == b""
    finally:
        writer.close()


async def served(port: int) -> bool:
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
        return (await rawhttp.send("127.0.0.1", port, HEALTH)).status == 200
    return False


def open_count(service: Service) -> int:
    assert service.cap is not None
    return service.cap.open


def cap_lines(logs: list[dict[str, Any]]) -> list[str]:
    wanted = ("connection cap reached", "connections back under the cap")
    return [e["event"].split(":")[0] for e in logs if e["event"].startswith(wanted)]


async def test_connections_beyond_the_cap_are_closed_at_once_and_logged_once(
    database: Database, serving_config: Config
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with running(database, serving_config) as service:
            held = [await Conn.open(service.port) for _ in range(3)]

            for _ in range(5):
                assert await refused(service.port)
            assert cap_lines(logs) == ["connection cap reached"]  # one line, not five
            assert all([await conn.health() == 200 for conn in held])  # still served

            # A slot frees: new connections are served again, and the log says so.
            await held.pop().close()
            await eventually(lambda: served(service.port), what="served again")
            assert cap_lines(logs) == ["connection cap reached", "connections back under the cap"]

            # A new episode gets its own line.
            await eventually(lambda: open_count(service) == 2, what="the probe's slot freed")
            held.append(await Conn.open(service.port))
            assert await refused(service.port)
            assert cap_lines(logs)[-1] == "connection cap reached"
            assert len(cap_lines(logs)) == 3

            refusals = service.app[SERVICES].metrics.connections_refused._value.get()
            assert refusals >= 6  # and any refused while the freed slot was noticed
            for conn in held:
                await conn.close()


async def test_the_default_cap_is_below_the_file_descriptor_limit(
    database: Database, config_data: dict[str, Any]
) -> None:
    assert default_max_connections(1024) == 768
    assert default_max_connections(20_000) == 19_744
    assert default_max_connections(100) == 50
    assert default_max_connections(resource.RLIM_INFINITY) == 65_536
    config = parse_config({**config_data, "server": {"host": "127.0.0.1", "port": 0}})
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert Service(create_app(config, db=database), config.server).max_connections == (
        default_max_connections(soft)
    )
    assert default_max_connections(soft) < soft


async def test_a_cap_above_the_descriptor_limit_is_warned_about(
    database: Database, config_data: dict[str, Any]
) -> None:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    server = {"host": "127.0.0.1", "port": 0, "max_connections": soft + 1}
    config = parse_config({**config_data, "server": server})
    with structlog.testing.capture_logs() as logs:
        async with running(database, config):
            pass
    [warning] = [e for e in logs if e["event"].startswith("server.max_connections is above")]
    assert warning["max_connections"] == soft + 1


async def test_a_request_head_that_never_ends_is_dropped(
    database: Database, serving_config: Config
) -> None:
    async with running(database, serving_config, keepalive_timeout_s=0.3) as service:
        for opening in (b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Slow: ", b""):
            reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
            try:
                writer.write(opening)
                assert await asyncio.wait_for(rawhttp.closed_by_peer(reader), GIVE_UP_S)
            finally:
                writer.close()
        # The slots they held are free again.
        await eventually(lambda: open_count(service) == 0, what="slots freed")
        conns = [await Conn.open(service.port) for _ in range(3)]
        for conn in conns:
            await conn.close()


async def test_stop_finishes_requests_in_flight_and_closes_sockets_with_1001(
    database: Database, serving_config: Config
) -> None:
    app = create_app(serving_config, db=database)
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(_: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.json_response({"done": True})

    app.router.add_get("/test-slow", slow)
    service = Service(app, serving_config.server)
    await service.start()
    base = f"http://127.0.0.1:{service.port}"
    stopping: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession() as session:
            token = await user_token(session, base)
            ws = await session.ws_connect(f"{base}/api/v1/ws?token={token}")
            await asyncio.wait_for(ready(ws), GIVE_UP_S)
            pending = asyncio.create_task(session.get(f"{base}/test-slow"))
            await asyncio.wait_for(entered.wait(), GIVE_UP_S)

            stopping = asyncio.create_task(service.stop())
            await asyncio.wait_for(closed_with(ws), GIVE_UP_S)
            assert ws.close_code == 1001
            with pytest.raises(ConnectionRefusedError):  # no longer accepting
                await asyncio.open_connection("127.0.0.1", service.port)
            assert not stopping.done()  # waiting for the request in flight

            release.set()
            resp = await asyncio.wait_for(pending, GIVE_UP_S)
            assert (resp.status, await resp.json()) == (200, {"done": True})
            await asyncio.wait_for(stopping, GIVE_UP_S)
    finally:
        release.set()
        await (stopping if stopping is not None else service.stop())


async def test_stop_closes_a_socket_still_authenticating_with_1001(
    database: Database, config_data: dict[str, Any]
) -> None:
    """A socket whose user is still being read when shutdown begins (an await on PostgreSQL)
    gets 1001 as soon as it comes to join, not a cut connection at shutdown_timeout_s."""
    config = parse_config(
        {**config_data, "server": {"host": "127.0.0.1", "port": 0, "shutdown_timeout_s": 3}}
    )
    app = create_app(config, db=database)
    services = app[SERVICES]
    authenticating, release = asyncio.Event(), asyncio.Event()
    authenticate = services.authenticate

    async def slow_authenticate(token: str) -> Any:
        authenticating.set()
        await release.wait()
        return await authenticate(token)

    services.authenticate = slow_authenticate  # type: ignore[method-assign]
    service = Service(app, config.server)
    await service.start()
    base = f"http://127.0.0.1:{service.port}"
    stopping: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession() as session:
            token = await user_token(session, base)
            ws = await session.ws_connect(f"{base}/api/v1/ws?token={token}")
            await asyncio.wait_for(authenticating.wait(), GIVE_UP_S)

            stopping = asyncio.create_task(service.stop())
            await eventually(lambda: services.hub.stopping, what="the sockets' shutdown")
            release.set()
            await asyncio.wait_for(closed_with(ws), GIVE_UP_S)
            assert ws.close_code == 1001
            await asyncio.wait_for(stopping, GIVE_UP_S)
    finally:
        release.set()
        await (stopping if stopping is not None else service.stop())


async def ready(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Wait for the feed's "ready" frame: from then on the socket is the hub's to close."""
    while (await ws.receive_json()).get("type") != "ready":
        pass


async def closed_with(ws: aiohttp.ClientWebSocketResponse) -> None:
    while (await ws.receive()).type not in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
        pass


async def user_token(session: aiohttp.ClientSession, base: str) -> str:
    """A known user's web token, the user made through the platform API."""
    resp = await session.put(
        f"{base}/api/v1/users/srv-1",
        json={"role": "student", "name": "Ann"},
        headers={"Authorization": f"Bearer {SERVICE_TOKEN}"},
    )
    assert resp.status == 200, await resp.text()
    now = int(time.time())
    return jwt.encode({"sub": "srv-1", "iat": now, "exp": now + 600}, JWT_SECRET, "HS256")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_pachca_bridge_serve_stops_cleanly_on_a_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """The command itself, in a process of its own: sockets closed with 1001, exit 0."""
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"host": "127.0.0.1", "port": port},
                "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'serve.db'}"},
                "auth": {"jwt_secret": JWT_SECRET, "service_tokens": [SERVICE_TOKEN]},
                "logging": {"format": "json"},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "serve",
        "--config",
        str(config),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await eventually(lambda: served(port), within=30, what="serving")
            ws = await session.ws_connect(
                f"{base}/api/v1/ws?token={await user_token(session, base)}"
            )
            await asyncio.wait_for(ready(ws), GIVE_UP_S)
            proc.send_signal(sig)
            await asyncio.wait_for(closed_with(ws), GIVE_UP_S)
            assert ws.close_code == 1001
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert "Traceback" not in log and '"stopping"' in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "request_head",
    [
        rawhttp.request_bytes("GET", "/api/v1/chats/" + "x" * 20_000, []),
        rawhttp.request_bytes("GET", "/healthz", [("X-Big", b"y" * 20_000)]),
        rawhttp.request_bytes("GET", "/healthz", [(f"X-H{i}", b"z") for i in range(200)]),
        b"GET /healthz HTTP/1.1\r\nHost: test\r\nBroken header line\r\n\r\n",
    ],
    ids=["long_request_line", "long_header", "too_many_headers", "malformed_header"],
)
async def test_what_the_http_parser_refuses_gets_the_json_error_body(
    database: Database, serving_config: Config, request_head: bytes
) -> None:
    async with running(database, serving_config) as service:
        resp = await rawhttp.send("127.0.0.1", service.port, request_head)
    assert 400 <= resp.status < 500
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert isinstance(body, dict) and set(body) == {"error"}
    assert body["error"]["code"] == "invalid_request"
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    for echoed in (b"xxxxxxxx", b"yyyyyyyy", b"Broken"):
        assert echoed not in resp.body  # the input is not echoed back
