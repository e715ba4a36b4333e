"""Periodic housekeeping on apscheduler's AsyncIOScheduler.

- leases: outbox leases that ran out (a worker died mid-job) are cleared, so the jobs show as
  waiting and run again;
- pruning: done outbox jobs after ``done_retention_s``; webhook delivery keys and feed events
  older than ``feed.history_retention_s`` (a ``since`` before them then gets a reset); failed
  ``/link`` attempts once they can no longer block anyone;
- files: the bytes and rows of deleted files, of files never attached to a message within
  ``UNATTACHED_FILE_TTL`` (a day), and of files whose chat is gone; and partial writes a
  crash left in local storage;
- the outbox depth gauge of /metrics;
- missed-webhook recovery: Pachca's saved event history (bridge/pachca/recovery.py) is read and
  processed, when Pachca is configured. Events already handled are duplicates by their key.

Every instance runs these; each is an idempotent statement, so doing it twice is harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bridge.forum import linking
from bridge.ops.metrics import Metrics
from bridge.pachca import recovery
from bridge.pachca.recovery import RecoveryReport
from bridge.runtime import Runtime, utcnow
from store import events as event_store
from store import files as file_store
from store import outbox as outbox_store
from store import users as user_store
from store import webhook_keys

log = structlog.get_logger("bridge.jobs")

# An upload not sent in a message within this is deleted.
UNATTACHED_FILE_TTL = timedelta(hours=24)
SWEEP_BATCH = 500


@dataclass(frozen=True)
class MaintenanceTuning:
    leases_every_s: float = 30.0
    prune_every_s: float = 3600.0
    depth_every_s: float = 15.0
    first_run_after_s: float = 10.0  # prune and count soon after start, then on schedule
    done_retention_s: float = 86_400.0  # done outbox jobs are kept this long for inspection
    recover_every_s: float = 300.0  # read Pachca's saved webhook history this often
    files_every_s: float = 600.0  # remove deleted and never-sent files this often


class Maintenance:
    def __init__(
        self, rt: Runtime, metrics: Metrics | None = None, tuning: MaintenanceTuning | None = None
    ):
        self.rt = rt
        self.metrics = metrics
        self.tuning = tuning or MaintenanceTuning()
        self.scheduler: AsyncIOScheduler | None = None

    # --- the jobs ------------------------------------------------------------------------------

    async def expire_leases(self) -> int:
        async with self.rt.db.write() as conn:
            count = await outbox_store.expire_leases(conn, now=utcnow())
        if count:
            log.warning("outbox leases ran out; the jobs will run again", jobs=count)
        return count

    async def prune(self) -> dict[str, int]:
        now = utcnow()
        history = timedelta(seconds=self.rt.live.current.feed.history_retention_s)
        done = timedelta(seconds=self.tuning.done_retention_s)
        removed: dict[str, int] = {}
        # One short transaction each: a long delete would hold SQLite's only writer.
        async with self.rt.db.write() as conn:
            removed["outbox_done"] = await outbox_store.prune_done(conn, now - done)
        async with self.rt.db.write() as conn:
            removed["webhook_deliveries"] = await webhook_keys.prune_before(conn, now - history)
        async with self.rt.db.write() as conn:
            removed["events"] = await event_store.prune_before(conn, now - history)
        async with self.rt.db.write() as conn:
            removed["link_failures"] = await user_store.prune_link_failures(
                conn, now - linking.FORGET_FAILURES_AFTER
            )
        if any(removed.values()):
            log.info("pruned old rows", **removed)
        return removed

    async def sweep_files(self, now: float | None = None) -> int:
        """Remove the files that are to go (see the module's docstring): the bytes first,
        then the row, so a blob never outlives the row that names it; the number removed.
        ``now``: a UNIX time standing for the present (tests)."""
        moment = datetime.fromtimestamp(now, UTC) if now is not None else utcnow()
        removed = 0
        while True:
            async with self.rt.db.read() as conn:
                rows = await file_store.sweepable(
                    conn, unattached_before=moment - UNATTACHED_FILE_TTL, limit=SWEEP_BATCH
                )
            gone: list[str] = []
            for row in rows:
                try:
                    await self.rt.blobs.delete(row["storage_key"])
                except Exception:
                    log.warning("could not remove a file's bytes; next time", exc_info=True)
                    continue
                gone.append(row["id"])
            async with self.rt.db.write() as conn:
                await file_store.delete_rows(conn, gone)
            removed += len(gone)
            if len(rows) < SWEEP_BATCH or not gone:
                break
        # Writes a crash cut short: nothing names them.
        partial = await self.rt.blobs.drop_partial(UNATTACHED_FILE_TTL.total_seconds())
        if removed or partial:
            log.info("removed files", files=removed, partial_writes=partial)
        return removed

    async def recover_webhooks(self) -> RecoveryReport | None:
        client = self.rt.pachca.current()
        if client is None:
            return None  # Pachca disabled or without a token: nothing to read
        return await recovery.recover_webhooks(self.rt, client, metrics=self.metrics)

    async def refresh_depth(self) -> dict[str, int]:
        async with self.rt.db.read() as conn:
            counts = await outbox_store.depth(conn)
        if self.metrics is not None:
            for status, n in counts.items():
                self.metrics.outbox_depth.labels(status).set(n)
        return counts

    # --- scheduling ----------------------------------------------------------------------------

    def start(self) -> None:
        t = self.tuning
        scheduler = AsyncIOScheduler(timezone=UTC)
        soon = datetime.now(UTC) + timedelta(seconds=t.first_run_after_s)
        plan: list[tuple[Callable[[], Awaitable[object]], float, datetime | None]] = [
            (self.expire_leases, t.leases_every_s, None),
            (self.prune, t.prune_every_s, soon),
            (self.refresh_depth, t.depth_every_s, soon),
            (self.recover_webhooks, t.recover_every_s, soon),
            (self.sweep_files, t.files_every_s, soon),
        ]
        for job, every_s, first in plan:
            scheduler.add_job(
                _logged(job),
                "interval",
                seconds=every_s,
                id=job.__name__,
                next_run_time=first or datetime.now(UTC) + timedelta(seconds=every_s),
                coalesce=True,  # after a stall, run once, not once per missed slot
                max_instances=1,
                misfire_grace_time=None,
            )
        scheduler.start()
        self.scheduler = scheduler

    async def stop(self) -> None:
        if self.scheduler is not None:
            # Cancels a job still running: each is one short statement, retried next time.
            self.scheduler.shutdown(wait=False)
            self.scheduler = None


def _logged(job: Callable[[], Awaitable[object]]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        try:
            await job()
        except Exception:
            log.exception("scheduled job failed", job=job.__name__)

    run.__name__ = job.__name__
    return run
