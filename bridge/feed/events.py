"""Feed events: appended to the durable log inside a write, published after its commit."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from typing_extensions import TypedDict

from bridge.forum.views import ChatInEvent, MessageObj
from store import events as event_log
from store.tx import Tx

MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
MESSAGE_DELETED = "message.deleted"
CHAT_CREATED = "chat.created"
CHAT_UPDATED = "chat.updated"
CHAT_DELETED = "chat.deleted"
READ = "read"
REACTION_ADDED = "reaction.added"
REACTION_REMOVED = "reaction.removed"


class MessageEventFrame(TypedDict):
    type: Literal["message.created", "message.updated"]
    event_id: int
    chat_id: int
    message: MessageObj


class MessageDeletedFrame(TypedDict):
    type: Literal["message.deleted"]
    event_id: int
    chat_id: int
    message_id: int


class ChatEventFrame(TypedDict):
    type: Literal["chat.created", "chat.updated", "chat.deleted"]
    event_id: int
    chat_id: int
    chat: ChatInEvent


class ReadFrame(TypedDict):
    type: Literal["read"]
    event_id: int
    chat_id: int
    user_id: str
    message_id: int


class ReactionFrame(TypedDict):
    type: Literal["reaction.added", "reaction.removed"]
    event_id: int
    chat_id: int
    message_id: int
    user_id: str
    emoji: str


# An event as the feed and GET /api/v1/events carry it (docs/websocket.md).
EventFrame = MessageEventFrame | MessageDeletedFrame | ChatEventFrame | ReadFrame | ReactionFrame


@dataclass(frozen=True, slots=True)
class ChatMeta:
    """What a feed subscriber needs to re-decide visibility when a chat appears or changes."""

    type: str
    participants: frozenset[str]


@dataclass(frozen=True, slots=True)
class FeedEvent:
    id: int
    chat_id: int
    type: str
    # The complete JSON frame, serialised once for every recipient.
    frame: bytes
    # Explicit recipients (besides admins); None means whoever may see the chat.
    audience: frozenset[str] | None = None
    chat: ChatMeta | None = None


def event_from_log(
    row: Mapping[str, Any],
    chat: ChatMeta | None = None,
    audience: frozenset[str] | None = None,
) -> FeedEvent:
    """A stored event row (with its audience rows, if any) as the feed carries it."""
    return FeedEvent(
        row["id"],
        row["chat_id"],
        row["type"],
        frame_from_log(row["id"], row["payload"]),
        audience,
        chat,
    )


def frame_from_log(event_id: int, payload: str | bytes) -> bytes:
    """Splice the event id into a payload serialised without it (at write time, before the
    id was known), so nothing is serialised twice."""
    raw = payload.encode() if isinstance(payload, str) else payload
    return b'{"event_id":%d,%s' % (event_id, raw[1:])


def encode(type: str, chat_id: int, body: dict[str, Any]) -> bytes:
    """An event's payload: the frame without event_id (spliced in by frame_from_log)."""
    return orjson.dumps({"type": type, "chat_id": chat_id, **body})


def message_created(chat_id: int, message: MessageObj, now: datetime) -> event_log.AboutNewRow:
    """The ``message.created`` event of a message about to be written, for the statement that
    writes it (store/new_messages.py): serialised once, its id 0 (``message`` has
    ``id`` first), and split where the id goes, for that statement to splice the id in."""
    payload = encode(MESSAGE_CREATED, chat_id, {"message": message})
    head = b'{"type":"message.created","chat_id":%d,"message":{"id":' % chat_id
    if message["id"] != 0 or not payload.startswith(head + b"0,"):
        raise ValueError("a new message's event is serialised with id 0, first")
    return event_log.AboutNewRow(
        MESSAGE_CREATED, head.decode(), payload[len(head) + 1 :].decode(), now
    )


def appended(chat_id: int, about: event_log.AboutNewRow, row_id: int, event_id: int) -> FeedEvent:
    """The event ``about`` once its row was written (``row_id``) and it was appended."""
    frame = frame_from_log(event_id, about.payload(row_id))
    return FeedEvent(event_id, chat_id, about.type, frame)


class EventLog:
    """Appends events within a caller's transaction."""

    async def append(
        self,
        conn: Tx,
        type: str,
        chat_id: int,
        body: dict[str, Any],
        now: datetime,
        *,
        audience: Iterable[str] | None = None,
        chat: ChatMeta | None = None,
    ) -> FeedEvent:
        """Append one event, serialised once (store/events.py ``append``: on PostgreSQL
        readers take it once every transaction that came before it has ended)."""
        payload = encode(type, chat_id, body)
        audience_set = frozenset(audience) if audience is not None else None
        event_id = await event_log.append(
            conn,
            chat_id=chat_id,
            type=type,
            payload=payload.decode(),
            audience=audience_set,
            created_at=now,
        )
        return FeedEvent(
            event_id, chat_id, type, frame_from_log(event_id, payload), audience_set, chat
        )
