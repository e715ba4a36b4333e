"""Writing a new message with everything that goes with it: one at a time, or many at once.

A new message makes itself its chat's last message, starts (a student's) or ends (a teacher's
or tutor's) the chat's wait for an answer, may queue an outbox job naming it, and appends the
feed event about it - all in the writer's transaction (``add``). On PostgreSQL all of that is
one statement, and web posts that arrive together are written by one statement for all of
them (``NEW_MESSAGES``, through ``Database.write_batched``; store/batching.py says why).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from store import events as event_store
from store import forum as forum_store
from store import outbox as outbox_store
from store import waiting as waiting_store
from store.messages import insert_message
from store.tx import Tx, prepared


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to write: ``values`` are its columns (``chat_id`` and ``created_at`` among
    them). It becomes its chat's last message with activity at ``last_at``; ``starts_wait``:
    the chat waits from it (unless it waits already); ``ends_wait``: it answers the chat's
    wait; ``job``: the outbox job to queue about it (``{"message_id": id}``, due ``now``);
    ``event``: the feed event about it (its id spliced into the payload)."""

    values: dict[str, Any]
    last_at: datetime
    now: datetime
    starts_wait: bool = False
    ends_wait: bool = False
    job: str | None = None
    event: event_store.AboutNewRow | None = None

    @property
    def chat_id(self) -> int:
        chat_id: int = self.values["chat_id"]
        return chat_id


@dataclass(frozen=True, slots=True)
class Added:
    id: int
    event_id: int | None
    waited_since: datetime | None  # ends_wait: since when the chat had waited, if it did


async def add(tx: Tx, new: NewMessage) -> Added:
    """Write ``new`` in the caller's transaction.

    On PostgreSQL the message, the chat's last message, the wait it starts or ends, the outbox
    job and the event are one statement (``_ADD_MANY``, data-modifying CTEs): one round trip
    instead of six. SQLite runs in-process, where a statement costs no round trip: it runs
    them one by one."""
    if tx.dialect.name == "postgresql":
        (added,) = await _add_many(tx, [new])
        return added
    chat_id = new.chat_id
    message_id = await insert_message(tx, new.values)
    await forum_store.set_last_message(tx, chat_id, message_id, new.last_at)
    if new.starts_wait:
        await waiting_store.start(tx, chat_id, message_id, new.values["created_at"])
    if new.job is not None:
        await outbox_store.enqueue(
            tx, new.job, {"message_id": message_id}, chat_id=chat_id, now=new.now
        )
    event_id = None
    if new.event is not None:
        event_id = await event_store.append(
            tx,
            chat_id=chat_id,
            type=new.event.type,
            payload=new.event.payload(message_id),
            audience=None,
            created_at=new.event.created_at,
        )
    waited_since = await waiting_store.end(tx, chat_id) if new.ends_wait else None
    return Added(message_id, event_id, waited_since)


class NewMessages:
    """New messages as a kind of batched write (store/batching.py): a chat's row is changed by
    each, so a batch holds one message per chat at most."""

    def key(self, unit: NewMessage) -> Hashable:
        return unit.chat_id

    async def one(self, tx: Tx, unit: NewMessage) -> Added:
        return await add(tx, unit)

    async def many(self, tx: Tx, units: Sequence[NewMessage]) -> list[Added]:
        """PostgreSQL: every unit in one statement; no two of one chat."""
        return await _add_many(tx, units)


NEW_MESSAGES = NewMessages()


async def _add_many(tx: Tx, units: Sequence[NewMessage]) -> list[Added]:
    """PostgreSQL: ``add`` for every unit at once, in one statement (``_ADD_MANY``)."""
    params: dict[str, list[Any]] = {name: [] for name in _ARRAYS}
    for unit in units:
        values, event = unit.values, unit.event
        unknown = values.keys() - _MESSAGE_COLUMNS.keys()
        if unknown:
            raise ValueError(f"not a column a new message is written with: {sorted(unknown)}")
        for column in _MESSAGE_COLUMNS:
            params[column].append(values.get(column))
        params["last_at"].append(unit.last_at)
        params["starts_wait"].append(unit.starts_wait)
        params["ends_wait"].append(unit.ends_wait)
        params["job_kind"].append(unit.job)
        params["job_lane"].append(outbox_store.chat_lane(unit.chat_id))
        params["job_at"].append(unit.now)
        params["event_type"].append(event and event.type)
        params["event_head"].append(event and event.head)
        params["event_tail"].append(event and event.tail)
        params["event_at"].append(event and event.created_at)
    rows = await tx.rows(_ADD_MANY, params)
    assert len(rows) == len(units)  # one row each, in order, or the statement failed
    if any(unit.job is not None for unit in units):
        tx.signal(outbox_store.OUTBOX_DUE)
    for row in rows:
        if row["event_id"] is not None:
            tx.appended_event(row["event_id"])
    return [Added(r["id"], r["event_id"], r["waited_since"]) for r in rows]


