"""SQLite: statements inline on the event loop, reads on a connection of their own, and one
writer connection with group commit.

Inline
    A statement on a WAL database with ``synchronous=NORMAL`` takes microseconds and commits
    without an fsync; handing each call to a worker thread and back (aiosqlite) cost far more
    than the work. So statements run on the loop's own thread. The loop waits while SQLite
    works, which is short except when another process holds the write lock (``busy_timeout``)
    or a checkpoint syncs: automatic checkpoints are off, and store/db.py checkpoints from a
    thread of its own.

Two connections: reads and writes
    ``read()`` runs on the reader connection, in autocommit mode: each statement sees what is
    committed, never rows of a transaction still open (WAL keeps the writer from blocking it).
    A read needs no turn: it holds no transaction, and its statements run to completion
    inline, so reads of several coroutines may interleave freely.

    ``write()`` runs on the writer connection, handed to one writer at a time in arrival order
    (a coroutine that just finished cannot take it back ahead of those waiting: the
    SQLAlchemy pool's queue let it, which starved some requests for a second). SQLite has
    one writer anyway, and one in-process writer never meets "database is locked".

Group commit
    A commit writes every page the transaction touched to the WAL (about a dozen for a posted
    message) and was a quarter of a post's cost. So a write transaction, once begun, stays
    open until the event loop's next turn: writers that come meanwhile (the requests the loop
    handles in the same turn) join it, each under its own SAVEPOINT - a writer whose block
    raises rolls back to it, and the others carry on - and one COMMIT ends them all. Every
    writer's ``write()`` returns (or raises its own error) only after that COMMIT, so no caller
    publishes what is not durable, and what a writer saw of the others is committed by the
    time it returns. If the COMMIT fails, every writer of the batch gets the error. Nobody
    waits for a batch to fill: an idle service commits a batch of one on the next turn.
    (A single connection for both would make every read end the open batch - COMMIT first,
    so the read sees no uncommitted row - and a request's reads come between every two
    posts: batches of one.)

A connection that failed (closed under us, a failed COMMIT or ROLLBACK) is closed and replaced
by a new one when next needed. A database in memory has one connection for both: its reads see
the open batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.engine import Dialect

from store.errors import Conflict, DatabaseUnavailable, StoreError
from store.tx import Params, Row, Statement, StatementHook, Tx, first_set

BUSY_TIMEOUT_MS = 5000
STATEMENT_CACHE = 512  # sqlite3's prepared statements kept per connection


def pragmas(conn: Any) -> None:
    """The settings of every connection to the file (the service's and the migrations')."""
    cursor = conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Checkpoints run on a thread of their own (Database.start_checkpoints), not inline.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


def store_error(exc: sqlite3.Error) -> StoreError:
    if isinstance(exc, sqlite3.IntegrityError):
        return Conflict(type(exc).__name__)
    return DatabaseUnavailable(type(exc).__name__)


class _Link:
    """One sqlite3 connection to the file: opened when first needed, and replaced after a
    failure that leaves it in doubt."""

    def __init__(self, path: str, opening: Callable[[str], None]):
        self.path = path
        self._opening = opening
        self._conn: sqlite3.Connection | None = None
        self.broken = False

    def get(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._opening(self.path)  # OSError: no such folder
                # Autocommit mode: transactions are the BEGIN ... COMMIT written here, nothing
                # implicit. check_same_thread off: dispose() may close it from elsewhere.
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    cached_statements=STATEMENT_CACHE,
                )
                pragmas(conn)
            except (sqlite3.Error, OSError) as exc:
                raise DatabaseUnavailable(type(exc).__name__) from exc
            self._conn = conn
            self.broken = False
        return self._conn

    def failed(self, exc: sqlite3.Error) -> StoreError:
        """The store error for a statement's driver error; a connection that can no longer be
        used (closed, misused) is marked for replacing."""
        if isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError):
            self.broken = True
        return store_error(exc)

    def control(self, sql: str) -> None:
        """Transaction control; a failure leaves the connection in doubt: replace it."""
        try:
            self.get().execute(sql)
        except sqlite3.Error as exc:
            self.broken = True
            raise DatabaseUnavailable(type(exc).__name__) from exc

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self.broken = False
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


class SqliteTx(Tx):
    __slots__ = ("_conn", "_link")

    def __init__(self, dialect: Dialect, hooks: list[StatementHook], link: _Link):
        super().__init__(dialect, hooks)
        self._link = link
        self._conn = link.get()

    async def rows(self, stmt: Statement, params: Params | None = None) -> list[Row]:
        compiled = self._compile(stmt, params)
        sql, args = compiled.sql_and_args(params or {})
        if self._hooks:
            self._sent(sql, args)
        try:
            cursor = self._conn.execute(sql, args)
            found = cursor.fetchall()
        except sqlite3.Error as exc:
            raise self._link.failed(exc) from exc
        names = None if compiled.keys else [d[0] for d in cursor.description or ()]
        return [compiled.row(r, names) for r in found]

    async def value(self, stmt: Statement, params: Params | None = None) -> Any:
        compiled = self._compile(stmt, params)
        sql, args = compiled.sql_and_args(params or {})
        if self._hooks:
            self._sent(sql, args)
        try:
            found = self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._link.failed(exc) from exc
        return compiled.first_value(found[0]) if found else None

    async def run(self, stmt: Statement, params: Params | Sequence[Params] | None = None) -> int:
        compiled = self._compile(stmt, first_set(params))
        try:
            if params is None or isinstance(params, Mapping):
                sql, args = compiled.sql_and_args(params or {})
                if self._hooks:
                    self._sent(sql, args)
                cursor = self._conn.execute(sql, args)
                if compiled.returns_rows:
                    cursor.fetchall()  # RETURNING: the statement finishes as its rows are read
                return cursor.rowcount
            sets = compiled.batch_args(params)
            if self._hooks:
                for args in sets:
                    self._sent(compiled.sql, args)
            self._conn.executemany(compiled.sql, sets)
            return len(params)
        except sqlite3.Error as exc:
            raise self._link.failed(exc) from exc


class SqliteConnections:
    """The reader and the writer connection of a SQLite file, the writers' turns and their
    group commit."""

    def __init__(
        self,
        path: str,
        dialect: Dialect,
        hooks: list[StatementHook],
        committed: Callable[[set[str]], None],
        opening: Callable[[str], None],
    ):
        self.dialect = dialect
        self.hooks = hooks
        self._committed = committed
        self._writer = _Link(path, opening)
        in_memory = path in ("", ":memory:") or "mode=memory" in path
        self._reader = self._writer if in_memory else _Link(path, opening)
        self._busy = False  # a writer holds the writer connection (or is being handed it)
        self._queue: deque[asyncio.Future[None]] = deque()  # writers waiting for it
        # The open write transaction: each finished writer's future and signals, until COMMIT.
        self._batch: list[tuple[asyncio.Future[None], set[str] | None]] | None = None
        self._flush_due = False  # the loop turned while a writer held it: commit when it ends

    # --- reads ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        if self._reader.broken:
            self._reader.close()
        tx = SqliteTx(self.dialect, self.hooks, self._reader)
        yield tx
        if tx.signals:
            self._committed(tx.signals)

    # --- writes ---------------------------------------------------------------------------------

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        await self._take()
        try:
            if self._batch is None:
                if self._writer.broken:
                    self._writer.close()
                # IMMEDIATE: the write lock now, so a read-then-write transaction never meets
                # another process's write halfway (busy_timeout waits for it instead).
                self._writer.control("BEGIN IMMEDIATE")
                self._batch = []
                asyncio.get_running_loop().call_soon(self._flush)
            self._writer.control("SAVEPOINT writer")
            tx = SqliteTx(self.dialect, self.hooks, self._writer)
        except BaseException:
            self._abort()
            self._hand_on()
            raise
        failed: BaseException | None = None
        try:
            yield tx
        except BaseException as exc:
            failed = exc
        try:
            if failed is not None:
                self._writer.control("ROLLBACK TO writer")
            self._writer.control("RELEASE writer")
        except DatabaseUnavailable:
            self._abort()
            self._hand_on()
            if failed is not None:
                raise failed from None
            raise
        done = asyncio.get_running_loop().create_future()
        assert self._batch is not None
        self._batch.append((done, tx.signals if failed is None else None))
        self._hand_on()
        if failed is not None:
            # Raised once the batch has ended, so what this writer saw of the others (the
            # row its insert collided with) is committed when its caller looks again.
            with contextlib.suppress(StoreError):
                await done
            raise failed
        await done

    async def _take(self) -> None:
        if not self._busy:  # nobody waits whenever nobody holds it
            self._busy = True
            return
        turn = asyncio.get_running_loop().create_future()
        self._queue.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._hand_on()  # handed the connection as we were cancelled: pass it on
            raise

    def _hand_on(self) -> None:
        """The holder is done: commit first if the loop has turned meanwhile, then hand the
        writer connection to the next writer waiting (it joins the batch, if still open)."""
        if self._batch is not None and self._flush_due:
            self._commit()
        while self._queue:
            turn = self._queue.popleft()
            if not turn.done():  # not cancelled while waiting
                turn.set_result(None)
                return
        self._busy = False

    def _flush(self) -> None:
        """The loop's next turn: commit the batch, unless a writer holds the connection now
        (then it commits when that writer is done)."""
        if self._batch is None:
            return
        if self._busy:
            self._flush_due = True
            return
        self._commit()

    def _commit(self) -> None:
        batch, self._batch = self._batch, None
        self._flush_due = False
        assert batch is not None
        try:
            self._writer.control("COMMIT")
        except DatabaseUnavailable:
            self._rollback()
            for future, _ in batch:
                if not future.done():
                    future.set_exception(DatabaseUnavailable("the commit failed"))
            return
        signals: set[str] = set()
        for future, raised in batch:
            if not future.done():
                future.set_result(None)
            if raised:
                signals |= raised
        if signals:
            self._committed(signals)

    def _abort(self) -> None:
        """Roll the open batch back: every writer that finished in it gets the error."""
        batch, self._batch = self._batch, None
        self._flush_due = False
        if batch is None:
            return
        self._rollback()
        for future, _ in batch:
            if not future.done():
                future.set_exception(DatabaseUnavailable("the transaction failed"))

    def _rollback(self) -> None:
        with contextlib.suppress(DatabaseUnavailable):
            self._writer.control("ROLLBACK")
        self._writer.broken = True  # replaced before the next transaction

    def close(self) -> None:
        if self._batch is not None and not self._busy:
            self._commit()  # writers of the open batch are waiting for it
        self._writer.close()
        self._reader.close()
