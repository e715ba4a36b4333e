"""The outbox table: jobs for Pachca, written in the same transaction as their cause."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from store.models import OutboxJob

outbox = OutboxJob.__table__


async def enqueue(
    conn: AsyncConnection,
    kind: str,
    payload: dict[str, Any],
    *,
    chat_id: int | None,
    now: datetime,
) -> None:
    await conn.execute(
        outbox.insert().values(
            chat_id=chat_id,
            kind=kind,
            payload=payload,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
    )
