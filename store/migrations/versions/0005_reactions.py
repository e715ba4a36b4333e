"""Reactions, and the emoji the bot holds on Pachca copies.

- ``reactions``: one row per (message, user, emoji), with where it was made (``web`` or
  ``pachca``) and when (Pachca's time for a Pachca reaction).
- ``pachca_bot_reactions``: the emoji the bot holds on a message's Pachca copy, so the outbox
  adds and removes only the difference with what web users hold.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "reactions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("message_id", BigId, nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("emoji", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_reactions_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_reactions_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reactions")),
        sa.UniqueConstraint(
            "message_id", "user_id", "emoji", name=op.f("uq_reactions_message_id_user_id_emoji")
        ),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("reactions") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_reactions_message_id_id"), ["message_id", "id"], unique=False
        )
    op.create_table(
        "pachca_bot_reactions",
        sa.Column("message_id", BigId, nullable=False),
        sa.Column("emoji", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_pachca_bot_reactions_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", "emoji", name=op.f("pk_pachca_bot_reactions")),
    )


def downgrade() -> None:
    op.drop_table("pachca_bot_reactions")
    op.drop_table("reactions")
