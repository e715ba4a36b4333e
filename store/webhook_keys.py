"""Processed Pachca webhook events (``webhook_deliveries``): the idempotency record.

A key is recorded in the same transaction as the event's effect, so a redelivery either finds
it (and stops) or the first attempt rolled back and left nothing, key included.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from store.models import WebhookDelivery
from store.users import insert_for

deliveries = WebhookDelivery.__table__


async def record(conn: AsyncConnection, key: str, now: datetime) -> bool:
    """Record a delivery key: True when it is new, False for a duplicate.

    ON CONFLICT DO NOTHING instead of catching the unique violation: the transaction stays
    usable, and on PostgreSQL a concurrent insert of the same key waits for the other
    transaction and then sees the duplicate (or takes over if that one rolled back).
    """
    stmt = (
        insert_for(conn, deliveries)
        .values(key=key, received_at=now)
        .on_conflict_do_nothing(index_elements=[deliveries.c.key])
        .returning(deliveries.c.key)
    )
    return (await conn.execute(stmt)).first() is not None


async def prune_before(conn: AsyncConnection, cutoff: datetime) -> int:
    """Forget keys received before ``cutoff``; the number removed."""
    result = await conn.execute(delete(deliveries).where(deliveries.c.received_at < cutoff))
    return result.rowcount
