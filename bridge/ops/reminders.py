"""Reminders of questions waiting for an answer, on apscheduler (docs/pachca.md).

With ``reminders.enabled`` and Pachca enabled, each run takes the active chats waiting longer
than ``reminders.after_s`` whose last reminder (if any) is older than ``reminders.repeat_s``,
and in one transaction marks them reminded and queues a REMIND outbox job for each: the
bot's direct message to the chat's teacher or tutor. Marking decides between instances: the
UPDATE re-checks that a chat is still due, so when two instances run at once, the second
finds the chats already taken and queues nothing. The job reads the wait again when it runs,
so an answer meanwhile stops it. A chat whose teacher or tutor has no Pachca account is
marked too (so the reason is logged once per ``repeat_s``, not every run) but counts no
reminder.

Each run costs a fixed number of statements, bounded by the batch, however many chats wait;
so does the gauge of chats waiting, refreshed on its own schedule. A reload of ``reminders``
reschedules the run at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from bridge.config import Config, RemindersConfig
from bridge.ops.metrics import Metrics
from bridge.pachca.jobs import REMIND
from bridge.policy import PARTNER_ROLES
from bridge.runtime import Runtime, utcnow
from store import outbox as outbox_store
from store import waiting as waiting_store
from store.tx import Row

log = structlog.get_logger("bridge.reminders")

RUN_JOB = "remind_waiting"
GAUGE_JOB = "count_waiting"


@dataclass(frozen=True)
class RemindersTuning:
    batch: int = 200  # chats per run; more wait for the next run
    max_every_s: float = 60.0  # how often a run looks at most; less when after_s is short
    gauge_every_s: float = 15.0


@dataclass
class ReminderRun:
    queued: list[int] = field(default_factory=list)  # chat ids
    skipped: dict[int, str] = field(default_factory=dict)  # chat id -> reason


def every_s(cfg: RemindersConfig, tuning: RemindersTuning) -> float:
    """How often to look: a tenth of the shorter interval, within [0.2 s, max_every_s]."""
    return min(tuning.max_every_s, max(0.2, min(cfg.after_s, cfg.repeat_s) / 10))


class Reminders:
    def __init__(self, rt: Runtime, metrics: Metrics | None = None):
        self.rt = rt
        self.metrics = metrics
        self.tuning = RemindersTuning()
        self.scheduler: AsyncIOScheduler | None = None
        rt.live.subscribe(self._config_changed)

    async def run_once(self, now: datetime | None = None) -> ReminderRun:
        """One run at ``now`` (the clock by default; tests pass a later one)."""
        run = ReminderRun()
        config = self.rt.live.current
        cfg = config.reminders
        if not (cfg.enabled and config.pachca.enabled):
            return run
        now = now or utcnow()
        due = now - timedelta(seconds=cfg.after_s)
        cut = now - timedelta(seconds=cfg.repeat_s)
        async with self.rt.db.write() as tx:
            await waiting_store.prune_answered(tx, cut)
            rows = await waiting_store.due(
                tx, PARTNER_ROLES, due=due, cut=cut, limit=self.tuning.batch
            )
            if not rows:
                return run
            reasons = {r["chat_id"]: _skip_reason(r) for r in rows}
            to_send = [chat_id for chat_id, reason in reasons.items() if reason is None]
            claimed = await waiting_store.claim(
                tx, list(reasons), to_send, now=now, due=due, cut=cut
            )
            jobs = []
            for r in rows:
                chat_id = r["chat_id"]
                if chat_id not in claimed:
                    continue  # another instance took it
                reason = reasons[chat_id]
                if reason is not None:
                    run.skipped[chat_id] = reason
                    continue
                run.queued.append(chat_id)
                jobs.append(
                    {
                        "kind": REMIND,
                        "payload": {"chat_id": chat_id, "since": r["since"].isoformat()},
                        "chat_id": None,
                        # One teacher's reminders go one after another, apart from the chat.
                        "lane": outbox_store.entity_lane("user", r["assignee_pachca_user_id"]),
                    }
                )
            # Due by the wall clock, whatever ``now`` the run was given.
            await outbox_store.enqueue_many(tx, jobs, now=min(now, utcnow()))
        self._report(run)
        return run

    def _report(self, run: ReminderRun) -> None:
        for chat_id, reason in run.skipped.items():
            log.info("reminder skipped", chat_id=chat_id, reason=reason)
        if run.queued:
            log.info("reminders queued", chats=len(run.queued))
        if self.metrics is not None:
            if run.queued:
                self.metrics.reminders.labels("queued").inc(len(run.queued))
            if run.skipped:
                self.metrics.reminders.labels("skipped").inc(len(run.skipped))

    async def refresh_gauge(self) -> int:
        async with self.rt.db.read() as conn:
            n = await waiting_store.count_waiting(conn)
        if self.metrics is not None:
            self.metrics.chats_waiting.set(n)
        return n

    # --- scheduling ----------------------------------------------------------------------------

    def start(self) -> None:
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_job(
            self._run_logged,
            "interval",
            seconds=every_s(self.rt.live.current.reminders, self.tuning),
            id=RUN_JOB,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        scheduler.add_job(
            self._gauge_logged,
            "interval",
            seconds=self.tuning.gauge_every_s,
            id=GAUGE_JOB,
            next_run_time=datetime.now(UTC),
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )
        scheduler.start()
        self.scheduler = scheduler

    def _config_changed(self, old: Config, new: Config) -> None:
        """A reload of ``reminders`` applies at once: the run is rescheduled, and runs now."""
        if old.reminders == new.reminders or self.scheduler is None:
            return
        self.scheduler.reschedule_job(
            RUN_JOB,
            trigger="interval",
            seconds=every_s(new.reminders, self.tuning),
        )
        self.scheduler.modify_job(RUN_JOB, next_run_time=datetime.now(UTC))
        log.info("reminders rescheduled", **new.reminders.model_dump())

    async def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None

    async def _run_logged(self) -> None:
        try:
            await self.run_once()
        except Exception:
            log.exception("scheduled job failed", job=RUN_JOB)

    async def _gauge_logged(self) -> None:
        try:
            await self.refresh_gauge()
        except Exception:
            log.exception("scheduled job failed", job=GAUGE_JOB)


def _skip_reason(row: Row) -> str | None:
    if row["assignee_id"] is None:
        return "no teacher or tutor"
    if row["assignee_pachca_user_id"] is None:
        return "the teacher or tutor has no Pachca account linked"
    return None