# What a new message is written with (its columns), and what goes with it; one array each in
# ``_ADD_MANY``, an element per message (SQL types).
_MESSAGE_COLUMNS = {
    "chat_id": "BIGINT",
    "sender_id": "TEXT",
    "content": "TEXT",
    "created_at": "TIMESTAMPTZ",
    "edited_at": "TIMESTAMPTZ",
    "reply_to_id": "BIGINT",
    "source": "TEXT",
    "client_id": "TEXT",
    "pachca_message_id": "BIGINT",
    "pachca_changed_at": "TIMESTAMPTZ",
}
_ARRAYS = {
    **_MESSAGE_COLUMNS,
    "last_at": "TIMESTAMPTZ",
    "starts_wait": "BOOLEAN",
    "ends_wait": "BOOLEAN",
    "job_kind": "TEXT",  # null: no job
    "job_lane": "TEXT",
    "job_at": "TIMESTAMPTZ",
    "event_type": "TEXT",  # null: no event
    "event_head": "TEXT",
    "event_tail": "TEXT",
    "event_at": "TIMESTAMPTZ",
}
_COLUMN_LIST = ", ".join(_MESSAGE_COLUMNS)

# PostgreSQL only, written as SQL: what SQLite's ``add`` does one statement at a time, for every
# row of the arrays at once (data-modifying CTEs). Ids are taken from the sequences up front,
# so every part joins on them; the transaction takes its id (``own``) before the events take
# theirs, as store/events.py ``append`` needs. A wait ends as store/waiting.py ``end`` ends it:
# the row goes, unless reminders were sent.
_ADD_MANY = prepared(
    text(
        f"""
WITH input AS MATERIALIZED (
    SELECT u.*, nextval(pg_get_serial_sequence('messages', 'id')) AS id
    FROM unnest({", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _ARRAYS.items())})
        WITH ORDINALITY AS u({", ".join(_ARRAYS)}, n)
),
added AS (
    INSERT INTO messages (id, {_COLUMN_LIST})
    SELECT id, {_COLUMN_LIST} FROM input ORDER BY n
),
made_last AS (
    UPDATE chats SET last_message_id = input.id, last_activity_at = input.last_at
    FROM input WHERE chats.id = input.chat_id
),
waits AS (
    INSERT INTO waiting_chats (chat_id, since, first_message_id, reminders_sent)
    SELECT chat_id, created_at, id, 0 FROM input WHERE starts_wait
    ON CONFLICT (chat_id) DO UPDATE
        SET since = excluded.since, first_message_id = excluded.first_message_id,
            reminders_sent = 0
        WHERE waiting_chats.since IS NULL
),
ended AS MATERIALIZED (
    SELECT w.chat_id, w.since, w.last_reminded_at
    FROM waiting_chats w JOIN input ON input.chat_id = w.chat_id
    WHERE input.ends_wait AND w.since IS NOT NULL
    FOR UPDATE OF w
),
forgot AS (
    DELETE FROM waiting_chats w USING ended
    WHERE w.chat_id = ended.chat_id AND ended.last_reminded_at IS NULL
),
answered AS (
    UPDATE waiting_chats w SET since = NULL, first_message_id = NULL, reminders_sent = 0
    FROM ended WHERE w.chat_id = ended.chat_id AND ended.last_reminded_at IS NOT NULL
),
queued AS (
    INSERT INTO outbox (chat_id, lane, kind, payload, status, attempts, next_attempt_at,
                        created_at, updated_at)
    SELECT chat_id, job_lane, job_kind, json_build_object('message_id', id),
           '{outbox_store.PENDING}', 0, job_at, job_at, job_at
    FROM input WHERE job_kind IS NOT NULL ORDER BY n
),
own AS MATERIALIZED (
    SELECT CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT) AS xid
),
numbered AS MATERIALIZED (
    SELECT input.n, own.xid, nextval(pg_get_serial_sequence('events', 'id')) AS event_id
    FROM own CROSS JOIN input WHERE input.event_type IS NOT NULL
),
logged AS (
    INSERT INTO events (id, chat_id, type, payload, created_at, txid)
    SELECT numbered.event_id, input.chat_id, input.event_type,
           input.event_head || CAST(input.id AS TEXT) || input.event_tail, input.event_at,
           numbered.xid
    FROM numbered JOIN input ON input.n = numbered.n
    ORDER BY input.n
)
SELECT input.id, numbered.event_id, ended.since AS waited_since
FROM input LEFT JOIN numbered ON numbered.n = input.n
    LEFT JOIN ended ON ended.chat_id = input.chat_id
ORDER BY input.n
"""
    )
)
