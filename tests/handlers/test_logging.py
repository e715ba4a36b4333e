"""Structured logs: one line per request with a request id; no token or secret, ever
(docs/operations.md)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient

from bridge.ops import logs
from tests.conftest import SERVICE_TOKEN
from tests.fakes.webhooks import message_event, signed
from tests.world import World


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    logs.configure("json", "debug", stream=stream)
    yield stream
    structlog.reset_defaults()


async def test_requests_log_one_json_line_each_without_secrets(
    json_logs: io.StringIO,
    client: TestClient,
    world: World,
    config_data: dict[str, Any],
) -> None:
    student, teacher = await world.user("student"), await world.user("teacher")
    chat = (await world.enroll(student, teacher)).subject_chat["id"]
    token = world.token(student)
    json_logs.seek(0)
    json_logs.truncate()

    resp = await client.get(
        "/api/v1/chats", headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-1"}
    )
    assert resp.headers["X-Request-ID"] == "req-1"
    await client.get(f"/api/v1/chats/{chat}", headers={"Authorization": "Bearer forged.x.y"})
    async with client.ws_connect(f"/api/v1/ws?token={token}") as ws:
        await ws.receive_json()
    raw, headers = signed(message_event(), "not-the-secret")
    await client.post("/webhooks/pachca", data=raw, headers=headers)

    text = json_logs.getvalue()
    for secret in (
        token,
        SERVICE_TOKEN,
        config_data["auth"]["jwt_secret"],
        "forged.x.y",
        headers["Pachca-Signature"],
    ):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = [entry for entry in lines if entry.get("event") == "request"]
    assert [r["path"] for r in requests][:2] == ["/api/v1/chats", f"/api/v1/chats/{chat}"]
    assert requests[0]["request_id"] == "req-1" and requests[0]["status"] == 200
    assert requests[1]["status"] == 401 and requests[1]["request_id"] != "req-1"
    assert any(r["path"] == "/api/v1/ws" for r in requests)  # logged without its query string


async def test_a_broken_log_sink_does_not_fail_requests(client: TestClient) -> None:
    broken = io.StringIO()
    broken.close()
    logs.configure("json", "info", stream=broken)
    try:
        resp = await client.get("/healthz")
        assert resp.status == 200
    finally:
        structlog.reset_defaults()
