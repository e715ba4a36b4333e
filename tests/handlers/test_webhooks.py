"""POST /webhooks/pachca at the edge: signatures, timestamps, rotation, source addresses, body
size, transient failures and metrics (docs/pachca.md)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from multidict import MultiDict
from sqlalchemy import text

from bot.signature import sign
from bridge.config import parse_config
from handlers.app import create_app
from handlers.keys import SERVICES
from store import new_messages as new_message_store
from store import waiting as waiting_store
from store.db import Database
from store.errors import DatabaseUnavailable
from store.tx import prepared
from tests.fakes.webhook_kit import (
    SECRET,
    build_forum,
    chat_messages,
    counts,
    deliver,
    deliver_ok,
    pachca_section,
)
from tests.fakes.webhooks import button_event, encode, message_event, reaction_event, signed
from tests.world import World

NOTHING = {"messages": 0, "webhook_deliveries": 0, "outbox": 0, "events": 0}


pytestmark = pytest.mark.config_sections(pachca=pachca_section())


async def app_with(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database, **pachca: Any
):
    data = {**config_data, "pachca": pachca_section(**pachca)}
    return await aiohttp_client(create_app(parse_config(data), db=database))


async def assert_unauthorized(resp: Any) -> None:
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthorized"


async def test_valid_signature_is_accepted_and_relayed(
    client: TestClient, world: World, database: Database
) -> None:
    forum = await build_forum(world, database)
    await deliver_ok(client, forum.teacher_says("Signed and sound"))
    messages = await chat_messages(world, forum.student, forum.subject_chat)
    assert [m["content"] for m in messages] == ["Signed and sound"]


@pytest.mark.parametrize(
    "signature",
    [None, "", "not-hex", "0" * 64, sign(b"some other body", SECRET), "ab" * 40],
    ids=["missing", "empty", "not-hex", "zeros", "other-body", "wrong-length"],
)
async def test_bad_or_missing_signature_is_401_and_stores_nothing(
    client: TestClient, world: World, database: Database, signature: str | None
) -> None:
    forum = await build_forum(world, database)
    before = await counts(database)
    raw = encode(forum.teacher_says())
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Pachca-Signature"] = signature
    await assert_unauthorized(await client.post("/webhooks/pachca", data=raw, headers=headers))
    assert await counts(database) == before
    assert await chat_messages(world, forum.student, forum.subject_chat) == []


async def test_wrong_secret_is_401(client: TestClient, world: World, database: Database) -> None:
    forum = await build_forum(world, database)
    before = await counts(database)
    await assert_unauthorized(await deliver(client, forum.teacher_says(), secret="not-the-secret"))
    assert await counts(database) == before


async def test_tampered_body_is_401(client: TestClient, world: World, database: Database) -> None:
    forum = await build_forum(world, database)
    body = forum.teacher_says("original")
    raw = encode(body)
    headers = {"Pachca-Signature": sign(raw, SECRET), "Content-Type": "application/json"}
    tampered = raw.replace(b"original", b"forged!!")
    before = await counts(database)
    await assert_unauthorized(await client.post("/webhooks/pachca", data=tampered, headers=headers))
    assert await counts(database) == before


@pytest.mark.parametrize(
    "skew", [-3600, -61, 61, 3600], ids=["hour-old", "stale", "ahead", "future"]
)
async def test_timestamp_outside_tolerance_is_401(
    client: TestClient, world: World, database: Database, skew: int
) -> None:
    forum = await build_forum(world, database)
    before = await counts(database)
    body = forum.teacher_says(webhook_timestamp=int(time.time()) + skew)
    await assert_unauthorized(await deliver(client, body))
    assert await counts(database) == before


async def test_timestamp_within_tolerance_is_accepted(
    client: TestClient, world: World, database: Database
) -> None:
    forum = await build_forum(world, database)
    await deliver_ok(client, forum.teacher_says(webhook_timestamp=int(time.time()) - 30))
    assert len(await chat_messages(world, forum.student, forum.subject_chat)) == 1


async def test_signed_body_without_timestamp_is_401(
    client: TestClient, world: World, database: Database
) -> None:
    forum = await build_forum(world, database)
    body = forum.teacher_says()
    del body["webhook_timestamp"]
    await assert_unauthorized(await deliver(client, body))


async def test_rotated_secrets_both_verify(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database
) -> None:
    client = await app_with(
        aiohttp_client, config_data, database, signing_secret=["new-secret", "old-secret"]
    )
    world = World(client, service_token=config_data["auth"]["service_tokens"][0])
    forum = await build_forum(world, database)
    assert (await deliver(client, forum.teacher_says("new"), secret="new-secret")).status == 200
    assert (await deliver(client, forum.teacher_says("old"), secret="old-secret")).status == 200
    await assert_unauthorized(await deliver(client, forum.teacher_says("x"), secret="other"))
    contents = [m["content"] for m in await chat_messages(world, forum.student, forum.subject_chat)]
    assert contents == ["new", "old"]


async def test_a_reloaded_secret_applies_to_the_next_request(
    client: TestClient, world: World, database: Database, config_data: dict[str, Any]
) -> None:
    forum = await build_forum(world, database)
    live = client.app[SERVICES].rt.live
    live.current = parse_config({**config_data, "pachca": pachca_section(signing_secret="rotated")})
    await assert_unauthorized(await deliver(client, forum.teacher_says()))
    assert (await deliver(client, forum.teacher_says(), secret="rotated")).status == 200


async def test_no_secret_configured_refuses_everything(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database
) -> None:
    client = await app_with(aiohttp_client, config_data, database, signing_secret="")
    # Even a body "signed" with the empty key, which anyone could compute.
    await assert_unauthorized(await deliver(client, message_event(), secret=""))


async def test_signed_body_that_is_not_json_is_400(client: TestClient, database: Database) -> None:
    raw = b'{"type": "message", '
    headers = {"Pachca-Signature": sign(raw, SECRET)}
    resp = await client.post("/webhooks/pachca", data=raw, headers=headers)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_request"
    assert await counts(database) == NOTHING


async def test_unknown_and_invalid_events_are_acknowledged_and_ignored(
    client: TestClient, database: Database
) -> None:
    now = int(time.time())
    unknown = {"type": "sticker", "event": "new", "id": 1, "webhook_timestamp": now}
    broken = message_event()
    broken["id"] = "not a number"
    for body in (unknown, broken, button_event()):
        await deliver_ok(client, body)
    assert await counts(database) == NOTHING


async def test_body_over_max_body_bytes_is_413(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database
) -> None:
    data = {**config_data, "server": {"max_body_bytes": 2048}}
    client = await aiohttp_client(create_app(parse_config(data), db=database))
    resp = await deliver(client, message_event(content="x" * 4096))
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "payload_too_large"


# --- source addresses ------------------------------------------------------------------------


async def test_source_outside_allowed_ips_is_403(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database
) -> None:
    client = await app_with(aiohttp_client, config_data, database, allowed_ips=["37.200.70.177"])
    resp = await deliver(client, message_event())
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "forbidden"
    assert await counts(database) == NOTHING


async def test_allowed_network_admits_the_direct_peer(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database
) -> None:
    client = await app_with(
        aiohttp_client, config_data, database, allowed_ips=["37.200.70.177", "127.0.0.0/8"]
    )
    assert (await deliver(client, reaction_event())).status == 200


async def test_forwarded_for_from_a_trusted_proxy_is_believed(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database
) -> None:
    client = await app_with(
        aiohttp_client,
        config_data,
        database,
        allowed_ips=["37.200.70.177"],
        trusted_proxies=["127.0.0.1", "10.0.0.0/8"],
    )
    # Pachca -> 10.1.2.3 (an inner proxy) -> 127.0.0.1 (the test client, our outer proxy).
    for forwarded in ("37.200.70.177", "203.0.113.9, 37.200.70.177, 10.1.2.3"):
        resp = await deliver(client, reaction_event(), headers={"X-Forwarded-For": forwarded})
        assert resp.status == 200, forwarded
    # A client-supplied first hop does not help: the nearest untrusted address counts.
    for forwarded in ("203.0.113.9", "37.200.70.177, 203.0.113.9", "garbage", ""):
        resp = await deliver(client, reaction_event(), headers={"X-Forwarded-For": forwarded})
        assert resp.status == 403, forwarded


async def test_every_forwarded_for_line_counts_not_just_the_first(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database
) -> None:
    client = await app_with(
        aiohttp_client,
        config_data,
        database,
        allowed_ips=["37.200.70.177"],
        trusted_proxies=["127.0.0.1", "10.0.0.0/8"],
    )
    raw, signed_headers = signed(reaction_event(), SECRET)

    async def deliver_through(*forwarded: str) -> int:
        headers = MultiDict(signed_headers)
        for line in forwarded:  # a proxy that adds a line of its own instead of appending
            headers.add("X-Forwarded-For", line)
        return (await client.post("/webhooks/pachca", data=raw, headers=headers)).status

    # The client forged the first line; the proxy's line names the real source.
    assert await deliver_through("37.200.70.177", "203.0.113.9") == 403
    assert await deliver_through("37.200.70.177", "203.0.113.9, 10.1.2.3") == 403
    assert await deliver_through("37.200.70.177, 203.0.113.9", "10.1.2.3") == 403
    # Lines read in order, as one list: Pachca, then an inner proxy on a line of its own.
    assert await deliver_through("203.0.113.9, 37.200.70.177", "10.1.2.3") == 200
    assert await deliver_through("37.200.70.177", "10.1.2.3") == 200


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database
) -> None:
    client = await app_with(aiohttp_client, config_data, database, allowed_ips=["37.200.70.177"])
    resp = await deliver(client, reaction_event(), headers={"X-Forwarded-For": "37.200.70.177"})
    assert resp.status == 403


# --- failures and metrics --------------------------------------------------------------------


async def test_database_failure_is_503_and_leaves_nothing_half_written(
    client: TestClient, world: World, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain reply whose write fails in the database (the driver's own error)."""
    forum = await build_forum(world, database)
    before = await counts(database)
    # SQLite: the answer's end of the chat's wait fails after the delivery key, the message
    # row and its event were written. PostgreSQL writes all of that but the delivery key in
    # one statement: it fails after the delivery key.
    broken = prepared(text("SELECT * FROM no_such_table"))

    body = forum.teacher_says("Must not be lost")
    with monkeypatch.context() as patch:
        if database.is_sqlite:
            patch.setattr(waiting_store, "_STATE", broken)
        else:
            patch.setattr(new_message_store, "_ADD_MANY", broken)
        resp = await deliver(client, body)
    assert resp.status == 503
    assert resp.headers["Retry-After"]
    assert await counts(database) == before
    # Pachca delivers again once the database is back: processed once, as if the first time.
    await deliver_ok(client, body)
    messages = await chat_messages(world, forum.student, forum.subject_chat)
    assert [m["content"] for m in messages] == ["Must not be lost"]


