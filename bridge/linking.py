"""Tying a Pachca account to a platform user with a one-time code (``/link CODE``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.users import enqueue_membership
from store import users as user_store

# Codes are stored upper-case (bridge/users.py new_link_code); people type them any way.
MAX_CODE_CHARS = 32  # link_codes.code is String(32)


class LinkStatus(StrEnum):
    LINKED = "linked"
    EXPIRED = "expired"
    USED = "used"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class LinkResult:
    status: LinkStatus
    user: Any = None  # the platform user row, when linked


async def link_account(
    conn: AsyncConnection, code: str, pachca_user_id: int, now: datetime
) -> LinkResult:
    """Spend ``code`` and tie ``pachca_user_id`` to its owner, in the caller's transaction.

    The Pachca account is taken off any other platform user first (one account, one user),
    and a teacher or tutor whose account changed is queued to join their threads.
    """
    code = code.strip().upper()
    if not code or len(code) > MAX_CODE_CHARS:
        return LinkResult(LinkStatus.UNKNOWN)
    user_id = await user_store.use_link_code(conn, code, now)
    if user_id is None:
        row = await user_store.get_link_code(conn, code)
        if row is None:
            return LinkResult(LinkStatus.UNKNOWN)
        return LinkResult(LinkStatus.USED if row["used_at"] is not None else LinkStatus.EXPIRED)
    before = await user_store.get_user(conn, user_id)
    await user_store.clear_pachca_user_id(conn, pachca_user_id, keep=user_id)
    await user_store.set_pachca_user_id(conn, user_id, pachca_user_id)
    if before is None or before["pachca_user_id"] != pachca_user_id:
        await enqueue_membership(conn, user_id, now)
    return LinkResult(LinkStatus.LINKED, await user_store.get_user(conn, user_id))
