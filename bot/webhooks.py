"""Pachca's outgoing webhook bodies as pydantic models, and their idempotency keys.

Every model mirrors one member of `WebhookPayloadUnion` in Pachca's OpenAPI spec
(`components.schemas`): field names, enums, required and nullable fields as written there.
Unknown extra fields are ignored, so a field Pachca adds later never breaks parsing.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Tag,
    TypeAdapter,
    ValidationError,
)

MAX_KEY_LEN = 200


def _assume_utc(value: datetime) -> datetime:
    # Pachca sends "...Z"; a value without an offset is read as UTC rather than rejected, so a
    # formatting change on their side cannot silently drop events.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


UtcDatetime = Annotated[datetime, AfterValidator(_assume_utc)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Payload(_Model):
    webhook_timestamp: int  # UNIX seconds when Pachca sent the webhook (not when it happened)


# --- message ---------------------------------------------------------------------------------

MessageEvent = Literal["new", "update", "delete"]
MessageEntityType = Literal["discussion", "thread", "user"]


class WebhookMessageThread(_Model):
    """The thread a message was posted in (not a thread hanging off the message)."""

    message_id: int  # the root message the thread was opened on
    message_chat_id: int  # the chat of that root message


class MessageWebhookPayload(_Payload):
    type: Literal["message"]
    event: MessageEvent
    id: int
    entity_type: MessageEntityType
    entity_id: int
    chat_id: int
    content: str  # "" for a file-only message: attachments are not in the webhook
    user_id: int
    created_at: UtcDatetime
    # Optional and nullable: equals created_at on an unedited message, null on old messages.
    changed_at: UtcDatetime | None = None
    url: str
    parent_message_id: int | None = None  # the message this one replies to
    thread: WebhookMessageThread | None = None  # null when not posted inside a thread


class WebhookLink(_Model):
    url: str
    domain: str
    skip: bool  # the author hid the preview: the bot must not unfurl it


class LinkSharedWebhookPayload(_Payload):
    # Shares type "message" with MessageWebhookPayload; only the event tells them apart.
    type: Literal["message"]
    event: Literal["link_shared"]
    chat_id: int
    message_id: int
    links: list[WebhookLink]
    user_id: int
    created_at: UtcDatetime


# --- reactions, buttons, forms ---------------------------------------------------------------


class ReactionWebhookPayload(_Payload):
    type: Literal["reaction"]
    event: Literal["new", "delete"]
    chat_id: int | None  # always present, null when the message was deleted meanwhile
    message_id: int
    code: str  # the emoji itself
    name: str
    user_id: int
    created_at: UtcDatetime  # when the reaction was added, also on "delete"


class ButtonWebhookPayload(_Payload):
    type: Literal["button"]
    event: Literal["click"]
    message_id: int
    trigger_id: str  # unique per click, valid for 3 seconds
    data: str
    user_id: int
    chat_id: int


class ViewSubmitWebhookPayload(_Payload):
    type: Literal["view"]
    event: Literal["submit"]
    callback_id: str | None
    private_metadata: str | None
    chat_id: int | None
    user_id: int
    data: dict[str, Any]  # block name -> entered value


# --- membership ------------------------------------------------------------------------------


class ChatMemberWebhookPayload(_Payload):
    type: Literal["chat_member"]
    event: Literal["add", "remove"]
    chat_id: int
    thread_id: int | None = None  # null when the chat is not a thread
    user_ids: list[int]
    created_at: UtcDatetime


class CompanyMemberWebhookPayload(_Payload):
    type: Literal["company_member"]
    event: Literal["invite", "confirm", "update", "suspend", "activate", "delete"]
    user_ids: list[int]
    created_at: UtcDatetime


# --- video calls -----------------------------------------------------------------------------


class WebhookVideoCallThread(_Model):
    id: int
    chat_id: int
    message_id: int
    message_chat_id: int


class WebhookVideoCallMember(_Model):
    user_id: int
    joined_at: UtcDatetime
    left_at: UtcDatetime


class VideoCallWebhookPayload(_Payload):
    type: Literal["video_call"]
    event: Literal["started", "finished", "recording_ready"]
    video_room_id: int
    chat_id: int
    owner_id: int
    thread: WebhookVideoCallThread | None = None
    # The rest depends on the event (see the spec): started/finished times, members on
    # "finished", the recording's fields on "recording_ready".
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    duration: int | None = None
    members: list[WebhookVideoCallMember] | None = None
    recording_id: int | None = None
    file_id: int | None = None
    url: str | None = None
    size: int | None = None


# --- dispatch --------------------------------------------------------------------------------


class UnknownPayload(BaseModel):
    """A webhook of a type or event this code does not know yet: kept, not fatal."""

    model_config = ConfigDict(frozen=True)

    type: str
    event: str | None
    raw: dict[str, Any]


class InvalidPayload(ValueError):
    """A webhook of a known type whose fields do not match the spec.

    The message names the offending fields but never echoes their values, since bodies carry
    message text that has no place in logs.
    """

    def __init__(self, message: str, *, type: str | None = None, event: str | None = None):
        super().__init__(message)
        self.type = type
        self.event = event


def _tag(value: Any) -> str | None:
    if isinstance(value, dict):
        type_, event = value.get("type"), value.get("event")
    else:
        type_, event = getattr(value, "type", None), getattr(value, "event", None)
    if type_ == "message" and event == "link_shared":
        return "link_shared"
    return type_ if isinstance(type_, str) else None


WebhookPayload = Annotated[
    Annotated[MessageWebhookPayload, Tag("message")]
    | Annotated[LinkSharedWebhookPayload, Tag("link_shared")]
    | Annotated[ReactionWebhookPayload, Tag("reaction")]
    | Annotated[ButtonWebhookPayload, Tag("button")]
    | Annotated[ViewSubmitWebhookPayload, Tag("view")]
    | Annotated[ChatMemberWebhookPayload, Tag("chat_member")]
    | Annotated[CompanyMemberWebhookPayload, Tag("company_member")]
    | Annotated[VideoCallWebhookPayload, Tag("video_call")],
    Discriminator(_tag),
]
PAYLOAD_MODELS: tuple[type[_Payload], ...] = (
    MessageWebhookPayload,
    LinkSharedWebhookPayload,
    ReactionWebhookPayload,
    ButtonWebhookPayload,
    ViewSubmitWebhookPayload,
    ChatMemberWebhookPayload,
    CompanyMemberWebhookPayload,
    VideoCallWebhookPayload,
)

_ADAPTER: TypeAdapter[WebhookPayload] = TypeAdapter(WebhookPayload)
# Every (type, event) pair the models accept, read off their Literal annotations so the two
# cannot drift apart.
_KNOWN_EVENTS: frozenset[tuple[str, str]] = frozenset(
    (type_, event)
    for model in PAYLOAD_MODELS
    for type_ in get_args(model.model_fields["type"].annotation)
    for event in get_args(model.model_fields["event"].annotation)
)
_KNOWN_TYPES = frozenset(type_ for type_, _ in _KNOWN_EVENTS)
_MAX_REPORTED_ERRORS = 5


def parse_webhook(data: dict[str, Any]) -> WebhookPayload | UnknownPayload:
    """Validate an already-decoded webhook body into its model.

    An unknown type, or an event Pachca added to a known type, gives UnknownPayload so the
    caller can acknowledge and skip it. A known event with bad fields raises InvalidPayload.
    """
    if not isinstance(data, dict):
        raise InvalidPayload(f"webhook body must be a JSON object, not {type(data).__name__}")
    type_, event = data.get("type"), data.get("event")
    if not isinstance(type_, str):
        raise InvalidPayload("webhook body has no string 'type'")
    if not isinstance(event, str):
        if type_ in _KNOWN_TYPES:
            raise InvalidPayload(f"{type_} webhook has no string 'event'", type=type_)
        return UnknownPayload(type=type_, event=None, raw=data)
    if (type_, event) not in _KNOWN_EVENTS:
        return UnknownPayload(type=type_, event=event, raw=data)
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise InvalidPayload(_describe(type_, event, exc), type=type_, event=event) from None


def _describe(type_: str, event: str, exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    # The first loc item is the union tag; the rest is the field path.
    parts = [
        f"{'.'.join(str(p) for p in err['loc'][1:]) or '<body>'}: {err['msg']}"
        for err in errors[:_MAX_REPORTED_ERRORS]
    ]
    if len(errors) > _MAX_REPORTED_ERRORS:
        parts.append(f"(+{len(errors) - _MAX_REPORTED_ERRORS} more)")
    return f"invalid {type_}/{event} webhook: " + "; ".join(parts)


# --- idempotency -----------------------------------------------------------------------------


def delivery_key(payload: WebhookPayload | UnknownPayload) -> str:
    """A key naming one Pachca event: equal for redeliveries, different for distinct events.

    `webhook_timestamp` is never part of it: it is the send time, so it changes on redelivery.
    """
    match payload:
        case MessageWebhookPayload():
            version = payload.changed_at or payload.created_at
            key = f"message:{payload.event}:{payload.id}:{_ts(version)}"
            if payload.event == "update" and payload.changed_at is None:
                # Old messages have no changed_at; the new text then tells edits apart.
                key += ":" + _digest(payload.content)
        case LinkSharedWebhookPayload():
            key = f"message:link_shared:{payload.message_id}:{_ts(payload.created_at)}"
        case ReactionWebhookPayload():
            key = (
                f"reaction:{payload.event}:{payload.message_id}:{payload.user_id}:"
                f"{payload.code}:{_ts(payload.created_at)}"
            )
        case ButtonWebhookPayload():
            key = f"button:click:{payload.trigger_id}"
        case ViewSubmitWebhookPayload():
            # The spec gives a form submission no id of its own: identical submissions by the
            # same user of the same form collapse into one.
            body = payload.model_dump(mode="json", exclude={"webhook_timestamp"})
            key = f"view:submit:{payload.user_id}:{_digest(_canonical(body))}"
        case ChatMemberWebhookPayload():
            key = (
                f"chat_member:{payload.event}:{payload.chat_id}:{_opt(payload.thread_id)}:"
                f"{_ids(payload.user_ids)}:{_ts(payload.created_at)}"
            )
        case CompanyMemberWebhookPayload():
            key = (
                f"company_member:{payload.event}:{_ids(payload.user_ids)}:{_ts(payload.created_at)}"
            )
        case VideoCallWebhookPayload():
            key = (
                f"video_call:{payload.event}:{payload.video_room_id}:"
                f"{_opt(payload.recording_id)}:{_opt(payload.started_at)}"
            )
        case UnknownPayload():
            rest = {k: v for k, v in payload.raw.items() if k != "webhook_timestamp"}
            key = f"{payload.type}:{payload.event or ''}:{_digest(_canonical(rest))}"
        case _:
            raise TypeError(f"not a webhook payload: {type(payload).__name__}")
    return _bounded(key)


def _ts(value: datetime) -> str:
    return value.isoformat()


def _opt(value: object) -> str:
    if isinstance(value, datetime):
        return _ts(value)
    return "" if value is None else str(value)


def _ids(user_ids: list[int]) -> str:
    return ",".join(str(i) for i in sorted(user_ids))


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _bounded(key: str) -> str:
    # Long keys (many user ids, an odd unknown type) keep a readable prefix and a full hash, so
    # they still fit the store's column and stay unique.
    if len(key) <= MAX_KEY_LEN:
        return key
    return f"{key[:64]}~{hashlib.sha256(key.encode('utf-8', 'surrogatepass')).hexdigest()}"
