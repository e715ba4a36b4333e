"""Sockets follow their user: a socket is not decided once at connect and then trusted.

The hub closes a socket (``CloseReason.UNAUTHORIZED``) when the user's role changes or the user
is gone (a ``USER_CHANGED`` control message, from any instance), when the token rules in force
(key, audience, lifetime cap) no longer accept its token, and at the token's expiry (the
hub's registry sets that timer). Control messages travel at most once, like events, so the
sockets are also checked against the users table and the token rules after the feed
reconnects, and every ``SWEEP_EVERY_CHECKS`` periodic checks (about a minute): that bounds how
long a lost message matters.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog

from bridge.auth import token_rules
from bridge.config import Config
from bridge.errors import Unauthorized
from bridge.feed.connection import CloseReason, Conn
from bridge.feed.transport import USER_CHANGED, Control
from bridge.runtime import Runtime
from store import users as user_store

if TYPE_CHECKING:
    from bridge.feed.hub import Hub

logger = structlog.get_logger("bridge.feed")

RECHECK_BATCH = 500  # sockets re-verified (or users read) before letting others run
USER_CHANGED_REASON = "user changed: reconnect"


class Following:
    def __init__(self, hub: Hub, rt: Runtime):
        self._hub = hub
        self._rt = rt
        # How many user or token-rule changes this hub has heard of: a join that saw the
        # count move while its socket authenticated checks that socket again.
        self.changes = 0
        self._recheck: asyncio.Task[None] | None = None
        self._recheck_due = False
        self._recheck_roles = False

    @property
    def rechecking(self) -> bool:
        """Whether a re-check of the open sockets is under way."""
        return self._recheck is not None

    def receive_control(self, control: Control, remote: bool) -> None:
        """The feed's control subscriber (from this instance or another)."""
        if control.kind == USER_CHANGED and control.user_id is not None:
            self.user_changed(control.user_id)

    def user_changed(self, user_id: str) -> None:
        """The user's role changed, or the user is gone: close their sockets (joining ones
        included); the clients reconnect and get what the user may see now."""
        self.changes += 1
        hub = self._hub
        for conn in list(hub.sockets_of(user_id)):
            hub.drop(conn, CloseReason.UNAUTHORIZED, USER_CHANGED_REASON)

    def config_changed(self, old: Config, new: Config) -> None:
        """The LiveConfig listener: new token rules re-verify every open socket's token."""
        if token_rules(old.auth) != token_rules(new.auth):
            self.changes += 1
            self.schedule_recheck(roles=False)

    def schedule_recheck(self, *, roles: bool) -> None:
        """Check every open socket soon: its token, and (with ``roles``) its user."""
        if not self._hub.conns:
            return  # nobody to check; a join under way sees `changes` move and checks itself
        self._recheck_due = True
        self._recheck_roles = self._recheck_roles or roles
        if self._recheck is None:
            self._recheck = asyncio.get_running_loop().create_task(
                self._recheck_all(), name="feed-recheck"
            )

    def stop(self) -> None:
        if self._recheck is not None:
            self._recheck.cancel()

    async def _recheck_all(self) -> None:
        try:
            while self._recheck_due:
                roles, self._recheck_roles, self._recheck_due = self._recheck_roles, False, False
                await self.revalidate(list(self._hub.conns), roles=roles)
        except Exception as exc:
            logger.warning("socket re-check failed", error=repr(exc))
        finally:
            self._recheck = None

    async def revalidate(self, conns: list[Conn], *, roles: bool) -> None:
        """Close each of ``conns`` whose token the rules in force refuse, or (with ``roles``)
        whose user is gone or holds another role than the socket was opened for."""
        hub = self._hub
        for n, conn in enumerate(conns, 1):
            if conn.closing:
                continue
            try:
                self._rt.tokens.verify(conn.token)
            except Unauthorized:
                hub.drop(conn, CloseReason.UNAUTHORIZED, "token no longer accepted: reconnect")
            if n % RECHECK_BATCH == 0:
                await asyncio.sleep(0)  # thousands of signatures: let the loop breathe
        if not roles:
            return
        alive = [c for c in conns if not c.closing]
        user_ids = sorted({c.user.id for c in alive})
        found: dict[str, Any] = {}
        for start in range(0, len(user_ids), RECHECK_BATCH):
            async with self._rt.db.read() as db:
                found.update(
                    await user_store.get_users(db, user_ids[start : start + RECHECK_BATCH])
                )
        for conn in alive:
            row = found.get(conn.user.id)
            if row is None or row["role"] != conn.user.role:
                hub.drop(conn, CloseReason.UNAUTHORIZED, USER_CHANGED_REASON)
