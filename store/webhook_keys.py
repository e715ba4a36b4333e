"""Processed Pachca webhook events (``webhook_deliveries``): the idempotency record.

A key is recorded in the same transaction as the event's effect, so a redelivery either finds
it (and stops) or the first attempt rolled back and left nothing, key included.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, select

from store.models import WebhookDelivery
from store.tx import Tx, prepared
from store.users import insert_for

deliveries = WebhookDelivery.__table__

# ON CONFLICT DO NOTHING instead of catching the unique violation: the transaction stays
# usable, and on PostgreSQL a concurrent insert of the same key waits for the other
# transaction and then sees the duplicate (or takes over if that one rolled back).
_RECORD = prepared(
    lambda dialect: (
        insert_for(dialect, deliveries)
        .on_conflict_do_nothing(index_elements=[deliveries.c.key])
        .returning(deliveries.c.key)
    )
)


async def record(tx: Tx, key: str, now: datetime) -> bool:
    """Record a delivery key: True when it is new, False for a duplicate."""
    return await tx.first(_RECORD, {"key": key, "received_at": now}) is not None


_SEEN = prepared(select(deliveries.c.key).where(deliveries.c.key == bindparam("key")))


async def seen(tx: Tx, key: str) -> bool:
    """Whether an event with this key was processed (and its key not pruned yet)."""
    return await tx.first(_SEEN, {"key": key}) is not None


async def prune_before(tx: Tx, cutoff: datetime) -> int:
    """Forget keys received before ``cutoff``; the number removed."""
    return await tx.run(delete(deliveries).where(deliveries.c.received_at < cutoff))
