"""Tying a Pachca account to a platform user with a one-time code (``/link CODE``).

Codes (bridge/forum/link_codes.py) carry 60 random bits and live 15 minutes, one per user at a
time. Guessing is capped too: after ``MAX_WRONG_CODES`` codes that linked nothing, sent by one
Pachca user within ``WRONG_CODE_WINDOW``, that user's ``/link`` is blocked for ``BLOCK_FOR``: a
code sent then is not even looked at, however right. The attempts are rows in the database, so the
block holds across instances and restarts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from bridge.forum import link_codes
from bridge.pachca import membership
from store import users as user_store
from store.tx import Tx

MAX_WRONG_CODES = 5
WRONG_CODE_WINDOW = timedelta(minutes=15)
BLOCK_FOR = timedelta(minutes=15)
# An attempt older than this can no longer take part in a block.
FORGET_FAILURES_AFTER = WRONG_CODE_WINDOW + BLOCK_FOR


class LinkStatus(StrEnum):
    LINKED = "linked"
    EXPIRED = "expired"
    USED = "used"
    UNKNOWN = "unknown"
    BLOCKED = "blocked"  # too many wrong codes lately: the code was not looked at


@dataclass(frozen=True, slots=True)
class LinkResult:
    status: LinkStatus
    user: Any = None  # the platform user row, when linked
    # This attempt was the one too many: /link is blocked from now until then.
    blocked_until: datetime | None = None


async def link_account(conn: Tx, code: str, pachca_user_id: int, now: datetime) -> LinkResult:
    """Spend ``code`` and tie ``pachca_user_id`` to its owner, in the caller's transaction -
    unless that Pachca user is blocked for wrong codes. A code that links nothing counts
    as a wrong one, and the one that reaches the limit says so (``blocked_until``).

    The Pachca account is taken off any other platform user first (one account, one user),
    and the threads follow (bridge/pachca/membership.py ``account_moves``): a teacher or tutor
    whose account changed joins their threads, the account leaves the threads it was in.
    """
    await user_store.lock_link_attempts(conn, pachca_user_id)
    if await blocked_until(conn, pachca_user_id, now) is not None:
        return LinkResult(LinkStatus.BLOCKED)
    result = await _spend(conn, code, pachca_user_id, now)
    if result.status is LinkStatus.LINKED:
        return result
    await user_store.add_link_failure(
        conn, pachca_user_id, now, forget_before=now - FORGET_FAILURES_AFTER
    )
    until = await blocked_until(conn, pachca_user_id, now)
    return LinkResult(result.status, blocked_until=until) if until is not None else result


async def blocked_until(conn: Tx, pachca_user_id: int, now: datetime) -> datetime | None:
    """When the user's /link block ends, or None when they are not blocked.

    Blocked: the latest ``MAX_WRONG_CODES`` wrong codes came within ``WRONG_CODE_WINDOW`` of
    each other, and the last of them less than ``BLOCK_FOR`` ago. No attempt is recorded
    while blocked, so the one after a block starts afresh.
    """
    latest = await user_store.recent_link_failures(conn, pachca_user_id, limit=MAX_WRONG_CODES)
    if len(latest) < MAX_WRONG_CODES or latest[0] - latest[-1] >= WRONG_CODE_WINDOW:
        return None
    until = latest[0] + BLOCK_FOR
    return until if now < until else None


async def _spend(conn: Tx, typed: str, pachca_user_id: int, now: datetime) -> LinkResult:
    code = link_codes.normalise(typed)
    if code is None:
        return LinkResult(LinkStatus.UNKNOWN)
    user_id = await user_store.use_link_code(conn, code, now)
    if user_id is None:
        row = await user_store.get_link_code(conn, code)
        if row is None:
            return LinkResult(LinkStatus.UNKNOWN)
        return LinkResult(LinkStatus.USED if row["used_at"] is not None else LinkStatus.EXPIRED)
    before = await user_store.get_user(conn, user_id)
    old = before["pachca_user_id"] if before is not None else None
    if old != pachca_user_id:  # before the change: it reads who holds the account now
        await membership.account_moves(conn, user_id, old, pachca_user_id, now)
    await user_store.clear_pachca_user_id(conn, pachca_user_id, keep=user_id)
    await user_store.set_pachca_user_id(conn, user_id, pachca_user_id)
    return LinkResult(LinkStatus.LINKED, await user_store.get_user(conn, user_id))
