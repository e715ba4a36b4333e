"""PostgreSQL: a plain asyncpg pool.

No liveness ping when a connection is taken and no session reset when it is given back:
SQLAlchemy's pool did both, two extra round trips per use, more than the statements of a
request. Every use ends its transaction before giving the connection back, so there is nothing
to reset; a connection given back inside a transaction (its task cancelled mid-way) is rolled
back, and one that broke is dropped by asyncpg and replaced.

JSON columns: the pool's connections encode and decode ``json``/``jsonb`` as SQLAlchemy's
asyncpg dialect sets them up (``setup_asyncpg_json_codec``): text in, Python values out, so
the JSON type's processors agree with Core's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.engine import URL, Dialect

from store.batching import BatchedWrite, Batcher, R, U
from store.errors import Conflict, DatabaseUnavailable, StoreError
from store.events import settle_statement
from store.tx import Params, Row, Statement, StatementHook, Tx, first_set

# Everything asyncpg raises for a statement or a connection (DataError is an InterfaceError).
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


def store_error(exc: BaseException) -> StoreError:
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return Conflict(type(exc).__name__)
    return DatabaseUnavailable(type(exc).__name__)


def _rowcount(status: str) -> int:
    """The row count of a command status ("UPDATE 3", "INSERT 0 1"); 0 when it has none."""
    last = status.rpartition(" ")[2]
    return int(last) if last.isdigit() else 0


class PgTx(Tx):
    __slots__ = ("_conn",)

    def __init__(self, dialect: Dialect, hooks: list[StatementHook], conn: asyncpg.Connection):
        super().__init__(dialect, hooks)
        self._conn = conn

    async def rows(self, stmt: Statement, params: Params | None = None) -> list[Row]:
        compiled = self._compile(stmt, params)
        sql, args = compiled.sql_and_args(params or {})
        if self._hooks:
            self._sent(sql, args)
        try:
            records = await self._conn.fetch(sql, *args)
        except DRIVER_ERRORS as exc:
            raise store_error(exc) from exc
        if compiled.keys is None:
            return [dict(r.items()) for r in records]
        return [compiled.row(r) for r in records]

    async def value(self, stmt: Statement, params: Params | None = None) -> Any:
        compiled = self._compile(stmt, params)
        sql, args = compiled.sql_and_args(params or {})
        if self._hooks:
            self._sent(sql, args)
        try:
            record = await self._conn.fetchrow(sql, *args)
        except DRIVER_ERRORS as exc:
            raise store_error(exc) from exc
        return compiled.first_value(record) if record is not None else None

    async def run(self, stmt: Statement, params: Params | Sequence[Params] | None = None) -> int:
        compiled = self._compile(stmt, first_set(params))
        try:
            if params is None or isinstance(params, Mapping):
                sql, args = compiled.sql_and_args(params or {})
                if self._hooks:
                    self._sent(sql, args)
                if compiled.returns_rows:
                    return len(await self._conn.fetch(sql, *args))
                return _rowcount(await self._conn.execute(sql, *args))
            sets = compiled.batch_args(params)
            if self._hooks:
                for args in sets:
                    self._sent(compiled.sql, args)
            await self._conn.executemany(compiled.sql, sets)
            return len(params)
        except DRIVER_ERRORS as exc:
            raise store_error(exc) from exc


async def _json_codecs(conn: asyncpg.Connection) -> None:
    """As sqlalchemy.dialects.postgresql.asyncpg sets them on its connections."""

    def json_decoder(raw: bytes) -> Any:
        return json.loads(raw.decode())

    def jsonb_encoder(text: str) -> bytes:
        return b"\x01" + text.encode()  # jsonb's binary format: a version byte, then text

    def jsonb_decoder(raw: bytes) -> Any:
        return json.loads(raw[1:].decode())

    await conn.set_type_codec(
        "json", encoder=str.encode, decoder=json_decoder, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec(
        "jsonb", encoder=jsonb_encoder, decoder=jsonb_decoder, schema="pg_catalog", format="binary"
    )


async def _roll_back_leftovers(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing, unless a cancelled user left a transaction open."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PostgresPool:
    def __init__(
        self,
        url: URL,
        dialect: Dialect,
        hooks: list[StatementHook],
        committed: Callable[[set[str]], None],
        *,
        connect_args: Mapping[str, Any],
        pool_size: int,
    ):
        self.url = url
        self.dialect = dialect
        self.hooks = hooks
        self._committed = committed
        self._connect_args = dict(connect_args)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        self._batchers: dict[int, Batcher[Any, Any]] = {}

    async def write_batched(self, kind: BatchedWrite[U, R], unit: U) -> R:
        """``unit`` written with others of its kind that come meanwhile (store/batching.py)."""
        batcher = self._batchers.get(id(kind))
        if batcher is None:
            batcher = self._batchers[id(kind)] = Batcher(kind, self.write)
        result: R = await batcher.submit(unit)
        return result

    async def _acquire(self) -> tuple[asyncpg.Pool, asyncpg.Connection]:
        """A connection and the pool to give it back to: ``close`` may swap the pool out
        meanwhile, and a connection not given back to its own pool holds that pool's close."""
        try:
            if self._pool is None:
                async with self._lock:
                    if self._pool is None:
                        self._pool = await asyncpg.create_pool(
                            self.url.set(drivername="postgresql").render_as_string(
                                hide_password=False
                            ),
                            min_size=1,
                            max_size=self._pool_size,
                            init=_json_codecs,
                            reset=_roll_back_leftovers,
                            **self._connect_args,
                        )
            pool = self._pool
            return pool, await pool.acquire()
        except DRIVER_ERRORS as exc:
            raise DatabaseUnavailable(type(exc).__name__) from exc

    async def _release(self, pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
        # On an error asyncpg has dropped the connection; the pool opens another when needed.
        with contextlib.suppress(*DRIVER_ERRORS):
            await pool.release(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        pool, conn = await self._acquire()
        try:
            tx = PgTx(self.dialect, self.hooks, conn)
            yield tx
        finally:
            await self._release(pool, conn)
        if tx.signals:
            self._committed(tx.signals)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        # BEGIN and COMMIT are sent as plain statements (not asyncpg's Transaction), so that a
        # transaction that appended events settles them in its COMMIT's round trip.
        pool, conn = await self._acquire()
        try:
            tx = PgTx(self.dialect, self.hooks, conn)
            try:
                await conn.execute("BEGIN")
            except DRIVER_ERRORS as exc:
                raise store_error(exc) from exc
            try:
                yield tx
            except BaseException:
                # On an error the connection broke: asyncpg drops it when it is given back.
                with contextlib.suppress(*DRIVER_ERRORS):
                    await conn.execute("ROLLBACK")
                raise
            commit = "COMMIT"
            if tx.event_ids:
                commit = f"{settle_statement(tx.event_ids)}; COMMIT"
            try:
                await conn.execute(commit)
            except DRIVER_ERRORS as exc:
                with contextlib.suppress(*DRIVER_ERRORS):
                    await conn.execute("ROLLBACK")  # a failed settle leaves the block open
                raise store_error(exc) from exc
        finally:
            await self._release(pool, conn)
        if tx.signals:
            self._committed(tx.signals)

    async def close(self) -> None:
        for batcher in list(self._batchers.values()):
            await batcher.drain()
        async with self._lock:  # a pool being created now is closed too
            pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
