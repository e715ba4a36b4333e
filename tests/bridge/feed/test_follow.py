"""The hub keeps sockets following their user where the end-to-end tests cannot time it: a
change that lands while a socket is still authenticating, and changes whose control message
was lost (caught when the feed reconnects, and by the periodic sweep)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge.auth import Principal
from bridge.config import Config
from bridge.feed import hub as hub_module
from bridge.feed.hub import Hub
from handlers.app import create_app
from handlers.keys import SERVICES
from store.db import Database
from tests.bridge.feed.test_hub import FakeConn
from tests.conftest import SERVICE_TOKEN
from tests.eventually import eventually
from tests.world import World


def conn_for(world: World, user_id: str, role: str) -> FakeConn:
    conn = FakeConn(Principal(user_id, role, "Name"))
    conn.token = world.token(user_id)
    return conn


async def test_a_role_change_during_authentication_closes_the_joining_socket(
    client: TestClient, world: World
) -> None:
    hub: Hub = client.server.app[SERVICES].hub
    teacher = await world.user("teacher", name="Name")
    seen = hub.changes  # the socket handler notes this before it reads the user
    conn = conn_for(world, teacher, "teacher")  # ... and read the old role
    await world.put_user(teacher, role="parent", name="Name")  # lands before the join

    await hub.join(conn, since=None, expires_at=None, changes_seen=seen)
    await eventually(lambda: conn.closed == 4401, what="the 4401 close")
    assert conn not in hub.conns


async def test_a_join_with_nothing_changed_meanwhile_goes_live(
    client: TestClient, world: World
) -> None:
    hub: Hub = client.server.app[SERVICES].hub
    teacher = await world.user("teacher", name="Name")
    seen = hub.changes
    other = await world.user("student")
    await world.put_user(other, role="parent", name="Other")  # someone else's change

    conn = conn_for(world, teacher, "teacher")
    await hub.join(conn, since=None, expires_at=None, changes_seen=seen)
    assert conn.closed is None and conn in hub.conns
    hub.leave(conn)


async def test_a_lost_role_change_is_caught_when_the_feed_resyncs(
    client: TestClient, world: World, monkeypatch: Any
) -> None:
    hub: Hub = client.server.app[SERVICES].hub
    rt = client.server.app[SERVICES].rt
    changed, kept = await world.user("teacher", name="Name"), await world.user("student")
    # The control message never arrives (as if lost on the way from another instance).
    monkeypatch.setattr(rt.feed, "publish_control", lambda control: None)
    conns = [conn_for(world, changed, "teacher"), conn_for(world, kept, "student")]
    for conn in conns:
        await hub.join(conn, since=None, expires_at=None)
    await world.put_user(changed, role="parent", name="Name")
    assert conns[0].closed is None

    rt.feed._resynced()  # what the Redis feed does when it has reconnected
    await eventually(lambda: conns[0].closed == 4401, what="the 4401 close")
    await eventually(lambda: not hub.following.rechecking, what="the re-check to end")
    assert conns[1].closed is None and conns[1] in hub.conns
    hub.leave(conns[1])


async def test_a_lost_role_change_is_caught_by_the_periodic_sweep(
    aiohttp_client: Any, database: Database, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_module, "CHECK_INTERVAL_S", 0.05)
    monkeypatch.setattr(hub_module, "SWEEP_EVERY_CHECKS", 2)
    client = await aiohttp_client(create_app(config, db=database))
    world = World(client, service_token=SERVICE_TOKEN)
    hub: Hub = client.server.app[SERVICES].hub
    rt = client.server.app[SERVICES].rt
    changed = await world.user("teacher", name="Name")
    monkeypatch.setattr(rt.feed, "publish_control", lambda control: None)  # lost
    conn = conn_for(world, changed, "teacher")
    await hub.join(conn, since=None, expires_at=None)
    await world.put_user(changed, role="parent", name="Name")
    await eventually(lambda: conn.closed == 4401, what="the sweep to close the socket")
