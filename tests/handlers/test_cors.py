"""Calls from other origins (docs/api.md, CORS), with plain requests: preflights, the
allow-origin header on answers and errors for listed origins only, none on the platform API,
and the feed's Origin check. tests/web/test_cross_origin.py does the same from a real page."""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.contract import expect_error
from tests.world import World

SCHOOL = "https://school.example"
OTHER = "https://evil.example"

pytestmark = pytest.mark.config_sections(server={"cors_origins": [SCHOOL, "http://localhost:3000"]})


def preflight(origin: str, method: str, headers: str = "authorization, content-type") -> dict:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_a_preflight_from_a_listed_origin_is_answered(
    client: TestClient, world: World
) -> None:
    resp = await client.options("/api/v1/chats/1/messages", headers=preflight(SCHOOL, "POST"))
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == SCHOOL
    assert set(resp.headers["Access-Control-Allow-Methods"].split(", ")) == {"GET", "POST"}
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "Origin" in resp.headers.getall("Vary")
    # Each path names its own methods; the reactions' path included.
    resp = await client.options("/api/v1/messages/5", headers=preflight(SCHOOL, "PATCH"))
    assert set(resp.headers["Access-Control-Allow-Methods"].split(", ")) == {"PATCH", "DELETE"}
    resp = await client.options(
        "/api/v1/messages/5/reactions/%F0%9F%91%8D", headers=preflight(SCHOOL, "PUT")
    )
    assert resp.status == 204
    assert set(resp.headers["Access-Control-Allow-Methods"].split(", ")) == {"PUT", "DELETE"}


async def test_answers_and_errors_carry_the_origin_for_listed_origins(
    client: TestClient, world: World
) -> None:
    student = await world.user("student")
    teacher = await world.user("teacher")
    chat_id = (await world.enroll(student, teacher)).subject_chat["id"]
    auth = world.auth(student)
    answers = [
        await client.get("/api/v1/chats", headers={**auth, "Origin": SCHOOL}),
        await client.post(
            f"/api/v1/chats/{chat_id}/messages",
            json={"content": "hi"},
            headers={**auth, "Origin": SCHOOL},
        ),
    ]
    assert [r.status for r in answers] == [200, 201]
    errors = [
        await client.get("/api/v1/chats", headers={"Origin": SCHOOL}),  # 401
        await client.get("/api/v1/chats/999999", headers={**auth, "Origin": SCHOOL}),  # 404
        await client.post(  # 400
            f"/api/v1/chats/{chat_id}/messages", json={}, headers={**auth, "Origin": SCHOOL}
        ),
    ]
    assert [r.status for r in errors] == [401, 404, 400]
    for resp in answers + errors:
        assert resp.headers["Access-Control-Allow-Origin"] == SCHOOL
        assert "Origin" in resp.headers.getall("Vary")
        assert "Retry-After" in resp.headers["Access-Control-Expose-Headers"]


async def test_other_origins_get_no_cors_header(client: TestClient, world: World) -> None:
    student = await world.user("student")
    resp = await client.get("/api/v1/chats", headers={**world.auth(student), "Origin": OTHER})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "Origin" in resp.headers.getall("Vary")
    resp = await client.options("/api/v1/chats", headers=preflight(OTHER, "GET"))
    await expect_error(resp, 405, "method_not_allowed")
    assert "Access-Control-Allow-Origin" not in resp.headers
    # An origin differing only in scheme or port is another origin.
    for near in ("http://school.example", "https://school.example:8443"):
        resp = await client.options("/api/v1/chats", headers=preflight(near, "GET"))
        assert resp.status == 405 and "Access-Control-Allow-Origin" not in resp.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/users/u1"),
        ("GET", "/api/v1/events"),
        ("PUT", "/api/v1/enrollments/e1"),
        ("GET", "/api/v1/admin/outbox"),
    ],
)
async def test_the_platform_api_never_answers_cors(
    client: TestClient, world: World, method: str, path: str
) -> None:
    resp = await client.options(path, headers=preflight(SCHOOL, method))
    await expect_error(resp, 405, "method_not_allowed")
    assert "Access-Control-Allow-Origin" not in resp.headers
    resp = await client.request(method, path, headers={**world.service, "Origin": SCHOOL})
    assert "Access-Control-Allow-Origin" not in resp.headers


async def test_the_feed_refuses_an_upgrade_from_an_origin_not_listed(
    client: TestClient, world: World
) -> None:
    token = world.token(await world.user("student"))
    url = f"/api/v1/ws?token={token}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(url, origin=OTHER)
    assert refused.value.status == 403
    own = f"http://{client.server.host}:{client.server.port}"
    for origin in (SCHOOL, own, None):  # listed, the service's own, or none sent
        ws = await client.ws_connect(url, origin=origin)
        assert (await ws.receive_json())["type"] == "ready"
        await ws.close()


@pytest.mark.config_sections(server={})
async def test_without_cors_origins_nothing_changes(client: TestClient, world: World) -> None:
    resp = await client.options("/api/v1/chats", headers=preflight(SCHOOL, "GET"))
    await expect_error(resp, 405, "method_not_allowed")
    resp = await client.get("/api/v1/chats", headers={"Origin": SCHOOL})
    assert "Access-Control-Allow-Origin" not in resp.headers
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await client.ws_connect("/api/v1/ws?token=x", origin=SCHOOL)
