"""The write path every web message takes, run on the raw driver connection.

Measured on the POST path, SQLAlchemy's per-statement execution (execution context, result
wrapping, the greenlet bridge) cost about 15 times the SQLite work itself. The statements
here are still SQLAlchemy Core, built from the models and compiled once per dialect with
their bind processors; only their execution skips the Core machinery. Everything else in
the store runs through Core as usual.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import OperationalError
from sqlalchemy.sql.expression import Executable

from store.db import EVENT_LOG_LOCK, Database
from store.forum import CHAT_ACCESS, CHAT_WITH_PARTICIPANTS
from store.models import (
    Chat,
    Event,
    Message,
    OutboxJob,
    Participant,
    User,
    WebhookDelivery,
)
from store.users import GET_USER


class Conflict(Exception):
    """A unique or foreign key constraint refused the write; nothing was written."""


@dataclass(frozen=True, slots=True)
class Prepared:
    """One statement compiled for one dialect, with its parameters in positional order."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]
    # For SELECTs: the result's keys and their result processors.
    keys: tuple[str, ...] = ()
    results: tuple[Callable[[Any], Any] | None, ...] = ()

    @classmethod
    def compile(cls, stmt: Executable, dialect: Dialect) -> Prepared:
        compiled = stmt.compile(dialect=dialect)
        names = tuple(compiled.positiontup or ())
        # Bind processors turn Python values into what the driver stores (timestamps for
        # SQLite, JSON text), exactly as Core would, so Core reads the rows back unchanged;
        # result processors turn them back (SQLite's 0/1 into bools, text into datetimes).
        procs = compiled._bind_processors
        columns = list(getattr(stmt, "selected_columns", ()))
        return cls(
            compiled.string,
            names,
            tuple(procs.get(n) for n in names),
            tuple(c.key for c in columns),
            tuple(c.type._cached_result_processor(dialect, None) for c in columns),
        )

    def row(self, values: Any) -> dict[str, Any]:
        return {
            key: proc(value) if proc is not None else value
            for key, proc, value in zip(self.keys, self.results, values, strict=True)
        }

    def args(self, params: dict[str, Any]) -> list[Any]:
        return [
            proc(params[name]) if proc is not None else params[name]
            for name, proc in zip(self.names, self.processors, strict=True)
        ]


def _insert(table: Any, columns: list[str], returning: bool) -> Executable:
    stmt = table.insert().values({c: bindparam(f"p_{c}") for c in columns})
    return stmt.returning(table.c.id) if returning else stmt


_messages, _chats = Message.__table__, Chat.__table__
_users, _participants = User.__table__, Participant.__table__
_STATEMENTS: dict[str, Executable] = {
    "user": GET_USER,
    "access": CHAT_ACCESS,
    # The relay's reads: a Pachca message, a thread's forum chat, a Pachca account's user.
    "pachca_message": select(_messages.c.id, _messages.c.source, _messages.c.deleted_at).where(
        _messages.c.pachca_message_id == bindparam("pachca_id")
    ),
    "thread_access": CHAT_WITH_PARTICIPANTS.where(
        _chats.c.pachca_thread_chat_id == bindparam("thread")
    ),
    "pachca_user": select(_users).where(_users.c.pachca_user_id == bindparam("pachca_user")),
    "delivery": _insert(WebhookDelivery.__table__, ["key", "received_at"], returning=False),
    "message": _insert(
        _messages,
        [
            "chat_id",
            "sender_id",
            "content",
            "created_at",
            "edited_at",
            "reply_to_id",
            "source",
            "client_id",
            "pachca_message_id",
            "pachca_changed_at",
        ],
        returning=True,
    ),
    "last": update(_chats)
    .where(_chats.c.id == bindparam("p_chat_id"))
    .values(last_message_id=bindparam("p_message_id"), last_activity_at=bindparam("p_at")),
    "outbox": _insert(
        OutboxJob.__table__,
        [
            "chat_id",
            "lane",
            "kind",
            "payload",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "updated_at",
        ],
        returning=False,
    ),
    "event": _insert(Event.__table__, ["chat_id", "type", "payload", "created_at"], returning=True),
}


