"""Alembic environment. Runs on the connection handed over by store.migrate.upgrade."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from store.models import Base


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=True,
        # Each numbered migration commits on its own, so a failure leaves the last good one.
        transaction_per_migration=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `pachca-bridge migrate`, which supplies the connection")
run_migrations(connection)
