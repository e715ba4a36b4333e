"""Assertions on the contract's shapes, shared by the end-to-end tests."""

from __future__ import annotations

from typing import Any

CHAT_KEYS = {
    "id",
    "type",
    "title",
    "enrollment_id",
    "subject",
    "is_active",
    "participants",
    "last_message",
    "unread_count",
}


async def expect_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the API's error body: this status, this code, a message."""
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body