class _Sqlite:
    """Statements on the sqlite3 connection itself (see store/sqlite_inline.py)."""

    def __init__(self, conn: Any):
        self.conn = conn

    async def value(self, prep: Prepared, params: dict[str, Any]) -> Any:
        row = self.conn.execute(prep.sql, prep.args(params)).fetchone()
        return row[0] if row else None

    async def run(self, prep: Prepared, params: dict[str, Any]) -> None:
        self.conn.execute(prep.sql, prep.args(params))

    async def rows(self, prep: Prepared, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [prep.row(r) for r in self.conn.execute(prep.sql, prep.args(params))]

    async def lock_event_log(self) -> None:
        return None  # one writer already


class _Postgres:
    def __init__(self, conn: Any):
        self.conn = conn

    async def value(self, prep: Prepared, params: dict[str, Any]) -> Any:
        return await self.conn.fetchval(prep.sql, *prep.args(params))

    async def run(self, prep: Prepared, params: dict[str, Any]) -> None:
        await self.conn.execute(prep.sql, *prep.args(params))

    async def rows(self, prep: Prepared, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [prep.row(r) for r in await self.conn.fetch(prep.sql, *prep.args(params))]

    async def lock_event_log(self) -> None:
        # See Database.lock_event_log: event ids must commit in id order.
        await self.conn.execute("SELECT pg_advisory_xact_lock($1)", EVENT_LOG_LOCK)


class HotPath:
    """The paths every web message and every relayed Pachca message take: authenticate,
    check the chat, then write the message, its outbox job or delivery key, and its feed
    event in one transaction."""

    def __init__(self, db: Database):
        self.db = db
        dialect = db.engine.dialect
        self.prepared = {k: Prepared.compile(s, dialect) for k, s in _STATEMENTS.items()}
        self._batch: list[_Post] = []
        self._flush: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def _plain(self) -> AsyncIterator[_Sqlite | _Postgres]:
        """Reads outside any transaction (each statement sees committed data)."""
        if self.db.is_sqlite:
            async with self.db.sqlite_turn() as raw:
                yield _Sqlite(raw)
            return
        async with self.db.pg_connection() as conn:
            yield _Postgres(conn)

    async def user(self, user_id: str) -> dict[str, Any] | None:
        """A user row (as store.users.get_user), for authenticating every request."""
        async with self._plain() as tx:
            rows = await tx.rows(self.prepared["user"], {"user_id": user_id})
        return rows[0] if rows else None

    async def chat_access(self, chat_id: int) -> list[dict[str, Any]]:
        """The rows of store.forum.chat_access: the chat and its participants."""
        async with self._plain() as tx:
            return await tx.rows(self.prepared["access"], {"chat_id": chat_id})

    async def pachca_message(self, pachca_id: int) -> dict[str, Any] | None:
        """The forum message mirroring a Pachca message (id, source, deleted_at), if any."""
        async with self._plain() as tx:
            rows = await tx.rows(self.prepared["pachca_message"], {"pachca_id": pachca_id})
        return rows[0] if rows else None

    async def thread_access(self, thread_chat_id: int) -> list[dict[str, Any]]:
        """store.forum.chat_access rows of the forum chat a Pachca thread mirrors."""
        async with self._plain() as tx:
            return await tx.rows(self.prepared["thread_access"], {"thread": thread_chat_id})

    async def pachca_user(self, pachca_user_id: int) -> dict[str, Any] | None:
        async with self._plain() as tx:
            rows = await tx.rows(self.prepared["pachca_user"], {"pachca_user": pachca_user_id})
        return rows[0] if rows else None

    async def write_post(
        self,
        message: dict[str, Any],
        outbox: dict[str, Any] | None,
        event: dict[str, Any],
        payload_for: Callable[[int], str],
        *,
        delivery: dict[str, Any] | None = None,
        last_at: Any = None,
    ) -> tuple[int, int]:
        """Insert the message, move the chat's last message (to ``last_at``, else the
        message's time), enqueue the outbox job (its payload gets ``message_id``), record the
        webhook ``delivery`` key, and append the event whose serialised payload
        ``payload_for(message_id)`` returns: one transaction, committed before this returns.
        Returns (message id, event id); Conflict when a constraint refused it (a repeated
        client_id, delivery key or Pachca message id)."""
        post = _Post(
            {**_MESSAGE_DEFAULTS, **message},
            outbox,
            event,
            payload_for,
            delivery,
            last_at if last_at is not None else message["created_at"],
        )
        try:
            if self.db.is_sqlite:
                return await self._group_commit(post)
            async with self.db.pg_connection() as conn, conn.transaction():
                return await self._write(_Postgres(conn), post)
        except (sqlite3.Error, asyncpg.PostgresError) as exc:
            if _is_constraint_error(exc):
                raise Conflict(type(exc).__name__) from exc
            # Callers treat database trouble alike, whichever path met it.
            raise OperationalError("hot path write", None, exc) from exc

    async def _write(self, tx: _Sqlite | _Postgres, post: _Post) -> tuple[int, int]:
        p = self.prepared
        if post.delivery is not None:
            await tx.run(p["delivery"], _params(post.delivery))
        message_id = await tx.value(p["message"], _params(post.message))
        await tx.run(
            p["last"],
            {
                "p_chat_id": post.message["chat_id"],
                "p_message_id": message_id,
                "p_at": post.last_at,
            },
        )
        if post.outbox is not None:
            payload = {**post.outbox["payload"], "message_id": message_id}
            await tx.run(p["outbox"], _params({**post.outbox, "payload": payload}))
        await tx.lock_event_log()
        payload = post.payload_for(message_id)
        event_id = await tx.value(p["event"], _params({**post.event, "payload": payload}))
        return message_id, event_id

    # --- SQLite: group commit ----------------------------------------------------------
    #
    # A SQLite commit writes every page the transaction touched to the WAL (about a dozen
    # for a post: the rows and their indexes) and was a quarter of a post's cost. Posts that
    # arrive while one batch waits for the connection join the next batch, which commits
    # once; each post runs under its own savepoint, so one refused post (a repeated
    # client_id) does not undo the others. Nobody waits for a batch to fill: an idle
    # service commits a batch of one at once.

    async def _group_commit(self, post: _Post) -> tuple[int, int]:
        post.done = asyncio.get_running_loop().create_future()
        self._batch.append(post)
        if self._flush is None:
            self._flush = asyncio.create_task(self._flush_batch(), name="hotpath-commit")
        return await asyncio.shield(post.done)

    async def _flush_batch(self) -> None:
        batch: list[_Post] = []
        try:
            async with self.db.sqlite_turn() as raw:
                # From here on, new posts gather for the next batch.
                batch, self._batch, self._flush = self._batch, [], None
                results = await self._commit_batch(raw, batch)
        except BaseException as exc:
            if not batch:  # never got the connection: fail everyone waiting
                batch, self._batch, self._flush = self._batch, [], None
            results = [exc] * len(batch)
        for post, result in zip(batch, results, strict=True):
            assert post.done is not None
            if isinstance(result, BaseException):
                post.done.set_exception(result)
            else:
                post.done.set_result(result)

    async def _commit_batch(
        self, raw: sqlite3.Connection, batch: list[_Post]
    ) -> list[tuple[int, int] | BaseException]:
        tx = _Sqlite(raw)
        results: list[tuple[int, int] | BaseException] = []
        try:
            raw.execute("BEGIN")
            for post in batch:
                raw.execute("SAVEPOINT post")
                try:
                    results.append(await self._write(tx, post))
                except sqlite3.IntegrityError as exc:
                    raw.execute("ROLLBACK TO post")
                    results.append(Conflict(type(exc).__name__))
                raw.execute("RELEASE post")
            raw.commit()
        except BaseException:
            raw.rollback()
            raise
        return results


_MESSAGE_DEFAULTS = {
    "edited_at": None,
    "reply_to_id": None,
    "client_id": None,
    "pachca_message_id": None,
    "pachca_changed_at": None,
}


@dataclass(slots=True)
class _Post:
    message: dict[str, Any]
    outbox: dict[str, Any] | None
    event: dict[str, Any]
    payload_for: Callable[[int], str]
    delivery: dict[str, Any] | None
    last_at: Any
    done: asyncio.Future[tuple[int, int]] | None = None


def _params(values: dict[str, Any]) -> dict[str, Any]:
    return {f"p_{k}": v for k, v in values.items()}


def _is_constraint_error(exc: Exception) -> bool:
    return isinstance(exc, (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError))


def hot_for(db: Database) -> HotPath:
    """The database's HotPath (statements are compiled once per database)."""
    if not isinstance(db.hot_path, HotPath):
        db.hot_path = HotPath(db)
    return db.hot_path
