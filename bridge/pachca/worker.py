"""The outbox worker: delivers queued jobs to Pachca (docs/pachca.md).

Started with the app. It leases due jobs (store/outbox.py ``claim``: the oldest pending job of
each lane only - a forum chat, or the Pachca user a direct bot answer goes to - so a lane's jobs
run in order and one busy lane holds no other back; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so
instances can share the table), runs them concurrently across lanes, and records the outcome:

- done (with any Pachca id, in the same transaction);
- postponed - cannot run yet (no channel, thread not open, a 429's Retry-After): waits, the
  attempt is given back;
- failed - 5xx, timeout, connection error: retried with exponential backoff and jitter, until
  ``pachca.max_attempts`` runs end in ``dead`` (kept, visible, retryable by an admin);
- permanent - a 4xx that repeating cannot fix: dead at once.

A job's lease (``lease_until``) is short (``OutboxTuning.lease_s``, 5 s) and renewed while the
job runs, however long its Pachca calls take; a worker that dies leaves a lease that runs out
within seconds, and then any instance takes the job.
It wakes when a commit enqueued a job (the database's ``OUTBOX_DUE`` commit signal, so the
request path does no extra work) and otherwise polls. With Pachca disabled or without a token
it sends nothing: it notes the reason on the waiting jobs and logs it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from bot.client import PachcaClient, PachcaError
from bridge.feed.events import FeedEvent
from bridge.ops.metrics import Metrics
from bridge.pachca.clients import not_ready_reason
from bridge.pachca.file_copies import FileCopies
from bridge.pachca.jobs import COPY_FILES, Deliveries, Done, Job, Permanent, Postpone, Retry
from bridge.pachca.pacing import Pacer
from bridge.runtime import Runtime, utcnow
from store import outbox as store

log = structlog.get_logger("bridge.outbox")

# Pachca answers these when the token lacks access: fixable by a config reload, so retried.
_AUTH_STATUSES = (401, 403)


@dataclass(frozen=True)
class OutboxTuning:
    """Timings of the worker. Defaults suit production; tests shrink them."""

    poll_s: float = 1.0  # look for due jobs at least this often...
    min_pass_gap_s: float = 0.1  # ...and at most this often, however many nudges come
    concurrency: int = 8  # jobs in flight at once (at most one per lane)
    backoff_base_s: float = 2.0  # first retry after about this long...
    backoff_max_s: float = 600.0  # ...doubling up to this
    jitter: float = 0.5  # up to this fraction of each backoff is randomised away
    postpone_s: float = 30.0  # a job that cannot run yet looks again after this
    waiting_poll_s: float = 5.0  # how often a disabled worker looks at the config
    max_pacing_wait_s: float = 2.0  # longer rate-limit waits give the job back to the queue
    # A claimed job's lease, renewed every third of it while the job runs: a worker that dies
    # (kill -9, a lost machine) holds its jobs - and their chats, which go in order - this long.
    lease_s: float = 5.0
    stop_grace_s: float = 5.0  # on shutdown, jobs in flight get this long to finish
    rand: Callable[[], float] = field(default=random.random, compare=False)

    def backoff(self, attempts: int) -> float:
        """Delay before the next try after ``attempts`` failed ones."""
        delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** max(attempts - 1, 0))
        return delay * (1.0 - self.jitter * self.rand())

    def time_limit(self, request_timeout_s: float) -> float:
        """How long one run of a job may take before it counts as failed."""
        # An open_thread makes three calls, each waiting at most a pacing slot and a timeout.
        return 3 * (request_timeout_s + self.max_pacing_wait_s) + 30.0


def job_of(row: Any) -> Job:
    return Job(row["id"], row["chat_id"], row["kind"], dict(row["payload"]), row["attempts"])


class OutboxWorker:
    def __init__(
        self,
        rt: Runtime,
        metrics: Metrics | None = None,
        tuning: OutboxTuning | None = None,
        *,
        pacer: Pacer | None = None,
    ):
        self.rt = rt
        self.metrics = metrics
        self.tuning = tuning or OutboxTuning()
        self.pacer = pacer or Pacer()
        self._wake = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        self._unhook: Callable[[], None] | None = None
        self._waiting_reason: str | None = None  # why nothing is sent, while that holds
        self._noted_through = 0  # jobs up to this id carry that reason already
        self._note_due = False  # the reason changed: note it on the waiting jobs
        self._logged: set[str] = set()  # postponement reasons already logged
        self._logged_for: object = None  # ...under this config

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.deliveries = Deliveries(
            self.rt, self.pacer, max_pacing_wait_s=self.tuning.max_pacing_wait_s
        )
        copies = FileCopies(self.rt, self.deliveries.paced_call)
        self.deliveries.register(COPY_FILES, copies.run)
        self._unhook = self.rt.db.on_signal(store.OUTBOX_DUE, self.nudge)
        self._task = asyncio.create_task(self._loop(), name="outbox-worker")

    def nudge(self) -> None:
        """A job became due: look now rather than at the next poll."""
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; let jobs in flight finish for a moment, then interrupt them and give
        their leases back, so the next start (here or elsewhere) picks them up at once."""
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        self._stopped.set()
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None
        if not self._inflight:
            return
        tasks = dict(self._inflight)
        _, late = await asyncio.wait(tasks.values(), timeout=self.tuning.stop_grace_s)
        interrupted = [job_id for job_id, task in tasks.items() if task in late]
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if interrupted:
            log.warning("outbox jobs interrupted by shutdown", job_ids=interrupted)
            with contextlib.suppress(Exception):
                async with self.rt.db.write() as conn:
                    await store.release(conn, interrupted, now=utcnow())

    # --- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopped.is_set():
            woken = self._wake.is_set()
            self._wake.clear()
            started = loop.time()
            waiting = False
            try:
                waiting = await self._tick(woken)
            except Exception:
                log.exception("outbox worker pass failed")
            if waiting:
                # Nothing can be sent: nudges are ignored, the config is looked at now and then.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), self.tuning.waiting_poll_s)
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.tuning.poll_s)
                # A burst of nudges makes one pass, not one each: a claim scans the due jobs,
                # and a backlog (Pachca down for a while) makes that scan long.
                gap = self.tuning.min_pass_gap_s - (loop.time() - started)
                if gap > 0 and not self._stopped.is_set():
                    await asyncio.sleep(gap)

    async def _tick(self, woken: bool) -> bool:
        """One pass: claim what is due and start it. True when Pachca cannot be used at all."""
        live = self.rt.live.current
        reason = not_ready_reason(live.pachca)
        client = self.rt.pachca.current() if reason is None else None
        if reason is not None or client is None:
            reason = reason or "no Pachca client"
            if reason != self._waiting_reason:
                log.warning("pachca deliveries are waiting; nothing is sent", reason=reason)
                self._waiting_reason, self._noted_through, self._note_due = reason, 0, True
            elif woken or self._note_due:
                # Touch the database only when there is news (and not in the first moment
                # after start): an idle disabled bridge stays idle.
                await self._note_waiting(reason)
                self._note_due = False
            return True
        if self._waiting_reason is not None:
            log.info("pachca deliveries resume", was=self._waiting_reason)
            self._waiting_reason = None
        if self._logged_for is not live:
            self._logged, self._logged_for = set(), live
        free = self.tuning.concurrency - len(self._inflight)
        if free <= 0:
            return False
        now = utcnow()
        lease_until = now + timedelta(seconds=self.tuning.lease_s)
        async with self.rt.db.write() as conn:
            rows = await store.claim(conn, now=now, lease_until=lease_until, limit=free)
        for row in rows:
            job = job_of(row)
            task = asyncio.create_task(
                self._run(job, client, row["lease_until"]), name=f"outbox-job-{job.id}"
            )
            self._inflight[job.id] = task
            task.add_done_callback(lambda _t, job_id=job.id: self._finished(job_id))
        return False

    def _finished(self, job_id: int) -> None:
        self._inflight.pop(job_id, None)
        self._wake.set()  # the lane's next job may be due now

    async def _note_waiting(self, reason: str) -> None:
        async with self.rt.db.write() as conn:
            self._noted_through = await store.note_waiting(
                conn, reason, after_id=self._noted_through, now=utcnow()
            )

    # --- one job -------------------------------------------------------------------------------

    async def _run(self, job: Job, client: PachcaClient, lease_until: datetime) -> None:
        this = asyncio.current_task()
        assert this is not None
        keeper = asyncio.create_task(self._keep_lease(job, this, lease_until))
        try:
            await self._attempt(job, client)
        finally:
            keeper.cancel()

    async def _keep_lease(self, job: Job, run: asyncio.Task[None], held: datetime) -> None:
        """Renew the job's lease while it runs. A lease lost (it ran out while the database was
        out of reach, and another worker may have the job now) stops the run: two workers must
        not deliver the same job."""
        every = self.tuning.lease_s / 3
        while True:
            await asyncio.sleep(every)
            until = utcnow() + timedelta(seconds=self.tuning.lease_s)
            try:
                async with self.rt.db.write() as conn:
                    kept = await store.renew(conn, job.id, held=held, until=until)
            except Exception as exc:
                if utcnow() < held:
                    log.warning("could not renew an outbox lease", job_id=job.id, error=repr(exc))
                    continue
                kept = False
            if not kept:
                log.warning("outbox lease lost; the run stops", job_id=job.id, kind=job.kind)
                run.cancel()
                return
            held = until

    async def _attempt(self, job: Job, client: PachcaClient) -> None:
        time_limit = self.tuning.time_limit(self.rt.live.current.pachca.request_timeout_s)
        try:
            try:
                async with asyncio.timeout(time_limit):
                    result = await self.deliveries.run(job, client)
            except TimeoutError:
                await self._failed(job, "the job took longer than its lease allows")
            except Postpone as exc:
                await self._postpone(job, exc)
            except Permanent as exc:
                await self._bury(job, str(exc))
            except Retry as exc:
                await self._failed(job, str(exc))
            except PachcaError as exc:
                await self._pachca_failed(job, exc)
            except Exception as exc:
                log.exception("outbox job raised", job_id=job.id, kind=job.kind)
                await self._failed(job, f"internal error ({type(exc).__name__})")
            else:
                await self._done(job, result)
        except Exception:
            # Recording the outcome failed (the database?): the lease runs out and the job
            # is taken again later.
            log.exception("could not record an outbox job's outcome", job_id=job.id)

    async def _done(self, job: Job, result: Done) -> None:
        events: Sequence[FeedEvent] = ()
        async with self.rt.db.write() as conn:
            if result.finish is not None:
                events = await result.finish(conn) or ()
            await store.complete(conn, job.id, now=utcnow())
        await self.rt.publish(events)
        self._count(job, "skipped" if result.skipped else "done")
        log.debug("outbox job done", job_id=job.id, kind=job.kind, skipped=result.skipped)

    async def _postpone(self, job: Job, exc: Postpone) -> None:
        delay = exc.delay if exc.delay is not None else self.tuning.postpone_s
        await self._reschedule(job, delay, exc.reason, refund=True)
        self._count(job, "postponed")
        if not exc.log_once or exc.reason not in self._logged:
            self._logged.add(exc.reason)
            log.info("outbox job waits", job_id=job.id, kind=job.kind, reason=exc.reason)

    async def _pachca_failed(self, job: Job, exc: PachcaError) -> None:
        if exc.status == 429:
            # Told when to come back: not a failure, and no earlier than asked.
            delay = exc.retry_after if exc.retry_after is not None else self.tuning.backoff(1)
            await self._reschedule(job, delay, str(exc), refund=True)
            self._count(job, "rate_limited")
            log.info("pachca rate limit; job waits", job_id=job.id, kind=job.kind, delay=delay)
        elif exc.retryable or exc.status in _AUTH_STATUSES:
            await self._failed(job, str(exc))
        else:
            await self._bury(job, str(exc))

    async def _failed(self, job: Job, error: str) -> None:
        max_attempts = self.rt.live.current.pachca.max_attempts
        if job.attempts >= max_attempts:
            await self._bury(job, f"gave up after {job.attempts} attempts: {error}")
            return
        delay = self.tuning.backoff(job.attempts)
        await self._reschedule(job, delay, error)
        self._count(job, "retry")
        log.info(
            "outbox job failed; will retry",
            job_id=job.id,
            kind=job.kind,
            attempts=job.attempts,
            retry_in_s=round(delay, 3),
            error=error,
        )

    async def _bury(self, job: Job, error: str) -> None:
        async with self.rt.db.write() as conn:
            await store.bury(conn, job.id, error=error, now=utcnow())
        self._count(job, "dead")
        log.warning(
            "outbox job dead-lettered",
            job_id=job.id,
            kind=job.kind,
            chat_id=job.chat_id,
            attempts=job.attempts,
            error=error,
        )

    async def _reschedule(self, job: Job, delay: float, error: str, *, refund: bool = False):
        now = utcnow()
        async with self.rt.db.write() as conn:
            await store.reschedule(
                conn,
                job.id,
                next_attempt_at=now + timedelta(seconds=delay),
                error=error,
                now=now,
                refund_attempt=refund,
            )
        if delay < self.tuning.poll_s:
            asyncio.get_running_loop().call_later(max(delay, 0.0), self.nudge)

    def _count(self, job: Job, result: str) -> None:
        if self.metrics is not None:
            self.metrics.deliveries.labels(job.kind, result).inc()
