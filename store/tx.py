"""How the store runs SQL: statements built with SQLAlchemy Core, executed on the raw driver.

Why one executor
    SQLAlchemy builds and compiles every statement (the models in store/models.py are the one
    description of the schema), but its per-statement execution - execution context, result
    wrapping, the greenlet bridge to an async driver, a pool that pings and resets - cost
    about 15 times the SQLite work of a posted message. So the store runs every statement the
    same way: compiled by SQLAlchemy, executed by :class:`Tx` on the driver connection itself
    (the inline ``sqlite3.Connection`` on SQLite, an ``asyncpg.Connection`` on PostgreSQL,
    store/sqlite.py and store/postgres.py). There is no second path: services never choose one.

How statements are compiled and cached
    A statement is compiled with the public API - ``stmt.compile(dialect=...,
    column_keys=...)`` - into :class:`Compiled`: the SQL text, the positional parameter names
    (``compiled.positiontup``), each bind's processor from its dialect type
    (``type.dialect_impl(dialect).bind_processor(dialect)``: UTC datetimes as SQLite text,
    JSON as text...) and each result column's processor (``result_processor``), for the columns
    of ``stmt.exported_columns`` (a SELECT's, or the RETURNING columns of an INSERT, UPDATE or
    DELETE), keyed by their ``key`` or label. So a row reads back exactly as Core read it.
    Values embedded in the statement (``.values(status="done")``, ``col == 5``) are taken from
    their bind parameters; scalar column defaults (``default=0``) are filled in as Core does.

    Module-level statements are wrapped once, ``GET_USER = prepared(select(...))``, and
    compiled lazily, once per dialect (and, for INSERT/UPDATE, per set of parameter names, as
    Core does: the names given are the columns written). A statement built per call is compiled
    per call: cold paths only. IN lists (``col.in_(...)``, expanding bind parameters) are
    expanded per call through ``compiled.construct_expanded_state``, Core's own expansion.

Transactions, group commit, commit signals
    store/db.py hands out a ``Tx`` from ``read()`` (no transaction: each statement sees what is
    committed) or ``write()`` (one transaction, committed when the block ends). On SQLite a
    write transaction stays open until the event loop's next turn, and the writers that come
    meanwhile join it, each under its own savepoint, sharing one COMMIT (group commit;
    store/sqlite.py says why). On PostgreSQL, ``write_batched`` gathers writes of one kind
    that arrive together into one statement and one COMMIT (store/batching.py).
    ``tx.signal(name)`` marks the transaction; once it has committed, the database calls the
    subscribers of each signal raised (the outbox worker wakes on ``OUTBOX_DUE``).
    ``db.on_statement`` sees every statement sent (tests count them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import ClauseElement
from sqlalchemy.engine import Dialect
from sqlalchemy.engine.url import URL
from sqlalchemy.sql.expression import Executable

Params = Mapping[str, Any]
Row = dict[str, Any]
# Called with each statement's SQL and driver arguments (a batch: once per parameter set).
StatementHook = Callable[[str, Sequence[Any]], None]
Processor = Callable[[Any], Any]

_REQUIRED = object()  # a bind parameter the caller must give


def dialect_for(url: URL) -> Dialect:
    """The SQLAlchemy dialect of ``url``, for compiling only (it never connects)."""
    cls = url.get_dialect()
    return cls(dbapi=cls.import_dbapi())


class Compiled:
    """One statement compiled for one dialect: its SQL, its driver arguments from a mapping of
    parameters, and its result rows as dicts."""

    __slots__ = ("_compiled", "_defaults", "_expanding", "_procs", "_results", "keys", "sql")

    def __init__(self, stmt: Any, dialect: Dialect, column_keys: Sequence[str] | None = None):
        compiled: Any = stmt.compile(dialect=dialect, column_keys=column_keys)
        self._compiled = compiled
        self.sql: str = compiled.string
        binds = compiled.binds
        # Python-side scalar column defaults of an INSERT or UPDATE (Core "prefetches" them).
        prefetch: dict[str, Any] = {}
        for column in (*compiled.insert_prefetch, *compiled.update_prefetch):
            default = column.default if column in compiled.insert_prefetch else column.onupdate
            if default is None or not default.is_scalar:
                raise NotImplementedError(f"only scalar column defaults are supported: {column}")
            prefetch[column.key] = default.arg
        self._procs: dict[str, Processor | None] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in binds.items()
        }
        # IN lists, escaped names and callable values take Core's own parameter expansion.
        self._expanding = any(
            b.expanding or b.callable is not None for b in binds.values()
        ) or bool(compiled.escaped_bind_names)
        self._defaults: Any
        if self._expanding:
            self._defaults = prefetch
        else:
            self._defaults = tuple(
                (
                    name,
                    prefetch[name] if name in prefetch else _embedded(binds[name]),
                    self._procs[name],
                )
                for name in compiled.positiontup or ()
            )
        columns = getattr(stmt, "exported_columns", None)
        keys: tuple[str, ...] | None = None
        results: tuple[tuple[str, Processor], ...] = ()
        if columns is not None and len(columns):
            keys = tuple(columns.keys())
            if len(set(keys)) != len(keys):
                raise ValueError(f"result columns need distinct keys (label them): {keys}")
            results = tuple(
                (key, proc)
                for key, column in zip(keys, columns, strict=True)
                if (proc := column.type.dialect_impl(dialect).result_processor(dialect, None))
            )
        # None: a textual statement; its rows are keyed by the driver's column names.
        self.keys = keys
        self._results = results

    @property
    def returns_rows(self) -> bool:
        return self.keys is not None

    def batch_args(self, sets: Sequence[Params]) -> list[list[Any]]:
        """The driver's arguments for running the statement once per parameter set."""
        if self._expanding:
            raise TypeError("a statement with IN lists cannot run as a batch")
        return [self.args(params) for params in sets]

    def args(self, params: Params) -> list[Any]:
        """The driver's positional arguments."""
        if not self._expanding:
            out = []
            for name, default, proc in self._defaults:
                value = params.get(name, default)
                if value is _REQUIRED:
                    raise TypeError(f"a value is required for bind parameter {name!r}")
                out.append(value if proc is None else proc(value))
            return out
        return self._expand(params)[1]

    def sql_and_args(self, params: Params) -> tuple[str, list[Any]]:
        if not self._expanding:
            return self.sql, self.args(params)
        return self._expand(params)

    def _expand(self, params: Params) -> tuple[str, list[Any]]:
        state = self._compiled.construct_expanded_state({**self._defaults, **params})
        procs = state.processors
        out = []
        for name, value in zip(state.positiontup or (), state.positional_parameters, strict=True):
            proc = procs[name] if name in procs else self._procs.get(name)
            out.append(value if proc is None else proc(value))
        return state.statement, out

    def row(self, values: Iterable[Any], names: Sequence[str] | None = None) -> Row:
        """A result row as a dict (``names``: the driver's, for textual statements)."""
        row = dict(zip(self.keys or names or (), values, strict=True))
        for key, proc in self._results:
            row[key] = proc(row[key])
        return row

    def first_value(self, values: Sequence[Any]) -> Any:
        value = values[0]
        results = self._results
        if results and self.keys is not None and results[0][0] == self.keys[0]:
            return results[0][1](value)
        return value


