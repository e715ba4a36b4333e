"""GET /api/v1/admin/outbox and POST /api/v1/admin/outbox/{id}/retry (service token)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge.runtime import utcnow
from store import outbox as outbox_store
from store.db import Database
from tests.conftest import SERVICE_TOKEN
from tests.world import World

ADMIN = {"Authorization": f"Bearer {SERVICE_TOKEN}"}


async def some_jobs(world: World) -> dict[str, Any]:
    """An enrollment and a message: an open_thread and a post_message job, both pending
    (Pachca is disabled in the default test config)."""
    teacher, student = await world.user("teacher"), await world.user("student")
    chat = (await world.enroll(student, teacher)).subject_chat
    message = await world.post(student, chat["id"], "hello")
    return {"chat": chat, "message": message}


async def listing(client: TestClient, query: str = "") -> tuple[int, Any]:
    resp = await client.get(f"/api/v1/admin/outbox{query}", headers=ADMIN)
    return resp.status, await resp.json()


async def test_needs_a_service_token(client: TestClient, world: World) -> None:
    student = await world.user("student")
    for headers in ({}, world.auth(student), {"Authorization": "Bearer nope"}):
        resp = await client.get("/api/v1/admin/outbox", headers=headers)
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "unauthorized"
        resp = await client.post("/api/v1/admin/outbox/1/retry", headers=headers)
        assert resp.status == 401


async def test_lists_jobs_of_a_status_in_queue_order(client: TestClient, world: World) -> None:
    made = await some_jobs(world)

    status, body = await listing(client, "?status=pending")

    assert status == 200
    kinds = [(j["kind"], j["payload"]) for j in body["jobs"]]
    assert kinds == [
        ("open_thread", {"chat_id": made["chat"]["id"]}),
        ("post_message", {"message_id": made["message"]["id"]}),
    ]
    job = body["jobs"][0]
    assert job["status"] == "pending"
    assert job["chat_id"] == made["chat"]["id"]
    assert set(job) >= {"id", "attempts", "next_attempt_at", "last_error", "created_at"}
    assert body["counts"] == {"pending": 2, "done": 0, "dead": 0}

    status, body = await listing(client)  # dead by default
    assert (status, body["jobs"]) == (200, [])


async def test_paging_with_limit_and_after_id(client: TestClient, world: World) -> None:
    await some_jobs(world)
    _, first = await listing(client, "?status=pending&limit=1")
    [job] = first["jobs"]
    _, rest = await listing(client, f"?status=pending&limit=1&after_id={job['id']}")
    assert [j["kind"] for j in rest["jobs"]] == ["post_message"]


@pytest.mark.parametrize(
    "query", ["?status=stuck", "?limit=0", "?limit=501", "?limit=x", "?after_id=-1"]
)
async def test_bad_parameters_are_400(client: TestClient, query: str) -> None:
    status, body = await listing(client, query)
    assert status == 400
    assert body["error"]["code"] == "invalid_request"


async def test_retry_requeues_a_dead_job(
    client: TestClient, world: World, database: Database
) -> None:
    await some_jobs(world)
    _, body = await listing(client, "?status=pending")
    job_id = body["jobs"][1]["id"]
    async with database.write() as conn:
        await outbox_store.bury(conn, job_id, error="gave up after 10 attempts", now=utcnow())
    _, dead = await listing(client, "?status=dead")
    assert [j["id"] for j in dead["jobs"]] == [job_id]

    resp = await client.post(f"/api/v1/admin/outbox/{job_id}/retry", headers=ADMIN)

    assert resp.status == 200
    job = (await resp.json())["job"]
    assert (job["id"], job["status"], job["attempts"]) == (job_id, "pending", 0)
    _, after = await listing(client, "?status=dead")
    assert after["jobs"] == []


async def test_retry_of_unknown_or_done_jobs(
    client: TestClient, world: World, database: Database
) -> None:
    await some_jobs(world)
    for job_id in ("999999", "abc"):
        resp = await client.post(f"/api/v1/admin/outbox/{job_id}/retry", headers=ADMIN)
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"

    _, body = await listing(client, "?status=pending")
    job_id = body["jobs"][0]["id"]
    async with database.write() as conn:
        await outbox_store.complete(conn, job_id, now=utcnow())
    resp = await client.post(f"/api/v1/admin/outbox/{job_id}/retry", headers=ADMIN)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "invalid_request"
