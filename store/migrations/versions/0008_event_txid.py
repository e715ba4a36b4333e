"""events.txid: the transaction that wrote an event, on PostgreSQL.

Writers append events without a lock and commit in any order; readers take an event only once
every transaction that had started when it took its id has ended (store/events.py). Null on
SQLite, whose single writer commits ids in order, and on events written before this revision.

Revision ID: 0008
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy on SQLite): the table keeps its AUTOINCREMENT.
    op.add_column("events", sa.Column("txid", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("txid")
