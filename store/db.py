"""Engine and connections for SQLite (embedded default) and PostgreSQL (scale-out)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from store import sqlite_inline

SQLITE_BUSY_TIMEOUT_MS = 5000
# Serialises event inserts on PostgreSQL so that event ids commit in id order and a reader
# that saw id N can never later find a smaller id appear (see Database.lock_event_log).
EVENT_LOG_LOCK = 0x70616368  # "pach"
# The SQLite files hold every message and the generated JWT key: the owner's only.
SQLITE_FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")

log = structlog.get_logger("bridge.store")


def safe_url(url: str | URL) -> str:
    """The URL with any password masked, for logs and errors."""
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """Owns the engine. Every query runs on a connection from :meth:`read` or :meth:`write`."""

    def __init__(self, url: str, **engine_kwargs: Any):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        if self.is_sqlite:
            # One connection: SQLite has a single writer anyway, and one in-process connection
            # never meets "database is locked" on a read-then-write transaction. WAL keeps
            # other processes (the CLI) able to read while the service writes.
            engine_kwargs.setdefault("pool_size", 1)
            engine_kwargs.setdefault("max_overflow", 0)
            engine_kwargs.setdefault("pool_timeout", 60)
            database = self.url.database or ":memory:"
            engine_kwargs.setdefault("async_creator", lambda: _connect_sqlite(database))
        else:
            engine_kwargs.setdefault("pool_size", 10)
            engine_kwargs.setdefault("max_overflow", 10)
            engine_kwargs.setdefault("pool_pre_ping", True)
        self.engine: AsyncEngine = create_async_engine(self.url, **engine_kwargs)
        # SQLite's one connection is handed out in arrival order: the pool's own queue lets
        # a coroutine that just returned the connection take it straight back, which starved
        # some requests for a second under load.
        self._turn = asyncio.Lock() if self.is_sqlite else None
        self._checkpointer: asyncio.Task[None] | None = None
        self._sqlite: sqlite3.Connection | None = None
        # PostgreSQL: a plain asyncpg pool for the hot path (see pg_connection).
        self._connect_args: dict[str, Any] = dict(engine_kwargs.get("connect_args", {}))
        self._pool_size = int(engine_kwargs.get("pool_size", 10))
        self._pg_pool: asyncpg.Pool | None = None
        self._pg_pool_lock = asyncio.Lock()
        # store/hotpath.py keeps its compiled statements here (one set per database).
        self.hot_path: Any = None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_on_connect)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A pooled connection, taken in turn."""
        if self._turn is None:
            async with self.engine.connect() as conn:
                yield conn
            return
        async with self._turn, self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def sqlite_turn(self) -> AsyncIterator[sqlite3.Connection]:
        """SQLite: the one connection itself, for the raw hot path (store/hotpath.py).

        Holding the turn excludes every other user of the connection, and skips the pool's
        checkout and reset, which cost more than the statements of a request.
        """
        assert self._turn is not None, "SQLite only"
        async with self._turn:
            if self._sqlite is None:
                async with self.engine.connect() as conn:
                    driver = (await conn.get_raw_connection()).driver_connection
                    self._sqlite = driver.sqlite  # type: ignore[union-attr]
            try:
                yield self._sqlite
            except sqlite3.ProgrammingError:
                # The pool replaced the connection (closed after an error): look it up anew.
                self._sqlite = None
                raise

    @asynccontextmanager
    async def pg_connection(self) -> AsyncIterator[asyncpg.Connection]:
        """PostgreSQL: a connection of a plain asyncpg pool, for the raw hot path.

        SQLAlchemy's pool pings a connection on checkout and rolls it back on return: two
        extra round trips, more than the statements of a request. The hot path changes no
        session state (its transactions end before the connection goes back), so this pool
        neither pings nor resets.
        """
        if self._pg_pool is None:
            async with self._pg_pool_lock:
                if self._pg_pool is None:
                    self._pg_pool = await asyncpg.create_pool(
                        self.url.set(drivername="postgresql").render_as_string(hide_password=False),
                        min_size=1,
                        max_size=self._pool_size,
                        reset=_keep_session,
                        server_settings=self._connect_args.get("server_settings"),
                    )
        async with self._pg_pool.acquire() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads; nothing it does is committed."""
        async with self.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self.connect() as conn, conn.begin():
            yield conn

    def start_checkpoints(self, every_s: float = 1.0) -> None:
        """SQLite: move the WAL into the database file from a thread of its own.

        Statements run inline on the event loop (store/sqlite_inline.py); an automatic
        checkpoint would copy pages and fsync there, stalling every request for it.
        """
        if self.is_sqlite and self._checkpointer is None:
            self._checkpointer = asyncio.create_task(self._checkpoints(every_s))

    async def _checkpoints(self, every_s: float) -> None:
        path = self.url.database
        if not path or path == ":memory:":
            return
        while True:
            await asyncio.sleep(every_s)
            await asyncio.to_thread(_checkpoint, path)

    async def lock_event_log(self, conn: AsyncConnection) -> None:
        """Take the event-log lock for the rest of this transaction (PostgreSQL only).

        Sequence values are handed out before commit, so two transactions could commit ids
        10 and 11 in the order 11, 10; a feed reader that replayed up to 11 would then miss 10.
        Holding this lock from the event insert to the commit makes id order commit order.
        SQLite has a single writer and needs nothing.
        """
        if not self.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": EVENT_LOG_LOCK})

    async def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        async with self._pg_pool_lock:  # a pool being created now is closed too
            pool, self._pg_pool = self._pg_pool, None
        if pool is not None:
            await pool.close()
        await self.engine.dispose()


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """No reset on release: hot-path transactions leave nothing behind in the session."""


async def _connect_sqlite(database: str) -> sqlite_inline.InlineConnection:
    keep_private(database)
    return await sqlite_inline.connect(database)


def keep_private(database: str) -> None:
    """Create the SQLite file readable and writable by its owner only, and take group and
    other access away from it and its -wal, -shm and -journal files where they have any.

    SQLite gives the files it creates next to the database the database's own mode, so a
    database made here keeps all of them private. Called before each connection is opened.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return  # in memory, or a URI whose options are the caller's business
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        # FileNotFoundError: no such folder; SQLite's own error says so next.
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE))
    for path in (database + suffix for suffix in SQLITE_SIDE_FILES):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                os.chmod(path, mode & 0o700)
                log.warning(
                    "database file was readable by others; now by its owner only",
                    path=path,
                    mode_was=oct(mode),
                    mode=oct(mode & 0o700),
                )
        except FileNotFoundError:
            continue
        except OSError as exc:  # not ours to change (another user's file, read-only mount)
            log.warning("could not restrict a database file", path=path, error=str(exc))


def _checkpoint(path: str) -> None:
    """One passive checkpoint on a connection of its own, opened and closed in the same
    thread: a cancelled caller never leaves a connection shared between two threads."""
    conn = sqlite3.connect(path)
    try:
        # PASSIVE never blocks the writer or readers; it copies what it can.
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        conn.close()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Checkpoints run on a thread of their own (Database.checkpoint_every), not inline.
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()
