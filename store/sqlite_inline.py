"""aiosqlite's interface, executed inline on the event loop's own thread.

aiosqlite runs every call (cursor, execute, fetch, commit) on a worker thread and hops back;
each hop costs far more than the SQLite work itself (a statement on a WAL database with
synchronous=NORMAL takes microseconds and commits without fsync). Running the calls inline
removes three or four thread hops per statement. The trade-off: the loop waits while SQLite
works, which is short except when another process holds the write lock (busy_timeout) or a
WAL checkpoint syncs; both are rare for the embedded, single-process default.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import aiosqlite


class InlineConnection(aiosqlite.Connection):
    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    def __await__(self) -> Generator[Any, None, InlineConnection]:
        return self._open().__await__()

    async def _open(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection, for the raw write path (store/hotpath.py)."""
        return self._conn

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def connect(database: str) -> InlineConnection:
    # check_same_thread off: the pool may finalise a connection from the garbage collector.
    connector = partial(sqlite3.connect, database, check_same_thread=False)
    return InlineConnection(connector, iter_chunk_size=64)
