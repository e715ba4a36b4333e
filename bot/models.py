"""Pydantic v2 models of the Pachca API requests and responses the bridge uses.

Shapes follow Pachca's published OpenAPI spec (the copy in tests/fakes/pachca_openapi.yaml).
Response models ignore unknown fields and keep only what the bridge reads, so new server-side
fields never break parsing; the fields they do declare are required where the spec requires
them, so a malformed body is caught.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Request(BaseModel):
    # A typo in a request field must fail here, not be silently dropped by the server.
    model_config = ConfigDict(extra="forbid")


# --- requests -------------------------------------------------------------------------------


class MessageFileFields(_Request):
    """One of `MessageCreateRequest.message.files`: an uploaded file (its `key` from the
    direct upload) shown under `name`; `name`'s extension must match the key's."""

    key: str
    name: str
    file_type: str  # file | image
    size: int


class MessageCreateFields(_Request):
    """`MessageCreateRequest.message`: only entity_id and content are required by the spec."""

    entity_type: str | None = None  # spec default "discussion"
    entity_id: int
    content: str
    parent_message_id: int | None = None
    display_name: str | None = Field(default=None, max_length=255)
    display_avatar_url: str | None = Field(default=None, max_length=255)
    skip_invite_mentions: bool | None = None
    files: list[MessageFileFields] | None = None


class MessageCreateRequest(_Request):
    message: MessageCreateFields


class MessageUpdateFields(_Request):
    """`MessageUpdateRequest.message`: every field is optional in the spec."""

    content: str | None = None
    display_name: str | None = None
    display_avatar_url: str | None = None


class MessageUpdateRequest(_Request):
    message: MessageUpdateFields


class AddMembersRequest(_Request):
    member_ids: list[int]
    silent: bool | None = None


class ReactionRequest(_Request):
    code: str  # the emoji itself
    name: str | None = None  # the spec: a custom emoji's name


# --- responses ------------------------------------------------------------------------------


class UploadParams(_Response):
    """`UploadParams` of POST /uploads: the form fields to send back as received (every one,
    in the order received), and where to send them."""

    model_config = ConfigDict(extra="allow", frozen=True)

    direct_url: str
    key: str
    received: tuple[tuple[str, str], ...] = ()  # filled by `from_answer`

    @classmethod
    def from_answer(cls, raw: Any) -> UploadParams:
        params = cls.model_validate(raw)
        fields = tuple((str(k), str(v)) for k, v in raw.items() if k != "direct_url")
        return params.model_copy(update={"received": fields})

    def form_fields(self, filename: str) -> list[tuple[str, str]]:
        """The fields to send before the file: ``${filename}`` in ``key`` replaced by the
        file's name."""
        return [
            (name, value.replace("${filename}", filename) if name == "key" else value)
            for name, value in self.received
        ]


class DataEnvelope(_Response, Generic[T]):
    """Every successful Pachca response wraps its object as `{"data": ...}`."""

    data: T


class PachcaFile(_Response):
    id: int
    key: str
    name: str
    file_type: str
    url: str
    width: int | None = None
    height: int | None = None


class MessageThreadRef(_Response):
    """`Message.thread`: the thread created on this message (not the thread it lives in)."""

    id: int
    chat_id: int


class PachcaMessage(_Response):
    id: int
    # str, not an enum: a new entity type on the server must not break parsing of every message.
    entity_type: str
    entity_id: int
    chat_id: int
    root_chat_id: int | None = None
    content: str
    user_id: int
    created_at: datetime
    url: str | None = None
    files: list[PachcaFile] = Field(default_factory=list)
    thread: MessageThreadRef | None = None
    parent_message_id: int | None = None
    display_name: str | None = None
    display_avatar_url: str | None = None
    changed_at: datetime | None = None
    deleted_at: datetime | None = None


class PachcaThread(_Response):
    id: int
    chat_id: int
    message_id: int | None  # null for a standalone thread (POST /threads)
    message_chat_id: int | None
    updated_at: datetime


class WebhookEventRecord(_Response):
    """One entry of GET /webhooks/events (`WebhookEvent`)."""

    id: str  # a ULID-like string, not an int
    event_type: str  # e.g. "message_new"
    # Kept raw: it is the exact body a live webhook would have carried, so the bridge feeds it to
    # the same parser it uses for webhooks instead of a second model of the same payloads.
    payload: dict[str, Any]
    created_at: datetime


class Paginate(_Response):
    next_page: str | None = None  # required by the spec, tolerated missing on the last page
    prev_page: str | None = None
    has_next: bool | None = None
    has_prev: bool | None = None


class PaginationMeta(_Response):
    paginate: Paginate


class WebhookEventsResponse(_Response):
    data: list[WebhookEventRecord]
    meta: PaginationMeta


class WebhookEventPage(list[WebhookEventRecord]):
    """A page of webhook history: a plain list of records plus the cursor of the next page.

    A list subclass so callers that only poll-handle-delete can treat it as a list.
    """

    def __init__(
        self, events: list[WebhookEventRecord], *, next_cursor: str | None, has_next: bool
    ) -> None:
        super().__init__(events)
        self.next_cursor = next_cursor
        self.has_next = has_next
