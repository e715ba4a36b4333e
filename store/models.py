"""The schema. Every table the bridge keeps, typed with SQLAlchemy 2 ``Mapped[...]``.

Queries run as Core statements over these tables (the other store modules, run by
store/tx.py); the ORM classes are the single description of the schema that Alembic migrations
are checked against.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# Without AUTOINCREMENT SQLite reuses the id of the newest row once it is deleted: a new chat
# would take a deleted chat's id, which the event log and clients still name (migration 0002).
NEVER_REUSE_IDS: dict[str, Any] = {"sqlite_autoincrement": True}


class UtcDateTime(TypeDecorator[datetime]):
    """Timestamps are UTC everywhere; SQLite forgets the zone, so it is put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(255))
    pachca_user_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    tutor_id: Mapped[str | None] = mapped_column(String(64))
    children: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Enrollment(Base):
    __tablename__ = "enrollments"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    student_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    teacher_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    subject_id: Mapped[str] = mapped_column(String(64))
    subject_name: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Chat(Base):
    """A forum chat, and the Pachca thread that mirrors it."""

    __tablename__ = "chats"
    __table_args__ = (UniqueConstraint("enrollment_id", "type"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    enrollment_id: Mapped[str] = mapped_column(ForeignKey("enrollments.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(16))  # forum_subject | forum_tutor
    title: Mapped[str] = mapped_column(String(255))
    subject_id: Mapped[str] = mapped_column(String(64))
    subject_name: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Denormalised so listing chats needs no per-chat subquery for the newest message.
    last_message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_activity_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # The Pachca thread that mirrors this chat, once the outbox has opened it.
    pachca_root_message_id: Mapped[int | None] = mapped_column(BigInteger)
    pachca_thread_id: Mapped[int | None] = mapped_column(BigInteger)
    pachca_thread_chat_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)


class Participant(Base):
    __tablename__ = "participants"
    __table_args__ = (Index(None, "user_id"),)

    chat_id: Mapped[int] = mapped_column(
        ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    # The part played in this chat: student | teacher | tutor.
    role: Mapped[str] = mapped_column(String(16))
    # Highest message id this participant has read (read receipts and unread counts).
    last_read_message_id: Mapped[int] = mapped_column(BigInteger, default=0)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        Index(None, "chat_id", "id"),
        UniqueConstraint("sender_id", "client_id"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    sender_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    edited_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # Soft delete: the row stays so the outbox can still delete its Pachca copy.
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reply_to_id: Mapped[int | None] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(8))  # web | pachca
    client_id: Mapped[str | None] = mapped_column(String(128))
    # The Pachca copy (or original): edits, deletes and echo suppression go through it.
    pachca_message_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    # changed_at of the last Pachca edit applied, so a late, older edit does not win.
    pachca_changed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class WaitingChat(Base):
    """A chat's waiting state (docs/api.md, admin/waiting), written with the messages that
    start and end a wait (store/waiting.py), so the waiting list and reminders never scan
    messages. ``since`` is set while the chat's newest message is its student's; the row
    outlives the wait only while its last reminder still counts against ``repeat_s``."""

    __tablename__ = "waiting_chats"
    __table_args__ = (
        # The waiting list, longest wait first.
        Index(None, "since", "chat_id"),
        # Reminders due: never sent (null) and waiting long enough, or sent long ago.
        Index(None, "last_reminded_at", "since"),
    )

    chat_id: Mapped[int] = mapped_column(
        ForeignKey("chats.id", ondelete="CASCADE"), primary_key=True
    )
    # created_at of the first of the student's messages after the last answer, and its id;
    # both null once answered.
    since: Mapped[datetime | None] = mapped_column(UtcDateTime())
    first_message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_reminded_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    reminders_sent: Mapped[int] = mapped_column(Integer, default=0)


class Reaction(Base):
    """A user's emoji on a message: one row per (message, user, emoji)."""

    __tablename__ = "reactions"
    __table_args__ = (
        UniqueConstraint("message_id", "user_id", "emoji"),
        # A message's reactions in the order they were made (message objects list them so).
        Index(None, "message_id", "id"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    emoji: Mapped[str] = mapped_column(String(64))
    # Where it was made: web (the bot mirrors it on the Pachca copy) | pachca (a person's own).
    source: Mapped[str] = mapped_column(String(8))
    # When it was made (Pachca's time for a Pachca reaction): orders its new/delete webhooks.
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BotReaction(Base):
    """An emoji the bot holds on a message's Pachca copy (for the web users who hold it)."""

    __tablename__ = "pachca_bot_reactions"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    emoji: Mapped[str] = mapped_column(String(64), primary_key=True)


class StoredFile(Base):
    """A file's metadata; its bytes are in the blob store under ``storage_key`` (store/blobs.py).

    Uploaded into a chat by a user, attached to one message at most (``message_id`` NULL until
    then). No foreign keys: a deleted message or chat leaves its rows for the sweeper
    (bridge/ops/maintenance.py), which removes the bytes first and the row after, so no blob
    is ever left without the row that names it."""

    __tablename__ = "files"
    __table_args__ = (
        Index(None, "message_id"),
        Index(None, "created_at"),
        Index(None, "deleted_at"),
        UniqueConstraint("pachca_file_id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random, never the name
    chat_id: Mapped[int] = mapped_column(BigInteger)
    uploader_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    position: Mapped[int] = mapped_column(Integer, default=0)  # its place in the message
    name: Mapped[str] = mapped_column(String(255))  # as given; never used as a path
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(255))
    storage_key: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # A copy of a Pachca file: its id there (a retried copy reuses what is already stored).
    pachca_file_id: Mapped[int | None] = mapped_column(BigInteger)
    # A web file uploaded to Pachca: the key its upload got (a retried post reuses it).
    pachca_key: Mapped[str | None] = mapped_column(String(1024))


class Event(Base):
    """The append-only feed log. ``id`` is the event_id clients see."""

    __tablename__ = "events"
    __table_args__ = (Index(None, "chat_id", "id"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(32))
    # The frame without event_id, serialised once at write time.
    payload: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)
    # PostgreSQL: the id of the transaction that wrote the event (xid8 as a number). Readers
    # go by the row's xmin, not this (store/events.py ``append``). Null on SQLite.
    txid: Mapped[int | None] = mapped_column(BigInteger)


class EventAudience(Base):
    """An event's explicit recipients (besides admins), one row each, for events whose chat
    may be gone or re-assigned (chat.deleted, chat.updated); an event without rows goes to
    whoever may see its chat. Written with the event, pruned with it. User ids are compared
    with ``=`` only: exactly, whatever characters they hold.

    No foreign key to ``events``: rebuilding that table on SQLite (a batch migration drops
    and re-creates it) would cascade into this one."""

    __tablename__ = "event_audience"
    # The key serves reading an event's audience and pruning; the index, a user's replay.
    __table_args__ = (Index(None, "user_id", "event_id"),)

    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(64), primary_key=True)


class OutboxJob(Base):
    """A pending call to Pachca, written in the same transaction as the change it reports."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index(None, "status", "next_attempt_at"),
        Index(None, "chat_id", "id"),
        # A lane's head (its oldest pending job) and the next lane, in one index seek each.
        Index(None, "status", "lane", "id"),
        Index(None, "message_id"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    chat_id: Mapped[int | None] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    # Jobs of one lane run one at a time, in id order: "chat:<id>" for a forum chat's jobs,
    # "<entity_type>:<id>" for a bot answer outside a forum thread (a direct chat).
    lane: Mapped[str] = mapped_column(String(64))
    # The forum message an edit job follows: a waiting edit job takes later edits along.
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))  # pending | done | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # A claimed job belongs to its worker until then; afterwards anyone may take it again.
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class WebhookDelivery(Base):
    """One row per processed Pachca event key: a redelivery hits the primary key and stops."""

    __tablename__ = "webhook_deliveries"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class LinkCode(Base):
    """A one-time code a user sends to the bot as ``/link CODE``."""

    __tablename__ = "link_codes"
    __table_args__ = (Index(None, "user_id"),)

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class LinkFailure(Base):
    """A ``/link`` that did not link, kept a while: too many of them block the sender's
    ``/link`` for a time (bridge/forum/linking.py)."""

    __tablename__ = "link_failures"
    __table_args__ = (Index(None, "pachca_user_id", "failed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    pachca_user_id: Mapped[int] = mapped_column(BigInteger)
    failed_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class Setting(Base):
    """Small values the service generates once and keeps (the JWT key when none is configured)."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
