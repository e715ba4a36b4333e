"""Header bytes that are not UTF-8 (section 16, "Tokens"): 401, never 500.

aiohttp hands such bytes to the app as lone surrogates; every ``encode()`` of them fails. The
requests are written on a bare socket: no HTTP client sends these bytes.
"""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests import rawhttp
from tests.conftest import SERVICE_TOKEN
from tests.world import World

BAD_AUTHORIZATION = [
    b"Bearer \xff\xfe\xfd",  # not UTF-8 at all
    b"Bearer " + SERVICE_TOKEN.encode() + b"\xc3",  # a valid token, then a cut sequence
    b"\xffBearer abc",  # in the scheme
    b"Bearer \xed\xa0\x80",  # an encoded surrogate, which UTF-8 forbids
]
WS_UPGRADE = [
    ("Upgrade", b"websocket"),
    ("Connection", b"Upgrade"),
    ("Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", b"13"),
]


async def send(client: TestClient, data: bytes) -> rawhttp.RawResponse:
    return await rawhttp.send(client.server.host, client.server.port, data)


def expect_401(resp: rawhttp.RawResponse) -> None:
    assert resp.status == 401, resp
    body = resp.json()
    assert isinstance(body, dict) and body["error"]["code"] == "unauthorized", body


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION)
async def test_web_client_routes(client: TestClient, authorization: bytes) -> None:
    for method, target in [("GET", "/api/v1/chats"), ("GET", "/api/v1/events?since=0")]:
        headers = [("Authorization", authorization), ("Connection", b"close")]
        expect_401(await send(client, rawhttp.request_bytes(method, target, headers)))


@pytest.mark.parametrize("authorization", BAD_AUTHORIZATION)
async def test_service_token_routes(client: TestClient, authorization: bytes) -> None:
    body = b'{"role": "student", "name": "Ann"}'
    headers = [
        ("Authorization", authorization),
        ("Content-Type", b"application/json"),
        ("Content-Length", str(len(body)).encode()),
        ("Connection", b"close"),
    ]
    expect_401(await send(client, rawhttp.request_bytes("PUT", "/api/v1/users/u-1", headers, body)))
    headers = [("Authorization", authorization), ("Connection", b"close")]
    expect_401(await send(client, rawhttp.request_bytes("GET", "/api/v1/admin/outbox", headers)))


async def test_a_good_token_still_works_next_to_the_bad_ones(
    client: TestClient, world: World
) -> None:
    user = await world.user("student")
    token = world.token(user).encode()
    headers = [("Authorization", b"Bearer " + token), ("Connection", b"close")]
    resp = await send(client, rawhttp.request_bytes("GET", "/api/v1/chats", headers))
    assert resp.status == 200, resp


@pytest.mark.parametrize(
    ("target", "authorization"),
    [
        ("/api/v1/ws?token=%FF%FE", None),  # percent-encoded bytes that are not UTF-8
        ("/api/v1/ws", b"Bearer \xff\xfe"),  # the token where a REST client puts it
        ("/api/v1/ws?token=%FF", b"\xff\xfe"),
    ],
)
async def test_the_websocket_upgrade(
    client: TestClient, target: str, authorization: bytes | None
) -> None:
    headers = list(WS_UPGRADE)
    if authorization is not None:
        headers.append(("Authorization", authorization))
    async with rawhttp.connection(client.server.host, client.server.port) as (reader, writer):
        writer.write(rawhttp.request_bytes("GET", target, headers))
        resp = await rawhttp.read_response(reader)
        assert resp.status == 101, resp  # upgraded, so that a browser sees the close code
        assert await rawhttp.websocket_close_code(reader) == 4401


async def test_a_webhook_signature_that_is_not_utf8(client: TestClient) -> None:
    body = b'{"type": "message"}'
    headers = [
        ("Pachca-Signature", b"\xff" * 64),
        ("Content-Length", str(len(body)).encode()),
        ("Connection", b"close"),
    ]
    expect_401(await send(client, rawhttp.request_bytes("POST", "/webhooks/pachca", headers, body)))
