"""Users, link codes and generated settings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from store.models import LinkCode, LinkFailure, Participant, Setting, User
from store.tx import Row, Tx, prepared

users = User.__table__
link_codes = LinkCode.__table__
link_failures = LinkFailure.__table__
settings = Setting.__table__
participants = Participant.__table__


def insert_for(dialect: str, table: Any) -> Any:
    """A dialect INSERT, for ON CONFLICT clauses (both SQLite and PostgreSQL have them)."""
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(table)


# Every authenticated request runs it.
GET_USER = prepared(select(users).where(users.c.id == bindparam("user_id")))


async def get_user(tx: Tx, user_id: str) -> Row | None:
    return await tx.first(GET_USER, {"user_id": user_id})


async def get_users(tx: Tx, user_ids: list[str]) -> dict[str, Row]:
    if not user_ids:
        return {}
    rows = await tx.rows(select(users).where(users.c.id.in_(user_ids)))
    return {r["id"]: r for r in rows}


async def upsert_user(tx: Tx, values: dict[str, Any], now: datetime) -> None:
    stmt = insert_for(tx.dialect.name, users).values(**values, created_at=now, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[users.c.id], set_={**values, "updated_at": now}
    )
    await tx.run(stmt)


_CLEAR_PACHCA_USER_ID = prepared(
    update(users)
    .where(users.c.pachca_user_id == bindparam("pachca_id"), users.c.id != bindparam("keep"))
    .values(pachca_user_id=None)
)


async def clear_pachca_user_id(tx: Tx, pachca_user_id: int, keep: str) -> None:
    """A Pachca account belongs to one platform user: unlink it from any other."""
    await tx.run(_CLEAR_PACHCA_USER_ID, {"pachca_id": pachca_user_id, "keep": keep})


async def set_pachca_user_id(tx: Tx, user_id: str, pachca_user_id: int) -> None:
    await tx.run(update(users).where(users.c.id == user_id).values(pachca_user_id=pachca_user_id))


async def add_link_code(tx: Tx, code: str, user_id: str, expires_at: datetime) -> None:
    await tx.run(link_codes.insert().values(code=code, user_id=user_id, expires_at=expires_at))


async def revoke_link_codes(tx: Tx, user_id: str) -> None:
    """Delete every code the user has (a new one replaces them)."""
    await tx.run(delete(link_codes).where(link_codes.c.user_id == user_id))


async def use_link_code(tx: Tx, code: str, now: datetime) -> str | None:
    """Spend a code: the owner's user id, or None when unknown, expired or already used.

    One conditional UPDATE, so two concurrent uses cannot both succeed.
    """
    return await tx.value(
        update(link_codes)
        .where(
            link_codes.c.code == code,
            link_codes.c.used_at.is_(None),
            link_codes.c.expires_at > now,
        )
        .values(used_at=now)
        .returning(link_codes.c.user_id)
    )


async def get_link_code(tx: Tx, code: str) -> Row | None:
    """A code's row, to tell an expired code from a spent or unknown one."""
    return await tx.first(select(link_codes).where(link_codes.c.code == code))


# The first key of the PostgreSQL advisory locks that serialise one Pachca user's /link
# commands (the second is the user's id); apart from the event log's one-key lock.
LINK_ATTEMPTS_LOCK = 0x6C696E6B  # "link"
_LOCK_LINK_ATTEMPTS = prepared(text("SELECT pg_advisory_xact_lock(:kind, :key)"))


async def lock_link_attempts(tx: Tx, pachca_user_id: int) -> None:
    """Hold one Pachca user's /link attempts until this transaction ends, so concurrent
    attempts are counted one after another (PostgreSQL; SQLite has a single writer)."""
    if tx.dialect.name == "postgresql":
        await tx.run(
            _LOCK_LINK_ATTEMPTS,
            # int4 keys: an id that does not fit shares a lock with another, which only
            # makes the two wait for each other.
            {"kind": LINK_ATTEMPTS_LOCK, "key": (pachca_user_id & 0xFFFFFFFF) - 2**31},
        )


async def recent_link_failures(tx: Tx, pachca_user_id: int, *, limit: int) -> list[datetime]:
    """When the user's latest ``limit`` failed /link attempts were, newest first."""
    rows = await tx.rows(
        select(link_failures.c.failed_at)
        .where(link_failures.c.pachca_user_id == pachca_user_id)
        .order_by(link_failures.c.failed_at.desc(), link_failures.c.id.desc())
        .limit(limit)
    )
    return [r["failed_at"] for r in rows]


async def add_link_failure(
    tx: Tx, pachca_user_id: int, at: datetime, *, forget_before: datetime
) -> None:
    """Record a failed /link attempt, and forget the user's ones that no longer matter."""
    await tx.run(
        delete(link_failures).where(
            link_failures.c.pachca_user_id == pachca_user_id,
            link_failures.c.failed_at < forget_before,
        )
    )
    await tx.run(link_failures.insert().values(pachca_user_id=pachca_user_id, failed_at=at))


async def prune_link_failures(tx: Tx, cutoff: datetime) -> int:
    """Delete failed /link attempts older than ``cutoff``; the number deleted."""
    return await tx.run(delete(link_failures).where(link_failures.c.failed_at < cutoff))


_GET_SETTING = prepared(select(settings.c.value).where(settings.c.key == bindparam("key")))


async def get_setting(tx: Tx, key: str) -> str | None:
    return await tx.value(_GET_SETTING, {"key": key})


async def put_setting_once(tx: Tx, key: str, value: str) -> str:
    """Store ``value`` unless another process got there first; return the value that stands."""
    await tx.run(
        insert_for(tx.dialect.name, settings).values(key=key, value=value).on_conflict_do_nothing()
    )
    stored = await get_setting(tx, key)
    assert stored is not None
    return stored


async def set_setting(tx: Tx, key: str, value: str) -> None:
    stmt = insert_for(tx.dialect.name, settings).values(key=key, value=value)
    await tx.run(stmt.on_conflict_do_update(index_elements=[settings.c.key], set_={"value": value}))
