"""Random bodies and headers against POST /webhooks/pachca.

Unsigned (or wrongly signed) input is always refused and stores nothing; signed input of any
shape never makes the endpoint fail (no 5xx), whatever it does with it.
"""

from __future__ import annotations

import json
import time

import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.signature import sign
from store.db import Database
from tests.fakes.webhook_kit import (
    BOT_USER_ID,
    SECRET,
    TEACHER_PACHCA_ID,
    TUTOR_PACHCA_ID,
    Forum,
    build_forum,
    counts,
    pachca_section,
)
from tests.fakes.webhooks import encode, message_event
from tests.world import World

FUZZ = settings(
    max_examples=120,
    deadline=None,
    # The app and its database are built once per test and shared by every example: that is
    # the point (state accumulates), not an accident.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80)
hex64 = st.text(alphabet="0123456789abcdefABCDEF", min_size=64, max_size=64)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.sampled_from(["2025-05-15T14:30:00.000Z", "/link ABC", "/threads", "", "\x00"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
FIELDS = [
    "type",
    "event",
    "id",
    "entity_type",
    "entity_id",
    "chat_id",
    "content",
    "user_id",
    "created_at",
    "changed_at",
    "url",
    "parent_message_id",
    "thread",
    "webhook_timestamp",
    "extra",
]


pytestmark = pytest.mark.config_sections(pachca=pachca_section())


@pytest.fixture
async def forum(world: World, database: Database) -> Forum:
    return await build_forum(world, database)


@pytest.fixture
async def baseline(forum: Forum, database: Database) -> dict[str, int]:
    """Row counts once the forum is set up, before any example runs."""
    return await counts(database)


@st.composite
def bodies(draw: st.DrawFn, forum: Forum) -> bytes:
    """Raw bodies: bytes, JSON of any shape, and near-valid message events."""
    kind = draw(st.sampled_from(["bytes", "json", "event"]))
    if kind == "bytes":
        return draw(st.binary(max_size=600))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    body = message_event(
        draw(st.sampled_from(["new", "update", "delete"])),
        id=draw(st.integers(1, 30)),
        chat_id=draw(st.sampled_from([forum.thread_chat_id, forum.tutor_thread_chat_id, 9012])),
        entity_type=draw(st.sampled_from(["thread", "user", "discussion"])),
        user_id=draw(st.sampled_from([TEACHER_PACHCA_ID, TUTOR_PACHCA_ID, BOT_USER_ID, 2345])),
        content=draw(st.sampled_from(["hi", "", "/help", "/link X", "/threads", "x\x00y"])),
        parent_message_id=draw(st.none() | st.integers(1, 30)),
    )
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            body.pop(key, None)
        else:
            body[key] = draw(json_values)
    return encode(body)


@st.composite
def headers(draw: st.DrawFn, raw: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    right = sign(raw, SECRET)
    off_by_one = right[:-1] + ("1" if right[-1] == "0" else "0")
    signature = draw(
        st.none()
        | printable
        | hex64
        | st.just(sign(raw, "a-wrong-secret"))
        | st.just(sign(raw + b" ", SECRET))  # the right key over other bytes
        | st.just(" " + off_by_one)
        | st.just(right.upper()[:-1] + "G")
    )
    if signature is not None:
        out["Pachca-Signature"] = signature
    for name in ("X-Forwarded-For", "Content-Type", "X-Real-IP"):
        value = draw(st.none() | printable)
        if value is not None:
            out[name] = value
    return out


@FUZZ
@given(data=st.data())
async def test_unsigned_input_is_refused_and_stores_nothing(
    client: TestClient,
    database: Database,
    forum: Forum,
    baseline: dict[str, int],
    data: st.DataObject,
) -> None:
    raw = data.draw(bodies(forum))
    resp = await client.post("/webhooks/pachca", data=raw, headers=data.draw(headers(raw)))
    assert resp.status == 401, await resp.text()
    assert (await resp.json())["error"]["code"] == "unauthorized"
    assert await counts(database) == baseline


@FUZZ
@given(data=st.data())
async def test_signed_input_of_any_shape_never_fails_the_endpoint(
    client: TestClient, database: Database, forum: Forum, data: st.DataObject
) -> None:
    raw = data.draw(bodies(forum))
    if data.draw(st.booleans()):
        # Give a JSON object a fresh timestamp, so it gets past the replay check.
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if isinstance(body, dict) and "webhook_timestamp" in body:
            body["webhook_timestamp"] = int(time.time())
            raw = encode(body)
    headers = {"Pachca-Signature": sign(raw, SECRET), "Content-Type": "application/json"}
    resp = await client.post("/webhooks/pachca", data=raw, headers=headers)
    assert resp.status in (200, 400, 401), await resp.text()
    if resp.status == 200:
        assert await resp.json() == {"ok": True}
