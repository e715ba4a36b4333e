"""Event audiences as rows: ``event_audience(event_id, user_id)`` replaces ``events.audience``.

The comma-joined column (",u1,u2,") was matched with LIKE, where ``%`` and ``_`` in a user id
are wildcards and SQLite ignores case, so some ids received other users' events; and the
pattern could use no index, so every ``since`` replay read the whole log. Rows are compared
with ``=`` and read through an index on (user_id, event_id).

Existing audiences are carried over as the old column was read (split at the commas).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

PAGE = 5000

events = sa.table("events", sa.column("id", sa.BigInteger()), sa.column("audience", sa.Text()))
audience = sa.table(
    "event_audience", sa.column("event_id", sa.BigInteger()), sa.column("user_id", sa.String())
)


def upgrade() -> None:
    op.create_table(
        "event_audience",
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "user_id", name=op.f("pk_event_audience")),
    )
    with op.batch_alter_table("event_audience", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_event_audience_user_id_event_id"), ["user_id", "event_id"], unique=False
        )
    copy_audiences()
    with (
        keep_event_ids(),
        op.batch_alter_table(
            "events", schema=None, table_kwargs={"sqlite_autoincrement": True}
        ) as batch_op,
    ):
        batch_op.drop_column("audience")


def copy_audiences() -> None:
    bind = op.get_bind()
    after = 0
    while True:
        page = bind.execute(
            sa.select(events.c.id, events.c.audience)
            .where(events.c.audience.is_not(None), events.c.id > after)
            .order_by(events.c.id)
            .limit(PAGE)
        ).all()
        if not page:
            return
        rows = [
            {"event_id": event_id, "user_id": user_id}
            for event_id, column in page
            for user_id in sorted(set(filter(None, column.split(","))))
        ]
        if rows:
            bind.execute(audience.insert(), rows)
        after = page[-1][0]


@contextmanager
def keep_event_ids() -> Iterator[None]:
    """SQLite: a batch rebuild re-creates ``events``, and its AUTOINCREMENT counter would
    restart from the largest id left (pruning may have left none); put the counter back so
    event ids are never reused."""
    bind = op.get_bind()
    seq = None
    if bind.dialect.name == "sqlite":
        seq = bind.execute(
            sa.text("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        ).scalar()
    yield
    if seq is None:
        return
    bind.execute(
        sa.text(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'events', 0 "
            "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events')"
        )
    )
    bind.execute(
        sa.text("UPDATE sqlite_sequence SET seq = max(seq, :seq) WHERE name = 'events'"),
        {"seq": seq},
    )


def downgrade() -> None:
    with (
        keep_event_ids(),
        op.batch_alter_table(
            "events", schema=None, table_kwargs={"sqlite_autoincrement": True}
        ) as batch_op,
    ):
        batch_op.add_column(sa.Column("audience", sa.Text(), nullable=True))
    bind = op.get_bind()
    joined: dict[int, list[str]] = {}
    for event_id, user_id in bind.execute(
        sa.select(audience.c.event_id, audience.c.user_id).order_by(
            audience.c.event_id, audience.c.user_id
        )
    ):
        joined.setdefault(event_id, []).append(user_id)
    for event_id, user_ids in joined.items():
        bind.execute(
            events.update()
            .where(events.c.id == event_id)
            .values(audience="," + ",".join(user_ids) + ",")
        )
    with op.batch_alter_table("event_audience", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_event_audience_user_id_event_id"))
    op.drop_table("event_audience")