async def test_database_failure_on_the_general_path_is_503_too(
    client: TestClient, world: World, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An edit of a message never seen is relayed as new; the failure comes from a service."""
    forum = await build_forum(world, database)
    before = await counts(database)

    real_add = new_message_store.add

    async def add_then_fail(*args: Any, **kwargs: Any) -> Any:
        # Fails after the delivery key, the message row and its event were written in the
        # transaction.
        await real_add(*args, **kwargs)
        raise DatabaseUnavailable("ConnectionResetError")

    body = forum.teacher_says("Must not be lost", event="update")
    with monkeypatch.context() as patch:
        patch.setattr(new_message_store, "add", add_then_fail)
        resp = await deliver(client, body)
    assert resp.status == 503
    assert await counts(database) == before
    await deliver_ok(client, body)
    messages = await chat_messages(world, forum.student, forum.subject_chat)
    assert [m["content"] for m in messages] == ["Must not be lost"]


async def test_unreachable_database_is_503(
    client: TestClient, world: World, database: Database
) -> None:
    forum = await build_forum(world, database)
    rt = client.app[SERVICES].rt
    gone = Database("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    rt.db = gone
    try:
        resp = await deliver(client, forum.teacher_says())
        assert resp.status == 503
    finally:
        rt.db = database
        await gone.dispose()


async def test_outcomes_are_counted_in_metrics(
    client: TestClient, world: World, database: Database
) -> None:
    forum = await build_forum(world, database)
    body = forum.teacher_says()
    await deliver_ok(client, body)
    await deliver_ok(client, body)
    await deliver(client, body, secret="wrong")
    text = await (await client.get("/metrics")).text()
    for outcome in ("accepted", "duplicate", "unauthorized"):
        assert f'bridge_webhook_events_total{{outcome="{outcome}"}} 1.0' in text
