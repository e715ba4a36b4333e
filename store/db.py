"""The database: SQLite (the embedded default) or PostgreSQL (scale-out), one API for both.

``read()`` gives a :class:`store.tx.Tx` outside any transaction (each statement sees what is
committed); ``write()`` one in a transaction, committed when the block ends and rolled back if
it raises; ``write_batched()`` writes one unit of a kind that PostgreSQL writes many at a time
(store/batching.py). Nothing else reaches a connection. store/tx.py describes how statements run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from sqlalchemy.engine import URL, make_url

from store.batching import BatchedWrite, R, U
from store.postgres import PostgresPool
from store.sqlite import SqliteConnections
from store.tx import StatementHook, Tx, dialect_for

# The SQLite files hold every message and the generated JWT key: the owner's only.
SQLITE_FILE_MODE = 0o600
SQLITE_SIDE_FILES = ("", "-wal", "-shm", "-journal")

log = structlog.get_logger("bridge.store")


def safe_url(url: str | URL) -> str:
    """The URL with any password masked, for logs and errors."""
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """Owns the connections (SQLite's one, or PostgreSQL's pool) and hands them out as
    :class:`Tx`. ``connect_args`` go to asyncpg's connections (``server_settings``, say)."""

    def __init__(
        self, url: str | URL, *, connect_args: Mapping[str, Any] | None = None, pool_size: int = 10
    ):
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.dialect = dialect_for(self.url)
        self.connect_args: dict[str, Any] = dict(connect_args or {})
        self._statement_hooks: list[StatementHook] = []
        self._subscribers: dict[str, list[Callable[[], None]]] = {}
        self._checkpointer: asyncio.Task[None] | None = None
        self._backend: SqliteConnections | PostgresPool
        if self.is_sqlite:
            self._backend = SqliteConnections(
                self.url.database or ":memory:",
                self.dialect,
                self._statement_hooks,
                self._committed,
                keep_private,
            )
        else:
            self._backend = PostgresPool(
                self.url,
                self.dialect,
                self._statement_hooks,
                self._committed,
                connect_args=self.connect_args,
                pool_size=pool_size,
            )

    def read(self) -> AbstractAsyncContextManager[Tx]:
        """Statements outside any transaction: each sees what is committed."""
        return self._backend.read()

    def write(self) -> AbstractAsyncContextManager[Tx]:
        """One transaction: committed when the block ends (the block's exit waits for it),
        rolled back if it raises. Never nest a read or write inside it: on SQLite the block
        holds the one connection."""
        return self._backend.write()

    async def write_batched(self, kind: BatchedWrite[U, R], unit: U) -> R:
        """Write ``unit`` in a transaction of its own, or with others of its kind that come
        meanwhile (PostgreSQL, store/batching.py); its result once committed. SQLite's own
        group commit already shares the commit: there it is ``kind.one`` in ``write()``."""
        if isinstance(self._backend, PostgresPool):
            return await self._backend.write_batched(kind, unit)
        async with self.write() as tx:
            return await kind.one(tx, unit)

    # --- hooks ----------------------------------------------------------------------------------

    def on_signal(self, name: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` after each commit of a transaction that raised ``name``
        (``tx.signal(name)``); returns a function that stops it."""
        self._subscribers.setdefault(name, []).append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.get(name, []).remove(callback)

        return remove

    def on_statement(self, callback: StatementHook) -> Callable[[], None]:
        """Call ``callback(sql, args)`` for every statement sent to the driver, with its
        positional arguments (transaction control is not a statement here; a batch calls it
        once per parameter set); returns a function that stops it. For tests."""
        self._statement_hooks.append(callback)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._statement_hooks.remove(callback)

        return remove

    def _committed(self, signals: set[str]) -> None:
        for name in signals:
            for callback in list(self._subscribers.get(name, ())):
                try:
                    callback()
                except Exception:  # a subscriber cannot undo a commit: report and go on
                    log.exception("commit signal subscriber failed", signal=name)

    # --- SQLite checkpoints ---------------------------------------------------------------------

    def start_checkpoints(self, every_s: float = 1.0) -> None:
        """SQLite: move the WAL into the database file from a thread of its own.

        Statements run inline on the event loop (store/sqlite.py); an automatic checkpoint
        would copy pages and fsync there, stalling every request for it.
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

    async def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if isinstance(self._backend, SqliteConnections):
            self._backend.close()
        else:
            await self._backend.close()


def keep_private(database: str) -> None:
    """Create the SQLite file readable and writable by its owner only, and take group and
    other access away from it and its -wal, -shm and -journal files where they have any.

    SQLite gives the files it creates next to the database the database's own mode, so a
    database made here keeps all of them private. Called before each connection is opened.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return  # in memory, or a URI whose options are the caller's business
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE))
    except FileExistsError:
        pass
    except FileNotFoundError:
        # Said here, before any driver tries: aiosqlite's thread, failing to open it, may
        # answer a loop that the failure has already closed (a stray traceback at exit).
        raise FileNotFoundError(
            f"unable to open database file: no folder {os.path.dirname(database) or '.'}"
        ) from None
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