def _embedded(bind: Any) -> Any:
    """The value a bind parameter carries in the statement, or _REQUIRED."""
    return _REQUIRED if bind.required else bind.value


class Prepared:
    """A statement compiled lazily, once per dialect (and per set of parameter names for an
    INSERT or UPDATE, whose names are the columns written). ``statement`` may be a function of
    the dialect's name, for dialect constructs (``ON CONFLICT``)."""

    __slots__ = ("_build", "_compiled", "_statements")

    def __init__(self, statement: Executable | Callable[[str], Executable]):
        self._build = statement
        self._statements: dict[type[Dialect], tuple[Executable, bool]] = {}
        self._compiled: dict[tuple[type[Dialect], tuple[str, ...] | None], Compiled] = {}

    def compiled(self, dialect: Dialect, params: Params | None) -> Compiled:
        kind = type(dialect)
        found = self._statements.get(kind)
        if found is None:
            build: Any = self._build
            stmt = build if isinstance(build, ClauseElement) else build(dialect.name)
            found = self._statements[kind] = (stmt, stmt.is_dml)
        keys = tuple(params) if params and found[1] else None
        compiled = self._compiled.get((kind, keys))
        if compiled is None:
            compiled = self._compiled[(kind, keys)] = Compiled(found[0], dialect, keys)
        return compiled


def prepared(statement: Executable | Callable[[str], Executable]) -> Prepared:
    """Mark a module-level statement for compiling once per dialect."""
    return Prepared(statement)


Statement = Executable | Prepared


class Tx:
    """A turn on a database connection: in a transaction (``db.write()``) or not
    (``db.read()``). Every store function takes one."""

    __slots__ = ("_hooks", "dialect", "event_ids", "signals")

    def __init__(self, dialect: Dialect, hooks: list[StatementHook]):
        self.dialect = dialect
        self._hooks = hooks
        self.signals: set[str] | None = None
        self.event_ids: list[int] | None = None  # PostgreSQL: events appended, settled at commit

    async def rows(self, stmt: Statement, params: Params | None = None) -> list[Row]:
        """Every row of a statement that returns rows."""
        raise NotImplementedError

    async def first(self, stmt: Statement, params: Params | None = None) -> Row | None:
        """The first row, or None."""
        rows = await self.rows(stmt, params)
        return rows[0] if rows else None

    async def value(self, stmt: Statement, params: Params | None = None) -> Any:
        """The first column of the first row, or None."""
        raise NotImplementedError

    async def run(self, stmt: Statement, params: Params | Sequence[Params] | None = None) -> int:
        """Run a statement for its effect; the rows it changed. ``params`` may be a list of
        parameter sets, run as one batch (then: the number of sets)."""
        raise NotImplementedError

    def appended_event(self, event_id: int) -> None:
        """PostgreSQL: the commit settles this event (store/events.py ``append``)."""
        if self.event_ids is None:
            self.event_ids = []
        self.event_ids.append(event_id)

    def signal(self, name: str) -> None:
        """Tell the subscribers of ``name`` once this transaction has committed."""
        if self.signals is None:
            self.signals = set()
        self.signals.add(name)

    def _compile(self, stmt: Statement, params: Params | None) -> Compiled:
        if isinstance(stmt, Prepared):
            return stmt.compiled(self.dialect, params)
        dml: bool = getattr(stmt, "is_dml", False)
        return Compiled(stmt, self.dialect, list(params) if params and dml else None)

    def _sent(self, sql: str, args: Sequence[Any]) -> None:
        for hook in self._hooks:
            hook(sql, args)


def first_set(params: Params | Sequence[Params] | None) -> Params | None:
    """The parameter set that decides how an INSERT compiles (Core uses the first too)."""
    if params is None or isinstance(params, Mapping):
        return params
    return params[0] if params else None


__all__ = ["Compiled", "Params", "Prepared", "Row", "Tx", "dialect_for", "prepared"]
