"""The WebSocket feed's hardening (docs/websocket.md), with real sockets and the real app.

- Open sockets follow the user: a role change, a new key or audience, or a lower lifetime cap
  closes the affected sockets with 4401 on every instance, and the client that reconnects
  gets what it may see now.
- At most limits.sockets_per_user sockets per user and instance: the next gets 4429.
- Audiences compare ids exactly: `%`, `_`, case and commas in an id gain it nothing.

Each test runs on the in-process feed (one app) and on the Redis feed with two app instances
on one database, where the change is made through one instance and a socket on the other
must close.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from aiohttp import WSMsgType

from bridge.config import load_config
from handlers.app import create_app
from handlers.keys import SERVICES
from store.db import Database
from tests.conftest import SERVICE_TOKEN
from tests.eventually import eventually
from tests.handlers.test_ws import (
    REDIS_URL,
    WAIT_S,
    Cluster,
    Frame,
    build,
    message_id,
    redis_reachable,
)
from tests.world import World

NEW_SECRET = "rotated-jwt-secret-of-sufficient-length"


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def cluster(
    backend: str, aiohttp_client: Any, database: Database, config_data: dict[str, Any]
) -> AsyncIterator[Cluster]:
    c = await build(backend, aiohttp_client, database, config_data)
    yield c
    for ws in c.sockets:
        await ws.close()


async def settle_post(cluster: Cluster, user: str, chat_id: int) -> int:
    """Post, and wait until every instance has fanned the message out."""
    mid = (await cluster.world.post(user, chat_id, "after the change"))["id"]
    await cluster.settle(lambda f: message_id(f) == mid)
    return mid


# --- role changes --------------------------------------------------------------------------


async def test_admin_demoted_to_parent_is_closed_and_comes_back_as_a_parent(cluster: Cluster):
    world = cluster.world
    await cluster.watch()
    student, teacher = await world.user("student"), await world.user("teacher")
    chat = (await world.enroll(student, teacher)).subject_chat["id"]
    admin = await world.user("admin", name="Ada")
    sock = await cluster.join(admin)  # instance 0; the change goes through the last instance

    await world.put_user(admin, role="parent", name="Ada")
    assert await sock.closed_with() == 4401

    again = await cluster.connect(admin)
    _, ready = await again.ready()
    assert ready["user"]["role"] == "parent"
    assert ready["chat_ids"] == []
    await settle_post(cluster, student, chat)
    await again.quiet()  # a parent gets no chat's messages


async def test_student_made_parent_is_closed_and_loses_the_chats(cluster: Cluster):
    # (A teacher who still has chats keeps the role, 409: a student's may change.)
    world = cluster.world
    await cluster.watch()
    student, teacher = await world.user("student", name="S"), await world.user("teacher")
    chat = (await world.enroll(student, teacher)).subject_chat["id"]
    sock = await cluster.join(student)
    await settle_post(cluster, teacher, chat)
    await sock.until(lambda f: f["type"] == "message.created")

    await world.put_user(student, role="parent", name="S")
    assert await sock.closed_with() == 4401

    again = await cluster.connect(student)
    _, ready = await again.ready()
    assert ready["chat_ids"] == []
    await settle_post(cluster, teacher, chat)
    await again.quiet()
    resp = await world.client.get(f"/api/v1/chats/{chat}", headers=world.auth(student))
    assert resp.status == 403


async def test_a_put_that_keeps_the_role_keeps_the_socket(cluster: Cluster):
    world = cluster.world
    await cluster.watch()
    student, teacher = await world.user("student"), await world.user("teacher", name="T")
    chat = (await world.enroll(student, teacher)).subject_chat["id"]
    sock = await cluster.join(teacher)
    await world.put_user(teacher, role="teacher", name="T. Renamed", email="t@example.com")
    mid = await settle_post(cluster, student, chat)
    _, got = await sock.until(lambda f: f["type"] == "message.created")
    assert got["message"]["id"] == mid


# --- token rules changed by a config reload ------------------------------------------------


async def file_cluster(
    backend: str,
    aiohttp_client: Any,
    database: Database,
    config_data: dict[str, Any],
    path: Path,
) -> Cluster:
    """Like test_ws's cluster, with every instance reading one config file. Their file
    watchers do not poll: a reload happens only when asked (SIGHUP does the same) or when
    another instance tells of a change, so the second instance can only learn of a change
    made through the first from the first."""
    if backend == "redis":
        if not await redis_reachable():
            pytest.skip(f"Redis is not reachable at {REDIS_URL} (set BRIDGE_TEST_REDIS_URL)")
        config_data["feed"] = {
            "backend": "redis",
            "url": REDIS_URL,
            "channel": f"bridge-test-{uuid.uuid4().hex}",
        }
    rewrite(path, config_data)
    clients = []
    for _ in range(2 if backend == "redis" else 1):
        app = create_app(load_config(path), config_path=path, db=database)
        app[SERVICES].watcher.poll_s = 3600.0
        clients.append(await aiohttp_client(app))
    return Cluster(backend, clients, World(clients[-1], service_token=SERVICE_TOKEN))


@pytest.fixture
async def reloading(
    backend: str,
    aiohttp_client: Any,
    database: Database,
    config_data: dict[str, Any],
    tmp_path: Path,
) -> Any:
    path = tmp_path / "config.yaml"
    c = await file_cluster(backend, aiohttp_client, database, config_data, path)
    yield c, config_data, path
    for ws in c.sockets:
        await ws.close()


def rewrite(path: Path, config_data: dict[str, Any], **auth: Any) -> None:
    config_data["auth"] = {**config_data["auth"], **auth}
    path.write_text(yaml.safe_dump(config_data))  # small and local: no need for a thread


async def test_key_rotation_by_reload_closes_sockets_on_every_instance(reloading: Any):
    cluster, config_data, path = reloading
    world, last = cluster.world, len(cluster.clients) - 1
    student, teacher = await world.user("student"), await world.user("teacher")
    await world.enroll(student, teacher)
    old_token = world.token(student)
    here = await cluster.join(student, token=old_token)
    there = await cluster.join(teacher, instance=last)
    rest = cluster.clients[last]
    headers = {"Authorization": f"Bearer {old_token}"}
    assert (await rest.get("/api/v1/chats", headers=headers)).status == 200  # now cached

    rewrite(path, config_data, jwt_secret=NEW_SECRET)
    assert cluster.app(0)[SERVICES].watcher.reload()  # what SIGHUP does, on the first only
    assert await here.closed_with() == 4401
    assert await there.closed_with() == 4401

    # The cached REST verification does not outlive the key either, on either instance.
    for client in cluster.clients:
        assert (await client.get("/api/v1/chats", headers=headers)).status == 401
    stale = await cluster.connect(student, token=old_token, instance=last)
    assert await stale.closed_with() == 4401
    rotated = World(rest, service_token=SERVICE_TOKEN, jwt_secret=NEW_SECRET)
    _, ready = await (await cluster.connect(student, token=rotated.token(student))).ready()
    assert ready["user"]["id"] == student


async def test_audience_change_by_reload_closes_sockets_on_every_instance(reloading: Any):
    cluster, config_data, path = reloading
    world, last = cluster.world, len(cluster.clients) - 1
    student = await world.user("student")
    here = await cluster.join(student)
    there = await cluster.join(student, instance=last)

    rewrite(path, config_data, jwt_audience="forum-web")
    assert cluster.app(0)[SERVICES].watcher.reload()
    assert await here.closed_with() == 4401
    assert await there.closed_with() == 4401

    no_aud = await cluster.connect(student, instance=last)
    assert await no_aud.closed_with() == 4401
    with_aud = world.token(student, aud="forum-web")
    _, ready = await (await cluster.connect(student, token=with_aud, instance=last)).ready()
    assert ready["user"]["id"] == student


async def test_a_lower_lifetime_cap_closes_sockets_whose_token_lives_longer(reloading: Any):
    cluster, config_data, path = reloading
    world, last = cluster.world, len(cluster.clients) - 1
    student = await world.user("student")
    long_lived = await cluster.join(student, token=world.token(student, ttl=3600), instance=last)
    short_lived = await cluster.join(student, token=world.token(student, ttl=600), instance=last)

    rewrite(path, config_data, max_token_ttl_s=600)
    assert cluster.app(0)[SERVICES].watcher.reload()
    assert await long_lived.closed_with() == 4401
    await short_lived.quiet()  # its token is still acceptable; checked after the other closed


# --- sockets per user ----------------------------------------------------------------------


async def test_the_eleventh_socket_of_a_user_is_closed_with_4429(cluster: Cluster):
    world = cluster.world
    user = await world.user("student")
    held = [await cluster.join(user) for _ in range(10)]
    extra = await cluster.connect(user)
    msg = await extra.ws.receive(timeout=WAIT_S)
    assert msg.type is WSMsgType.CLOSE, msg  # before any frame: no ready
    assert extra.ws.close_code == 4429

    # Others are not affected, and closing one makes room.
    await held[0].quiet()
    other = await cluster.join(await world.user("student"))
    await other.quiet()
    await held[0].ws.close()
    hub = cluster.app(0)[SERVICES].hub
    await eventually(lambda: len(hub.conns) == 10, what="the closed socket to leave")
    await (await cluster.connect(user)).ready()
    if len(cluster.clients) > 1:
        # Counted per instance: the other instance takes the user's sockets too.
        await cluster.join(user, instance=1)


async def test_sockets_per_user_is_configurable(
    backend: str, aiohttp_client: Any, database: Database, config_data: dict[str, Any]
):
    config_data["limits"] = {**config_data["limits"], "sockets_per_user": 2}
    cluster = await build(backend, aiohttp_client, database, config_data)
    user = await cluster.world.user("teacher")
    await cluster.join(user)
    await cluster.join(user)
    extra = await cluster.connect(user)
    assert await extra.closed_with() == 4429
    for ws in cluster.sockets:
        await ws.close()


# --- audiences -----------------------------------------------------------------------------

# Each would match another id's audience row under LIKE '%,<id>,%' (SQLite ignores case), or
# split from a comma-joined audience.
PARENTS = ["%", "S_", "t1", "x", "y", "S1,T1", "_"]


async def put(cluster: Cluster, user_id: str, **body: object) -> None:
    world = cluster.world
    resp = await world.client.put(
        f"/api/v1/users/{quote(user_id, safe='')}", json=body, headers=world.service
    )
    assert resp.status == 200, await resp.text()


async def test_odd_ids_receive_no_one_elses_events(cluster: Cluster):
    await cluster.watch()
    await put(cluster, "T1", role="tutor", name="Old tutor")
    await put(cluster, "x,y", role="tutor", name="New tutor")
    await put(cluster, "S1", role="student", name="Student", tutor_id="T1")
    await put(cluster, "teach", role="teacher", name="Teacher")
    for parent in PARENTS:
        await put(cluster, parent, role="parent", name=f"Parent {parent}")
    enrolled = await cluster.world.enroll("S1", "teach")
    tutor_chat = enrolled.tutor_chat
    assert tutor_chat is not None
    live = {p: await cluster.join(p) for p in PARENTS}
    old_tutor = await cluster.join("T1")

    # Addressed to S1, T1 and "x,y": the old tutor hears that the chat went away...
    await put(cluster, "S1", role="student", name="Student", tutor_id="x,y")
    _, lost = await old_tutor.until(lambda f: f["type"] == "chat.updated")
    assert lost["chat_id"] == tutor_chat["id"]
    # ... and a deleted enrollment is told to S1, "x,y" and the teacher.
    resp = await cluster.world.client.delete(
        f"/api/v1/enrollments/{enrolled.enrollment_id}", headers=cluster.world.service
    )
    assert resp.status == 204
    await cluster.settle(lambda f: f["type"] == "chat.deleted")
    await cluster.settle(lambda f: f["type"] == "chat.deleted")  # the second chat
    for sock in live.values():
        await sock.quiet()  # nothing came live, whatever the id

    def addressed(frames: list[Frame]) -> list[tuple[str, int]]:
        return [(f["type"], f["chat_id"]) for f in frames]

    for parent in PARENTS:
        replayed, _ = await (await cluster.connect(parent, since=0)).ready()
        assert replayed == [], parent
    # The rows do reach the ids they name, exactly.
    replayed, _ = await (await cluster.connect("T1", since=0)).ready()
    assert ("chat.updated", tutor_chat["id"]) in addressed(replayed)
    replayed, _ = await (await cluster.connect("x,y", since=0)).ready()
    assert ("chat.deleted", tutor_chat["id"]) in addressed(replayed)
