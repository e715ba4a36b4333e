"""Slow bodies (section 16): a body not fully arrived within ``server.body_timeout_s`` gets 408
``request_timeout`` and its connection is closed, on every endpoint that reads a body.

Written on a bare socket: the body is promised by Content-Length and then withheld, or sent a
byte at a time. Without the deadline these requests would hang until the test gave up.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge.config import ConfigError, parse_config
from tests import rawhttp
from tests.conftest import SERVICE_TOKEN
from tests.world import World

BODY_TIMEOUT_S = 0.3
GIVE_UP_S = 10  # far beyond the deadline: only reached when there is none


pytestmark = pytest.mark.config_sections(server={"body_timeout_s": BODY_TIMEOUT_S})


def head(method: str, target: str, length: int, *auth: tuple[str, bytes]) -> bytes:
    headers = [
        *auth,
        ("Content-Type", b"application/json"),
        ("Content-Length", str(length).encode()),
    ]
    return rawhttp.request_bytes(method, target, headers)


def service() -> tuple[str, bytes]:
    return ("Authorization", f"Bearer {SERVICE_TOKEN}".encode())


async def withheld(client: TestClient, request_head: bytes, sent: bytes) -> rawhttp.RawResponse:
    """Send the head and part of the body, then nothing; the answer, and that the server
    closed the connection after it."""
    async with rawhttp.connection(client.server.host, client.server.port) as (reader, writer):
        writer.write(request_head + sent)
        await writer.drain()
        resp = await asyncio.wait_for(rawhttp.read_response(reader), GIVE_UP_S)
        assert await asyncio.wait_for(rawhttp.closed_by_peer(reader), GIVE_UP_S)
        return resp


def expect_408(resp: rawhttp.RawResponse) -> None:
    assert resp.status == 408, resp
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers.get("connection", "").lower() == "close"
    body = resp.json()
    assert isinstance(body, dict) and set(body) == {"error"}
    assert body["error"]["code"] == "request_timeout"
    assert body["error"]["message"]


async def test_a_service_write_whose_body_never_ends(client: TestClient, world: World) -> None:
    resp = await withheld(
        client, head("PUT", "/api/v1/users/late", 100, service()), b'{"role": "stud'
    )
    expect_408(resp)
    # Nothing was written.
    got = await client.get("/api/v1/users/late", headers=world.service)
    assert got.status == 404


async def test_a_web_client_post_whose_body_never_ends(client: TestClient, world: World) -> None:
    teacher = await world.user("teacher")
    student = await world.user("student")
    chat = (await world.enroll(student, teacher)).subject_chat
    auth = ("Authorization", f"Bearer {world.token(student)}".encode())
    target = f"/api/v1/chats/{chat['id']}/messages"

    expect_408(await withheld(client, head("POST", target, 50, auth), b'{"content"'))

    listed = await client.get(target, headers=world.auth(student))
    assert (await listed.json())["messages"] == []


async def test_the_webhook_endpoint_too(client: TestClient) -> None:
    expect_408(await withheld(client, head("POST", "/webhooks/pachca", 500), b'{"type": '))
    text = await (await client.get("/metrics")).text()
    assert 'bridge_webhook_events_total{outcome="timeout"} 1.0' in text


async def test_a_body_that_trickles_in_is_held_to_the_whole_deadline(client: TestClient) -> None:
    """One byte every 50 ms: each arrives in time, the whole would take 10 s."""
    async with rawhttp.connection(client.server.host, client.server.port) as (reader, writer):
        writer.write(head("PUT", "/api/v1/users/drip", 200, service()))

        async def trickle() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(200):
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.05)

        dripping = asyncio.create_task(trickle())
        try:
            resp = await asyncio.wait_for(rawhttp.read_response(reader), GIVE_UP_S)
        finally:
            dripping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dripping
    expect_408(resp)


async def test_bodies_that_arrive_in_time_are_untouched(client: TestClient, world: World) -> None:
    """A body in two parts, the second well within the deadline, on a kept-alive connection
    that then serves a second request."""
    body = b'{"role": "student", "name": "Ann"}'
    async with rawhttp.connection(client.server.host, client.server.port) as (reader, writer):
        writer.write(head("PUT", "/api/v1/users/in-time", len(body), service()) + body[:10])
        await writer.drain()
        await asyncio.sleep(0.01)  # lets the handler start waiting on the rest
        writer.write(body[10:])
        resp = await asyncio.wait_for(rawhttp.read_response(reader), GIVE_UP_S)
        assert resp.status == 200, resp
        writer.write(head("PUT", "/api/v1/users/in-time-2", len(body), service()) + body)
        resp = await asyncio.wait_for(rawhttp.read_response(reader), GIVE_UP_S)
        assert resp.status == 200, resp


def test_the_default_deadline_is_ten_seconds() -> None:
    assert parse_config({}).server.body_timeout_s == 10
    assert "server.body_timeout_s" in str(_refused({"server": {"body_timeout_s": 0}}))


def _refused(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value
