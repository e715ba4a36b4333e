"""Users, link codes and generated settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import RowMapping, bindparam, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from store.models import LinkCode, LinkFailure, Participant, Setting, User

users = User.__table__
link_codes = LinkCode.__table__
link_failures = LinkFailure.__table__
settings = Setting.__table__
participants = Participant.__table__


def insert_for(conn: AsyncConnection, table: Any) -> Any:
    """A dialect INSERT, for ON CONFLICT clauses (both SQLite and PostgreSQL have them)."""
    return (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table)


# Built once: on the hot path (every authenticated request) constructing the statement and
# its cache key would cost more than running it.
GET_USER = select(users).where(users.c.id == bindparam("user_id"))


async def get_user(conn: AsyncConnection, user_id: str) -> RowMapping | None:
    row = await conn.execute(GET_USER, {"user_id": user_id})
    return row.mappings().first()


async def get_users(conn: AsyncConnection, user_ids: list[str]) -> dict[str, RowMapping]:
    if not user_ids:
        return {}
    rows = await conn.execute(select(users).where(users.c.id.in_(user_ids)))
    return {r["id"]: r for r in rows.mappings()}


async def get_user_by_pachca_id(conn: AsyncConnection, pachca_user_id: int) -> RowMapping | None:
    rows = await conn.execute(select(users).where(users.c.pachca_user_id == pachca_user_id))
    return rows.mappings().first()


async def upsert_user(conn: AsyncConnection, values: dict[str, Any], now: datetime) -> None:
    stmt = insert_for(conn, users).values(**values, created_at=now, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[users.c.id], set_={**values, "updated_at": now}
    )
    await conn.execute(stmt)


async def clear_pachca_user_id(conn: AsyncConnection, pachca_user_id: int, keep: str) -> None:
    """A Pachca account belongs to one platform user: unlink it from any other."""
    await conn.execute(
        update(users)
        .where(users.c.pachca_user_id == pachca_user_id, users.c.id != keep)
        .values(pachca_user_id=None)
    )


async def set_pachca_user_id(conn: AsyncConnection, user_id: str, pachca_user_id: int) -> None:
    await conn.execute(
        update(users).where(users.c.id == user_id).values(pachca_user_id=pachca_user_id)
    )


async def add_link_code(
    conn: AsyncConnection, code: str, user_id: str, expires_at: datetime
) -> None:
    await conn.execute(
        link_codes.insert().values(code=code, user_id=user_id, expires_at=expires_at)
    )


async def revoke_link_codes(conn: AsyncConnection, user_id: str) -> None:
    """Delete every code the user has (a new one replaces them)."""
    await conn.execute(delete(link_codes).where(link_codes.c.user_id == user_id))


async def use_link_code(conn: AsyncConnection, code: str, now: datetime) -> str | None:
    """Spend a code: the owner's user id, or None when unknown, expired or already used.

    One conditional UPDATE, so two concurrent uses cannot both succeed.
    """
    result = await conn.execute(
        update(link_codes)
        .where(
            link_codes.c.code == code,
            link_codes.c.used_at.is_(None),
            link_codes.c.expires_at > now,
        )
        .values(used_at=now)
        .returning(link_codes.c.user_id)
    )
    return result.scalar()


async def get_link_code(conn: AsyncConnection, code: str) -> RowMapping | None:
    """A code's row, to tell an expired code from a spent or unknown one."""
    rows = await conn.execute(select(link_codes).where(link_codes.c.code == code))
    return rows.mappings().first()


# The first key of the PostgreSQL advisory locks that serialise one Pachca user's /link
# commands (the second is the user's id); apart from the one-key locks (store/db.py).
LINK_ATTEMPTS_LOCK = 0x6C696E6B  # "link"


async def lock_link_attempts(conn: AsyncConnection, pachca_user_id: int) -> None:
    """Hold one Pachca user's /link attempts until this transaction ends, so concurrent
    attempts are counted one after another (PostgreSQL; SQLite has a single writer)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(
            text("SELECT pg_advisory_xact_lock(:kind, :key)"),
            # int4 keys: an id that does not fit shares a lock with another, which only
            # makes the two wait for each other.
            {"kind": LINK_ATTEMPTS_LOCK, "key": (pachca_user_id & 0xFFFFFFFF) - 2**31},
        )


async def recent_link_failures(
    conn: AsyncConnection, pachca_user_id: int, *, limit: int
) -> list[datetime]:
    """When the user's latest ``limit`` failed /link attempts were, newest first."""
    rows = await conn.execute(
        select(link_failures.c.failed_at)
        .where(link_failures.c.pachca_user_id == pachca_user_id)
        .order_by(link_failures.c.failed_at.desc(), link_failures.c.id.desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def add_link_failure(
    conn: AsyncConnection, pachca_user_id: int, at: datetime, *, forget_before: datetime
) -> None:
    """Record a failed /link attempt, and forget the user's ones that no longer matter."""
    await conn.execute(
        delete(link_failures).where(
            link_failures.c.pachca_user_id == pachca_user_id,
            link_failures.c.failed_at < forget_before,
        )
    )
    await conn.execute(link_failures.insert().values(pachca_user_id=pachca_user_id, failed_at=at))


async def prune_link_failures(conn: AsyncConnection, cutoff: datetime) -> int:
    """Delete failed /link attempts older than ``cutoff``; the number deleted."""
    result = await conn.execute(delete(link_failures).where(link_failures.c.failed_at < cutoff))
    return result.rowcount


async def get_setting(conn: AsyncConnection, key: str) -> str | None:
    return (await conn.execute(select(settings.c.value).where(settings.c.key == key))).scalar()


async def put_setting_once(conn: AsyncConnection, key: str, value: str) -> str:
    """Store ``value`` unless another process got there first; return the value that stands."""
    await conn.execute(
        insert_for(conn, settings).values(key=key, value=value).on_conflict_do_nothing()
    )
    stored = await get_setting(conn, key)
    assert stored is not None
    return stored


async def set_setting(conn: AsyncConnection, key: str, value: str) -> None:
    stmt = insert_for(conn, settings).values(key=key, value=value)
    await conn.execute(
        stmt.on_conflict_do_update(index_elements=[settings.c.key], set_={"value": value})
    )
