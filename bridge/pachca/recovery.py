"""Missed-webhook recovery: read Pachca's saved event history and process what it holds.

With "save event history" on in the bot's settings, Pachca keeps every webhook it sent, and
``GET /webhooks/events`` reads them back. After downtime (or a delivery Pachca gave up on), each
saved event's payload goes through the very path a live webhook takes (``Relay.handle``), so
events already processed live are recognised by their delivery key and change nothing. Each
event is deleted from the history once handled, so the next run starts where this one ended.

No signature or timestamp check here: the events come over the bot's authenticated API
session, and a saved event is old by design.

Run it periodically (``recover_webhooks(rt, client)``) or once from the command line
(``pachca-bridge recover-webhooks``).
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from dataclasses import dataclass, field

import structlog

from bot.client import PachcaClient, PachcaError
from bot.webhooks import InvalidPayload, parse_webhook
from bridge.config import Config
from bridge.ops.metrics import Metrics
from bridge.pachca.relay import TRANSIENT_ERRORS, Relay
from bridge.runtime import Runtime

log = structlog.get_logger("bridge.recovery")

PAGE_SIZE = 50  # the API's maximum
MAX_PAGES = 20  # per run: a long backlog is worked off over several runs
# GET /webhooks/events allows about 5 requests per 2 s.
PAGE_PAUSE_S = 0.5


@dataclass
class RecoveryReport:
    seen: int = 0
    deleted: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    # Why the run stopped early (Pachca or the database unavailable); unhandled events stay
    # in the history for the next run.
    error: str | None = None

    def summary(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())) or "none"
        text = f"webhook history: {self.seen} events seen, {self.deleted} deleted ({counts})"
        return text + (f"; stopped: {self.error}" if self.error else "")


async def recover_webhooks(
    rt: Runtime,
    client: PachcaClient,
    *,
    relay: Relay | None = None,
    metrics: Metrics | None = None,
    max_pages: int = MAX_PAGES,
    page_pause_s: float = PAGE_PAUSE_S,
) -> RecoveryReport:
    """Process and delete saved webhook events, oldest first, until the history is empty.

    Every page is read from the start of the history: the events of the previous page are
    deleted by then, so no cursor is needed (nor trusted across deletions). A failure stops the
    run, leaving the rest of the history in place; nothing is lost, and re-handling an event is
    harmless.
    """
    relay = relay or Relay(rt)
    report = RecoveryReport()
    for page_no in range(max_pages):
        if page_no:
            await asyncio.sleep(page_pause_s)
        try:
            page = await client.list_webhook_events(limit=PAGE_SIZE)
        except PachcaError as exc:
            report.error = f"reading the history failed: {exc}"
            break
        if not page:
            break
        for record in page:
            report.seen += 1
            try:
                outcome = await _handle(relay, record.payload)
            except TRANSIENT_ERRORS as exc:
                report.error = f"database unavailable ({type(exc).__name__})"
                break
            report.outcomes[outcome] += 1
            if metrics is not None:
                metrics.webhook_events.labels(outcome).inc()
            try:
                await client.delete_webhook_event(record.id)
            except PachcaError as exc:
                report.error = f"deleting a handled event failed: {exc}"
                break
            report.deleted += 1
        if report.error is not None:
            break
    if report.error is not None:
        log.warning("webhook history recovery stopped", error=report.error, seen=report.seen)
    elif report.seen:
        log.info("webhook history recovered", seen=report.seen, outcomes=dict(report.outcomes))
    return report


async def _handle(relay: Relay, payload: dict[str, object]) -> str:
    try:
        parsed = parse_webhook(payload)
    except InvalidPayload as exc:
        log.warning("invalid saved webhook dropped", problem=str(exc), webhook_type=exc.type)
        return "invalid"
    return (await relay.handle(parsed)).outcome.value


async def recover_from_config(config: Config) -> int:
    """``pachca-bridge recover-webhooks``: one run against the configured database and bot.

    Feed events are written to the event log; connected clients of a running service get them
    through ``since`` replay (live fan-out is the running service's own, in-process job).
    """
    from bridge.auth import Tokens
    from bridge.config import LiveConfig
    from bridge.feed.transport import MemoryFeed
    from store import migrate

    pachca = config.pachca
    token = pachca.token.get_secret_value()
    if not token:
        print("pachca.token is not set: cannot read the webhook history", file=sys.stderr)
        return 2
    try:
        db = await migrate.open_current(config.database.url)
    except migrate.SchemaNotReady as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        live = LiveConfig(config)
        rt = Runtime(live=live, db=db, feed=MemoryFeed(), tokens=Tokens(live, ""))
        async with PachcaClient(pachca.api_url, token, timeout=pachca.request_timeout_s) as client:
            report = await recover_webhooks(rt, client)
    finally:
        await db.dispose()
    print(report.summary())
    return 0 if report.error is None else 1
