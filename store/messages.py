"""Messages: writes, the paged list, and the Pachca id mapping."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Select,
    Text,
    bindparam,
    cast,
    func,
    literal,
    select,
    true,
    update,
)

from store import events as event_store
from store import forum as forum_store
from store import outbox as outbox_store
from store import waiting as waiting_store
from store.files import files_column
from store.models import Chat, Message, OutboxJob, User, WaitingChat
from store.reactions import reactions_column
from store.tx import Prepared, Row, Tx, prepared
from store.users import insert_for

messages = Message.__table__
users = User.__table__
chats = Chat.__table__
outbox = OutboxJob.__table__
waiting = WaitingChat.__table__

WITH_SENDER = select(
    messages,
    users.c.name.label("sender_name"),
    users.c.role.label("sender_role"),
).join(users, users.c.id == messages.c.sender_id)


def with_reactions(dialect: str) -> Select[Any]:
    """WITH_SENDER and the message's reactions (``reactions``) and files (``files``): what a
    message object needs."""
    return WITH_SENDER.add_columns(
        reactions_column(dialect, messages.c.id, "reactions"),
        files_column(dialect, messages.c.id, "files"),
    )


# Every posted or relayed message: its columns are the names of the values given.
INSERT_MESSAGE = prepared(messages.insert().returning(messages.c.id))
_GET = prepared(
    lambda dialect: with_reactions(dialect).where(
        messages.c.id == bindparam("message_id"), messages.c.deleted_at.is_(None)
    )
)
_BY_CLIENT_ID = prepared(
    lambda dialect: with_reactions(dialect).where(
        messages.c.sender_id == bindparam("sender_id"),
        messages.c.client_id == bindparam("client_id"),
    )
)
_LIVE_IN_CHAT = prepared(
    select(messages.c.id).where(
        messages.c.id == bindparam("message_id"),
        messages.c.chat_id == bindparam("chat_id"),
        messages.c.deleted_at.is_(None),
    )
)
# The values given besides ``message_id`` are the columns set.
_UPDATE = prepared(update(messages).where(messages.c.id == bindparam("message_id")))
_NEWEST_LIVE = prepared(
    select(messages.c.id, messages.c.created_at)
    .where(messages.c.chat_id == bindparam("chat_id"), messages.c.deleted_at.is_(None))
    .order_by(messages.c.id.desc())
    .limit(1)
)


async def insert_message(tx: Tx, values: dict[str, Any]) -> int:
    """Insert a message (``values``: its columns); its id."""
    message_id: int = await tx.value(INSERT_MESSAGE, values)
    return message_id


async def add(
    tx: Tx,
    values: dict[str, Any],
    *,
    last_at: datetime,
    starts_wait: bool,
    job: str | None,
    now: datetime,
    event: event_store.AboutNewRow | None = None,
) -> tuple[int, int | None]:
    """Insert a new message (``values``: its columns, ``chat_id`` and ``created_at`` among
    them), make it its chat's last message (activity at ``last_at``), start the chat's wait
    from it (``starts_wait``: unless one runs, store/waiting.py ``start``), queue the outbox
    job ``job`` naming it (``{"message_id": id}``, due ``now``) and append ``event`` about it
    (its id spliced into the payload; store/events.py ``append``). Its id and the event's.

    On PostgreSQL all of it is one statement (data-modifying CTEs): one round trip instead of
    five on the hottest write. SQLite runs in-process, where a statement costs no round trip,
    so it runs the statements one by one."""
    chat_id = values["chat_id"]
    if tx.dialect.name == "postgresql":
        stmt = _added_statement(tuple(values), starts_wait, job is not None, event is not None)
        params = {**values, "last_at": last_at}
        if job is not None:
            params |= {"job_kind": job, "job_lane": outbox_store.chat_lane(chat_id), "now": now}
        if event is not None:
            params |= {
                "event_type": event.type,
                "event_head": event.head,
                "event_tail": event.tail,
                "event_at": event.created_at,
            }
        ids = await tx.first(stmt, params)
        assert ids is not None  # one row, or the statement failed
        if job is not None:
            tx.signal(outbox_store.OUTBOX_DUE)
        if event is not None:
            tx.appended_event(ids["event_id"])
        return ids["id"], ids["event_id"]
    message_id = await insert_message(tx, values)
    await forum_store.set_last_message(tx, chat_id, message_id, last_at)
    if starts_wait:
        await waiting_store.start(tx, chat_id, message_id, values["created_at"])
    if job is not None:
        await outbox_store.enqueue(tx, job, {"message_id": message_id}, chat_id=chat_id, now=now)
    event_id = None
    if event is not None:
        event_id = await event_store.append(
            tx,
            chat_id=chat_id,
            type=event.type,
            payload=event.payload(message_id),
            audience=None,
            created_at=event.created_at,
        )
    return message_id, event_id


# One statement per set of message columns and parts (few: a web post, a relayed message...).
_ADDED: dict[tuple[tuple[str, ...], bool, bool, bool], Prepared] = {}


def _added_statement(
    columns: tuple[str, ...], starts_wait: bool, queues: bool, logs: bool
) -> Prepared:
    key = (columns, starts_wait, queues, logs)
    found = _ADDED.get(key)
    if found is None:
        found = _ADDED[key] = prepared(_added(columns, starts_wait, queues, logs))
    return found


def _added(columns: tuple[str, ...], starts_wait: bool, queues: bool, logs: bool) -> Any:
    """PostgreSQL: ``add`` as one statement. Every part reads the new id from the insert's
    CTE; a refused insert (a repeated client_id, a chat gone) fails the whole statement."""
    inserted = (
        messages.insert()
        .values({c: bindparam(c, type_=messages.c[c].type) for c in columns})
        .returning(messages.c.id)
        .cte("added")
    )
    new_id = select(inserted.c.id).scalar_subquery()
    parts = [
        update(chats)
        .where(chats.c.id == bindparam("chat_id", type_=messages.c.chat_id.type))
        .values(
            last_message_id=new_id,
            last_activity_at=bindparam("last_at", type_=chats.c.last_activity_at.type),
        )
        .cte("made_last")
    ]
    if starts_wait:  # as store/waiting.py ``start``
        wait = insert_for("postgresql", waiting).from_select(
            ["chat_id", "since", "first_message_id", "reminders_sent"],
            select(
                bindparam("chat_id", type_=messages.c.chat_id.type),
                bindparam("created_at", type_=messages.c.created_at.type),
                inserted.c.id,
                literal(0),
            ),
        )
        parts.append(
            wait.on_conflict_do_update(
                index_elements=[waiting.c.chat_id],
                set_={
                    "since": wait.excluded.since,
                    "first_message_id": wait.excluded.first_message_id,
                    "reminders_sent": 0,
                },
                where=waiting.c.since.is_(None),
            ).cte("waits")
        )
    if queues:  # as store/outbox.py ``enqueue``
        now = bindparam("now", type_=outbox.c.created_at.type)
        parts.append(
            outbox.insert()
            .from_select(
                [
                    "chat_id",
                    "lane",
                    "kind",
                    "payload",
                    "status",
                    "attempts",
                    "next_attempt_at",
                    "created_at",
                    "updated_at",
                ],
                select(
                    bindparam("chat_id", type_=messages.c.chat_id.type),
                    bindparam("job_lane", type_=outbox.c.lane.type),
                    bindparam("job_kind", type_=outbox.c.kind.type),
                    func.json_build_object("message_id", inserted.c.id),
                    literal(outbox_store.PENDING),
                    literal(0),
                    now,
                    now,
                    now,
                ),
            )
            .cte("queued")
        )
    if not logs:
        return select(inserted.c.id, literal(None, BigInteger).label("event_id")).add_cte(*parts)
    logged = event_store.insert_from_select(
        [
            bindparam("chat_id", type_=messages.c.chat_id.type),
            bindparam("event_type", type_=Text),
            bindparam("event_head", type_=Text)
            + cast(inserted.c.id, Text)
            + bindparam("event_tail", type_=Text),
            bindparam("event_at", type_=messages.c.created_at.type),
        ]
    ).cte("logged")
    return select(inserted.c.id, logged.c.id.label("event_id")).add_cte(*parts)


async def get_message(tx: Tx, message_id: int) -> Row | None:
    """A live (not deleted) message with its sender's name and role."""
    return await tx.first(_GET, {"message_id": message_id})


