"""Files' metadata (the bytes are in the blob store, store/blobs.py).

Message objects carry their files through ``files_column``: one correlated subquery column
that the message statements add, like reactions, so listing messages stays one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    and_,
    bindparam,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)

from store.models import Chat, StoredFile
from store.tx import Row, Tx, prepared

files = StoredFile.__table__
chats = Chat.__table__

# What a file object shows, in this order in ``files_column``'s items.
SHOWN = ("id", "name", "size", "content_type", "position")


def files_column(dialect: str, message_id: ColumnElement[Any], name: str) -> Any:
    """A column ``name`` holding the live files of the message ``message_id`` names, as a
    JSON list of ``[id, name, size, content_type, position]`` (``[]`` without any; order them
    by position: SQLite before 3.44 cannot order inside an aggregate)."""
    columns = [files.c[c] for c in SHOWN]
    if dialect == "postgresql":
        aggregate = func.coalesce(
            func.json_agg(func.json_build_array(*columns)),
            literal_column("'[]'::json"),
            type_=JSON,
        )
    else:
        aggregate = func.json_group_array(func.json_array(*columns), type_=JSON)
    return (
        select(aggregate)
        .where(files.c.message_id == message_id, files.c.deleted_at.is_(None))
        .scalar_subquery()
        .label(name)
    )


_INSERT = prepared(files.insert())
_GET = prepared(
    select(files, exists().where(chats.c.id == files.c.chat_id).label("chat_exists")).where(
        files.c.id == bindparam("file_id")
    )
)
_ATTACH = prepared(
    update(files)
    .where(
        files.c.id == bindparam("file_id"),
        files.c.uploader_id == bindparam("of_uploader"),
        files.c.chat_id == bindparam("of_chat"),
        files.c.message_id.is_(None),
        files.c.deleted_at.is_(None),
    )
    .values(message_id=bindparam("to_message"), position=bindparam("at"))
    .returning(*[files.c[c] for c in SHOWN])
)
_OF_MESSAGE = prepared(
    select(files)
    .where(files.c.message_id == bindparam("message_id"), files.c.deleted_at.is_(None))
    .order_by(files.c.position)
)
_DELETE_OF_MESSAGE = prepared(
    update(files)
    .where(files.c.message_id == bindparam("of_message"), files.c.deleted_at.is_(None))
    .values(deleted_at=bindparam("now"))
    .returning(files.c.storage_key)
)
_SET_PACHCA_KEY = prepared(
    update(files).where(files.c.id == bindparam("file_id")).values(pachca_key=bindparam("key"))
)
_BY_PACHCA_FILE = prepared(
    select(files).where(files.c.pachca_file_id == bindparam("pachca_file_id"))
)
_SWEEPABLE = prepared(
    select(files.c.id, files.c.storage_key)
    .where(
        or_(
            files.c.deleted_at.is_not(None),
            and_(files.c.message_id.is_(None), files.c.created_at < bindparam("unattached")),
            ~exists().where(chats.c.id == files.c.chat_id),
        )
    )
    .order_by(files.c.created_at)
    .limit(bindparam("limit"))
)
_DELETE_ROWS = prepared(delete(files).where(files.c.id.in_(bindparam("ids", expanding=True))))


async def insert_file(tx: Tx, values: dict[str, Any]) -> None:
    await tx.run(_INSERT, values)


async def get_file(tx: Tx, file_id: str) -> Row | None:
    """The file, deleted or not, and whether its chat still exists (``chat_exists``)."""
    return await tx.first(_GET, {"file_id": file_id})


async def attach(
    tx: Tx, file_ids: Sequence[str], *, uploader_id: str, chat_id: int, message_id: int
) -> list[Row] | None:
    """Attach files to a message, in the order given: each must be the uploader's, in the
    chat, live and on no message yet. Their rows (SHOWN columns), or None when one is not -
    the caller's transaction must then fail, so that nothing is written."""
    attached: list[Row] = []
    for at, file_id in enumerate(file_ids):
        row = await tx.first(
            _ATTACH,
            {
                "file_id": file_id,
                "of_uploader": uploader_id,
                "of_chat": chat_id,
                "to_message": message_id,
                "at": at,
            },
        )
        if row is None:
            return None
        attached.append(row)
    return attached


async def of_message(tx: Tx, message_id: int) -> list[Row]:
    """A message's live files, in their order."""
    return await tx.rows(_OF_MESSAGE, {"message_id": message_id})


async def delete_of_message(tx: Tx, message_id: int, now: datetime) -> list[str]:
    """Mark a message's files deleted (their links answer 404 from now); their storage keys,
    for removing the bytes after commit. The sweeper removes what that misses."""
    rows = await tx.rows(_DELETE_OF_MESSAGE, {"of_message": message_id, "now": now})
    return [r["storage_key"] for r in rows]


async def set_pachca_key(tx: Tx, file_id: str, key: str) -> None:
    await tx.run(_SET_PACHCA_KEY, {"file_id": file_id, "key": key})


async def by_pachca_file(tx: Tx, pachca_file_id: int) -> Row | None:
    return await tx.first(_BY_PACHCA_FILE, {"pachca_file_id": pachca_file_id})


async def sweepable(tx: Tx, *, unattached_before: datetime, limit: int) -> list[Row]:
    """Files to remove: deleted ones, ones never attached since before ``unattached_before``,
    and ones whose chat is gone."""
    return await tx.rows(_SWEEPABLE, {"unattached": unattached_before, "limit": limit})


async def delete_rows(tx: Tx, file_ids: Sequence[str]) -> None:
    if file_ids:
        await tx.run(_DELETE_ROWS, {"ids": list(file_ids)})
