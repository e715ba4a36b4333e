"""Scheduled housekeeping: pruning by age, abandoned leases, the outbox depth gauge, and the
scheduler actually running them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import generate_latest
from sqlalchemy import func, select

from bridge.auth import Tokens
from bridge.config import LiveConfig, parse_config
from bridge.feed.transport import MemoryFeed
from bridge.forum.linking import FORGET_FAILURES_AFTER
from bridge.ops.maintenance import Maintenance, MaintenanceTuning
from bridge.ops.metrics import Metrics
from bridge.runtime import Runtime, utcnow
from store import events as event_store
from store import migrate, webhook_keys
from store import outbox as outbox_store
from store import users as user_store
from store.db import Database
from store.models import Event, OutboxJob, WebhookDelivery
from tests.eventually import eventually

RETENTION_S = 3600


@pytest.fixture
async def rt(database: Database, config_data: dict[str, Any]) -> AsyncIterator[Runtime]:
    await migrate.upgrade(database)
    config_data["feed"] = {"history_retention_s": RETENTION_S}
    live = LiveConfig(parse_config(config_data))
    yield Runtime(live=live, db=database, feed=MemoryFeed(), tokens=Tokens(live, ""))


async def count(db: Database, model: Any) -> int:
    async with db.read() as conn:
        found: int = await conn.value(select(func.count()).select_from(model))
    return found


async def test_prune_removes_only_what_is_past_retention(rt: Runtime) -> None:
    now = utcnow()
    old = now - timedelta(seconds=RETENTION_S + 60)
    async with rt.db.write() as conn:
        for at in (old, now):
            await event_store.append(
                conn, chat_id=1, type="read", payload="{}", audience=None, created_at=at
            )
            await webhook_keys.record(conn, f"key-{at.timestamp()}", at)
            await outbox_store.enqueue(conn, "send_text", {}, chat_id=None, now=at, lane="user:1")
        for job_id, at in ((1, now - timedelta(days=2)), (2, now)):
            await outbox_store.complete(conn, job_id, now=at)
        await outbox_store.enqueue(
            conn, "send_text", {}, chat_id=None, now=old, lane="user:1"
        )  # pending
        # Wrong /link codes are kept only while they can still block their sender.
        forgotten = now - FORGET_FAILURES_AFTER - timedelta(seconds=1)
        for at in (forgotten, now - FORGET_FAILURES_AFTER + timedelta(minutes=1)):
            await user_store.add_link_failure(conn, 7, at, forget_before=forgotten)

    removed = await Maintenance(rt).prune()

    assert removed == {
        "outbox_done": 1,
        "webhook_deliveries": 1,
        "events": 1,
        "link_failures": 1,
    }
    assert await count(rt.db, Event) == 1
    assert await count(rt.db, WebhookDelivery) == 1
    assert await count(rt.db, OutboxJob) == 2  # the recent done job and the pending one
    async with rt.db.read() as conn:
        # A feed client asking for history before the pruned events is told to reset.
        assert await event_store.pruned_through(conn) == 1


async def test_abandoned_leases_are_cleared(rt: Runtime) -> None:
    now = utcnow()
    async with rt.db.write() as conn:
        await outbox_store.enqueue(conn, "send_text", {}, chat_id=None, now=now, lane="user:1")
        await outbox_store.claim(conn, now=now, lease_until=now - timedelta(seconds=1), limit=1)
    assert await Maintenance(rt).expire_leases() == 1
    assert await Maintenance(rt).expire_leases() == 0


async def test_the_scheduler_keeps_the_depth_gauge_current(rt: Runtime) -> None:
    metrics = Metrics()
    tuning = MaintenanceTuning(depth_every_s=0.05, first_run_after_s=0.01)
    maintenance = Maintenance(rt, metrics, tuning)
    async with rt.db.write() as conn:
        for _ in range(3):
            await outbox_store.enqueue(
                conn, "send_text", {}, chat_id=None, now=utcnow(), lane="user:1"
            )
    maintenance.start()
    try:

        def gauge() -> bool:
            text = generate_latest(metrics.registry).decode()
            return 'bridge_outbox_depth{status="pending"} 3.0' in text

        await eventually(gauge, what="the depth gauge")
        async with rt.db.write() as conn:
            await outbox_store.complete(conn, 1, now=utcnow())

        def updated() -> bool:
            text = generate_latest(metrics.registry).decode()
            return 'bridge_outbox_depth{status="pending"} 2.0' in text

        await eventually(updated, what="the depth gauge to follow")
    finally:
        await maintenance.stop()
