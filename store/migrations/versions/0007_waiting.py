"""Chats waiting for an answer.

- ``waiting_chats``: a chat's waiting state: since the first of its student's messages after
  the last answer while its newest message is the student's, and the reminders sent. Filled
  from the messages already stored: a chat waits when the first live message after its
  newest live answer (a teacher's or tutor's) is its student's.

Revision ID: 0007
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The chats waiting now: the first live message after the newest live answer, when a
# student wrote it. Both dialects run it as it stands.
_BACKFILL = """
INSERT INTO waiting_chats (chat_id, since, first_message_id, reminders_sent)
SELECT m.chat_id, m.created_at, m.id, 0
FROM messages m JOIN users s ON s.id = m.sender_id
WHERE s.role = 'student' AND m.id = (
    SELECT min(f.id) FROM messages f
    WHERE f.chat_id = m.chat_id AND f.deleted_at IS NULL AND f.id > coalesce((
        SELECT max(a.id) FROM messages a JOIN users t ON t.id = a.sender_id
        WHERE a.chat_id = m.chat_id AND a.deleted_at IS NULL AND t.role IN ('teacher', 'tutor')
    ), 0)
)
"""


def upgrade() -> None:
    op.create_table(
        "waiting_chats",
        sa.Column("chat_id", BigId, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_message_id", sa.BigInteger(), nullable=True),
        sa.Column("last_reminded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reminders_sent", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"],
            ["chats.id"],
            name=op.f("fk_waiting_chats_chat_id_chats"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("chat_id", name=op.f("pk_waiting_chats")),
    )
    with op.batch_alter_table("waiting_chats") as batch_op:
        batch_op.create_index(
            batch_op.f("ix_waiting_chats_since_chat_id"), ["since", "chat_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_waiting_chats_last_reminded_at_since"),
            ["last_reminded_at", "since"],
            unique=False,
        )
    op.execute(_BACKFILL)


def downgrade() -> None:
    op.drop_table("waiting_chats")
