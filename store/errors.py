"""The store's two failures: a constraint refused a write, or the database failed.

Driver errors (sqlite3's, asyncpg's, a refused connection) never leave the store as they are;
the driver's exception is chained as the cause, for the log. Messages name the driver error's
class only: a driver's own text can quote the values of a statement.
"""

from __future__ import annotations


class StoreError(Exception):
    """A statement failed."""


class Conflict(StoreError):
    """A unique, foreign key, not-null or check constraint refused the write. In a
    :meth:`store.db.Database.write` block it is raised from the failing statement, and the
    block's writes are undone when it leaves the block."""


class DatabaseUnavailable(StoreError):
    """Any other failure: the database is unreachable, locked, out of space, or refused the
    statement. Worth a retry later (the webhook endpoint answers 503)."""