async def by_client_id(tx: Tx, sender_id: str, client_id: str) -> Row | None:
    return await tx.first(_BY_CLIENT_ID, {"sender_id": sender_id, "client_id": client_id})


async def is_live_in_chat(tx: Tx, message_id: int, chat_id: int) -> bool:
    return await tx.first(_LIVE_IN_CHAT, {"message_id": message_id, "chat_id": chat_id}) is not None


async def update_message(tx: Tx, message_id: int, values: dict[str, Any]) -> None:
    await tx.run(_UPDATE, {**values, "message_id": message_id})


async def newest_live(tx: Tx, chat_id: int) -> Row | None:
    return await tx.first(_NEWEST_LIVE, {"chat_id": chat_id})


async def page(
    tx: Tx,
    chat_id: int,
    *,
    limit: int,
    offset: int,
    before_id: int | None = None,
) -> tuple[list[Row], int]:
    """One page, oldest first, and the chat's total of live messages: always one query.

    The page's ids are outer-joined to the one-row count, so an empty page (an empty chat,
    an offset past the end) still carries the total and costs no second query.
    """
    params: dict[str, Any] = {"chat_id": chat_id, "limit": limit}
    if before_id is None:
        params["offset"] = offset
    else:
        params["before_id"] = before_id
    stmt = _PAGE_BEFORE if before_id is not None else _PAGE
    rows = await tx.rows(stmt, params)
    return [r for r in rows if r["id"] is not None], rows[0]["total"]


def _page_statement(before: bool, dialect: str) -> Select[Any]:
    live = (messages.c.chat_id == bindparam("chat_id")) & messages.c.deleted_at.is_(None)
    total = select(func.count().label("total")).select_from(messages).where(live).subquery("n")
    ids = select(messages.c.id.label("page_id")).where(live)
    if not before:
        ids = ids.order_by(messages.c.id).limit(bindparam("limit")).offset(bindparam("offset"))
    else:
        # The `limit` messages just before before_id: the newest of those, then oldest first.
        ids = (
            ids.where(messages.c.id < bindparam("before_id"))
            .order_by(messages.c.id.desc())
            .limit(bindparam("limit"))
        )
    page_ids = ids.subquery("p")
    return (
        select(
            total.c.total,
            messages,
            users.c.name.label("sender_name"),
            users.c.role.label("sender_role"),
            reactions_column(dialect, messages.c.id, "reactions"),
            files_column(dialect, messages.c.id, "files"),
        )
        .select_from(
            total.outerjoin(page_ids, true())
            .outerjoin(messages, messages.c.id == page_ids.c.page_id)
            .outerjoin(users, users.c.id == messages.c.sender_id)
        )
        .order_by(messages.c.id)
    )


_PAGE = prepared(lambda dialect: _page_statement(before=False, dialect=dialect))
_PAGE_BEFORE = prepared(lambda dialect: _page_statement(before=True, dialect=dialect))
