"""Outbox lanes and edit coalescing; failed /link attempts; link codes by user.

- ``outbox.lane``: jobs of one lane run one at a time, in order, and the worker takes lanes
  oldest-first, one job each, so no chat or Pachca user holds the others back. Existing jobs
  get their forum chat's lane, a bot answer outside a thread the lane of the Pachca entity it
  goes to (read from its payload), anything else a lane of its own.
- ``outbox.message_id``: the message an edit job follows, so later edits join a waiting job
  instead of queueing one each.
- ``link_failures``: wrong ``/link`` codes per Pachca user, for the lockout.
- ``link_codes.user_id`` indexed: a new code revokes the user's older ones.

Revision ID: 0004
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_outbox = sa.table(
    "outbox",
    sa.column("id", sa.BigInteger),
    sa.column("kind", sa.String),
    sa.column("status", sa.String),
    sa.column("payload", sa.JSON),
    sa.column("lane", sa.String),
    sa.column("message_id", sa.BigInteger),
)


def _sqlite_sequence(table: str) -> int | None:
    """SQLite: the table's AUTOINCREMENT high-water mark (rebuilding the table resets it to
    the highest id still present, which would hand out ids of pruned rows again)."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return None
    return bind.execute(
        sa.text("SELECT seq FROM sqlite_sequence WHERE name = :t"), {"t": table}
    ).scalar()


def _restore_sequence(table: str, seq: int | None) -> None:
    if seq is not None:
        op.execute(
            sa.text("UPDATE sqlite_sequence SET seq = max(seq, :s) WHERE name = :t").bindparams(
                s=seq, t=table
            )
        )


def _backfill_lanes() -> None:
    op.execute("UPDATE outbox SET lane = 'chat:' || chat_id WHERE chat_id IS NOT NULL")
    op.execute("UPDATE outbox SET lane = 'job:' || id WHERE chat_id IS NULL")
    bind = op.get_bind()
    # Pending jobs only: finished ones never run again. Bot answers outside a thread go to
    # one Pachca entity each; edit jobs name their message.
    rows = bind.execute(
        sa.select(_outbox.c.id, _outbox.c.kind, _outbox.c.payload, _outbox.c.lane).where(
            _outbox.c.status == "pending"
        )
    ).all()
    for job_id, kind, payload, lane in rows:
        values: dict[str, object] = {}
        payload = payload if isinstance(payload, dict) else {}
        if lane.startswith("job:") and {"entity_type", "entity_id"} <= payload.keys():
            values["lane"] = f"{payload['entity_type']}:{payload['entity_id']}"[:64]
        if kind == "edit_message" and isinstance(payload.get("message_id"), int):
            values["message_id"] = payload["message_id"]
        if values:
            bind.execute(sa.update(_outbox).where(_outbox.c.id == job_id).values(**values))


def upgrade() -> None:
    seq = _sqlite_sequence("outbox")
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("lane", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("message_id", sa.BigInteger(), nullable=True))
    _backfill_lanes()
    # Rebuilt on SQLite (a column becomes NOT NULL): keep AUTOINCREMENT (migration 0002).
    with op.batch_alter_table("outbox", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.alter_column("lane", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(
            batch_op.f("ix_outbox_status_lane_id"), ["status", "lane", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_outbox_message_id"), ["message_id"], unique=False)
    _restore_sequence("outbox", seq)

    with op.batch_alter_table("link_codes") as batch_op:
        batch_op.create_index(batch_op.f("ix_link_codes_user_id"), ["user_id"], unique=False)

    op.create_table(
        "link_failures",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("pachca_user_id", sa.BigInteger(), nullable=False),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_failures")),
    )
    with op.batch_alter_table("link_failures") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_link_failures_pachca_user_id_failed_at"),
            ["pachca_user_id", "failed_at"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_link_failures_failed_at"), ["failed_at"], unique=False)


def downgrade() -> None:
    op.drop_table("link_failures")
    with op.batch_alter_table("link_codes") as batch_op:
        batch_op.drop_index(batch_op.f("ix_link_codes_user_id"))
    seq = _sqlite_sequence("outbox")
    with op.batch_alter_table("outbox", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_message_id"))
        batch_op.drop_index(batch_op.f("ix_outbox_status_lane_id"))
        batch_op.drop_column("message_id")
        batch_op.drop_column("lane")
    _restore_sequence("outbox", seq)
