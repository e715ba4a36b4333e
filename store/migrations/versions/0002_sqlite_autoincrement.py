"""SQLite: never reuse the ids of chats, messages, events and outbox jobs.

Without AUTOINCREMENT, SQLite gives a new row max(id) + 1, so deleting the newest chat (an
enrollment's DELETE) handed its id to the next chat: clients, and the event log that still names
the old chat, would take the new chat for the old one (a feed replay by chat id would show the
old chat's messages to the new chat's participants), and pruning every event restarted event
ids. PostgreSQL's identity sequences never reuse an id, so this changes SQLite only.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES = ("chats", "messages", "events", "outbox")
# Rows that reference chats. Batch mode rebuilds a table by dropping it, and with foreign keys
# on, dropping `chats` cascades into these; so they are kept aside and put back.
CHAT_CHILDREN = ("participants", "messages", "outbox")


def rebuild(table: str, autoincrement: bool) -> None:
    with op.batch_alter_table(
        table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass


def seed_sequence(table: str, floor_sql: str) -> None:
    """Make the table's next id exceed ``floor_sql`` (ids that live on outside the table)."""
    op.execute(
        f"INSERT INTO sqlite_sequence (name, seq) SELECT '{table}', 0 "
        f"WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = '{table}')"
    )
    op.execute(f"UPDATE sqlite_sequence SET seq = max(seq, ({floor_sql})) WHERE name = '{table}'")


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for child in CHAT_CHILDREN:
        op.execute(f"CREATE TEMP TABLE keep_{child} AS SELECT * FROM {child}")
    rebuild("chats", True)
    for child in CHAT_CHILDREN:
        # OR IGNORE: with foreign keys off nothing cascaded, and the rows are still there.
        op.execute(f"INSERT OR IGNORE INTO {child} SELECT * FROM keep_{child}")
        op.execute(f"DROP TABLE keep_{child}")
    for table in TABLES[1:]:
        rebuild(table, True)
    # Deleted chats are still named by the event log; pruned events by clients' `since`.
    seed_sequence("chats", "SELECT coalesce(max(chat_id), 0) FROM events")
    seed_sequence(
        "events",
        "SELECT coalesce(max(CAST(value AS INTEGER)), 0) FROM settings "
        "WHERE key = 'events_pruned_through'",
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for child in CHAT_CHILDREN:
        op.execute(f"CREATE TEMP TABLE keep_{child} AS SELECT * FROM {child}")
    rebuild("chats", False)
    for child in CHAT_CHILDREN:
        op.execute(f"INSERT OR IGNORE INTO {child} SELECT * FROM keep_{child}")
        op.execute(f"DROP TABLE keep_{child}")
    for table in TABLES[1:]:
        rebuild(table, False)
