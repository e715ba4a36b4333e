"""The API's JSON objects (docs/api.md), built from store rows.

Each object's shape is a TypedDict here, the builder's return type: the same declaration
gives the API description its schemas (handlers/openapi.py), so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

from pydantic import WithJsonSchema
from typing_extensions import TypedDict

from bridge.policy import Role
from store.forum import ChatRecord

if TYPE_CHECKING:
    from bridge.forum.file_links import FileLinks

# ISO 8601 in UTC with an offset, as datetime.isoformat() writes it.
IsoTime = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]
ChatTypeName = Literal["forum_subject", "forum_tutor"]


class UserObj(TypedDict):
    id: str
    role: Role
    name: str
    email: str | None
    pachca_user_id: int | None
    tutor_id: str | None
    children: list[str] | None


class PersonObj(TypedDict):
    id: str
    name: str
    role: Role


class SubjectObj(TypedDict):
    id: str
    name: str


class ReactionObj(TypedDict):
    emoji: str
    user_ids: list[str]


class FileObj(TypedDict):
    id: str
    name: str
    size: int
    content_type: str
    url: str  # a signed link of the service, relative; GET /api/v1/files/{id} gives a fresh one


class MessageObj(TypedDict):
    id: int
    chat_id: int
    sender: PersonObj
    content: str
    created_at: IsoTime
    edited_at: IsoTime | None
    reply_to_id: int | None
    source: Literal["web", "pachca"]
    read_by: list[str]
    reactions: list[ReactionObj]
    files: list[FileObj]
    client_id: str | None


class ChatInEvent(TypedDict):
    """A chat as feed events carry it: without ``unread_count``, which differs per reader."""

    id: int
    type: ChatTypeName
    title: str
    enrollment_id: str
    subject: SubjectObj
    is_active: bool
    participants: list[PersonObj]
    last_message: MessageObj | None


class ChatObj(ChatInEvent):
    unread_count: int


class EnrollmentObj(TypedDict):
    id: str
    student_id: str
    teacher_id: str
    subject: SubjectObj
    active: bool


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def user_obj(row: Mapping[str, Any]) -> UserObj:
    return {
        "id": row["id"],
        "role": row["role"],
        "name": row["name"],
        "email": row["email"],
        "pachca_user_id": row["pachca_user_id"],
        "tutor_id": row["tutor_id"],
        "children": row["children"],
    }


def person(user_id: str, name: str, role: str) -> PersonObj:
    return {"id": user_id, "name": name, "role": role}  # type: ignore[typeddict-item]


def read_by(message_id: int, sender_id: str, marks: Sequence[tuple[str, int]]) -> list[str]:
    """Users other than the author whose read mark reaches the message."""
    return [uid for uid, last in marks if uid != sender_id and last >= message_id]


def message_obj(
    row: Mapping[str, Any],
    marks: Sequence[tuple[str, int]] = (),
    prefix: str = "",
    *,
    links: FileLinks,
) -> MessageObj:
    """A message object - the one builder, for REST answers, feed events and relayed messages
    alike; ``prefix`` reads columns of a message joined under another name, ``links`` signs
    its files' download links."""

    def col(name: str) -> Any:
        return row[prefix + name]

    return {
        "id": col("id"),
        "chat_id": col("chat_id"),
        "sender": person(col("sender_id"), col("sender_name"), col("sender_role")),
        "content": col("content"),
        "created_at": iso(col("created_at")),
        "edited_at": iso(col("edited_at")),
        "reply_to_id": col("reply_to_id"),
        "source": col("source"),
        "read_by": read_by(col("id"), col("sender_id"), marks),
        "files": files(row.get(prefix + "files"), links),
        "reactions": reactions(col("reactions")),
        "client_id": col("client_id"),
    }


def reactions(made: Sequence[Sequence[Any]] | None) -> list[ReactionObj]:
    """A message's reactions as its object lists them: one entry per emoji, in the order
    first used, each with its holders in the order they reacted. ``made``: the store's
    ``[id, emoji, user_id]`` items (store/reactions.py), in any order."""
    groups: dict[str, list[str]] = {}
    for _id, emoji, user_id in sorted(made or (), key=lambda item: item[0]):
        groups.setdefault(emoji, []).append(user_id)
    return [{"emoji": emoji, "user_ids": holders} for emoji, holders in groups.items()]


def file_obj(row: Mapping[str, Any], links: FileLinks) -> FileObj:
    """A file object, with a freshly signed link."""
    return {
        "id": row["id"],
        "name": row["name"],
        "size": row["size"],
        "content_type": row["content_type"],
        "url": links.url(row["id"]),
    }


def files(items: Sequence[Any] | None, links: FileLinks) -> list[FileObj]:
    """A message's files in their order. ``items``: the store's ``[id, name, size,
    content_type, position]`` lists (store/files.py), or rows with those keys."""
    shown = ("id", "name", "size", "content_type", "position")
    rows = [
        item if isinstance(item, Mapping) else dict(zip(shown, item, strict=True))
        for item in items or ()
    ]
    return [file_obj(r, links) for r in sorted(rows, key=lambda r: r["position"])]


def chat_obj(record: ChatRecord, *, links: FileLinks, with_unread: bool = True) -> ChatInEvent:
    """A chat object (``ChatObj``), or without ``unread_count`` for feed events."""
    chat = record.chat
    marks = [(p["id"], p["last_read_message_id"]) for p in record.participants]
    obj: dict[str, Any] = {
        "id": chat["id"],
        "type": chat["type"],
        "title": chat["title"],
        "enrollment_id": chat["enrollment_id"],
        "subject": {"id": chat["subject_id"], "name": chat["subject_name"]},
        "is_active": chat["is_active"],
        "participants": [person(p["id"], p["name"], p["user_role"]) for p in record.participants],
        "last_message": (
            message_obj(record.last_message, marks, prefix="m_", links=links)
            if record.last_message is not None
            else None
        ),
    }
    if with_unread:
        obj["unread_count"] = record.unread_count
    return cast(ChatInEvent, obj)


def enrollment_obj(row: Mapping[str, Any]) -> EnrollmentObj:
    return {
        "id": row["id"],
        "student_id": row["student_id"],
        "teacher_id": row["teacher_id"],
        "subject": {"id": row["subject_id"], "name": row["subject_name"]},
        "active": row["active"],
    }
