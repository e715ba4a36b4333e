"""What admins see of the outbox: jobs by status, and putting a dead job back in the queue."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from typing_extensions import TypedDict

from bridge.errors import InvalidRequest, NotFound
from bridge.forum.views import IsoTime, iso
from bridge.runtime import Runtime, utcnow
from store import outbox as outbox_store

MAX_LIMIT = 500


class OutboxJob(TypedDict):
    id: int
    chat_id: int | None
    lane: str
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    next_attempt_at: IsoTime | None
    lease_until: IsoTime | None
    last_error: str | None
    created_at: IsoTime
    updated_at: IsoTime


class OutboxPage(TypedDict):
    jobs: list[OutboxJob]
    counts: dict[str, int]


class JobAnswer(TypedDict):
    job: OutboxJob


def job_obj(row: Mapping[str, Any]) -> OutboxJob:
    return {
        "id": row["id"],
        "chat_id": row["chat_id"],
        "lane": row["lane"],
        "kind": row["kind"],
        "payload": row["payload"],
        "status": row["status"],
        "attempts": row["attempts"],
        "next_attempt_at": iso(row["next_attempt_at"]),
        "lease_until": iso(row["lease_until"]),
        "last_error": row["last_error"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


class OutboxAdmin:
    def __init__(self, rt: Runtime):
        self.rt = rt

    async def list(self, status: str, *, limit: int | None, after_id: int | None) -> OutboxPage:
        if status not in outbox_store.STATUSES:
            raise InvalidRequest(f"status must be one of {', '.join(outbox_store.STATUSES)}")
        if limit is None or not 1 <= limit <= MAX_LIMIT:
            raise InvalidRequest(f"limit must be an integer from 1 to {MAX_LIMIT}")
        if after_id is None or after_id < 0:
            raise InvalidRequest("after_id must be a non-negative integer")
        async with self.rt.db.read() as conn:
            rows = await outbox_store.list_jobs(conn, status, limit=limit, after_id=after_id)
            counts = await outbox_store.depth(conn)
        return OutboxPage(jobs=[job_obj(r) for r in rows], counts=counts)

    async def retry(self, job_id: int) -> JobAnswer:
        """A dead job (or a waiting one) runs again now, with a fresh attempt budget."""
        async with self.rt.db.write() as conn:
            row = await outbox_store.retry(conn, job_id, now=utcnow())
            if row is None:
                existing = await outbox_store.get_job(conn, job_id)
        if row is None:
            if existing is None:
                raise NotFound("no such outbox job")
            raise InvalidRequest("the job is done; only dead or pending jobs can be retried")
        return JobAnswer(job=job_obj(row))
