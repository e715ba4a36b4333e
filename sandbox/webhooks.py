"""Webhook bodies as Pachca sends them: what the sandbox emits, and what tests post to
`/webhooks/pachca`.

Shapes follow `components.schemas` of Pachca's OpenAPI spec (MessageWebhookPayload and the other
members of WebhookPayloadUnion); defaults are the spec's own example values. Every builder
returns a fresh dict, so a test may tweak it (drop a field, break a type) before signing.
`webhook_timestamp` defaults to now, as a live delivery would.

    raw, headers = signed(message_event(content="hi"), secret)
    await client.post("/webhooks/pachca", data=raw, headers=headers)

Signing is computed here, not borrowed from the bridge's verifier, so the two are checked
against each other rather than sharing a mistake.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Final, Literal

from sandbox.spec import schema_errors

SPEC_CREATED_AT: Final = "2025-05-15T14:30:00.000Z"
SPEC_FINISHED_AT: Final = "2025-05-15T14:45:00.000Z"
Timestamp = str | datetime


class _Default(Enum):
    # A sentinel distinct from None, for fields where None means "send null".
    DEFAULT = "default"


DEFAULT: Final = _Default.DEFAULT


def iso(value: Timestamp) -> str:
    """Pachca's timestamp format, YYYY-MM-DDThh:mm:ss.sssZ (UTC)."""
    if isinstance(value, str):
        return value
    utc = value.astimezone(UTC) if value.tzinfo else value
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _sent_at(webhook_timestamp: int | None) -> int:
    return int(time.time()) if webhook_timestamp is None else webhook_timestamp


def thread_ref(message_id: int = 12345, message_chat_id: int = 67890) -> dict[str, int]:
    """The `thread` object of a message webhook: the root message the thread hangs off."""
    return {"message_id": message_id, "message_chat_id": message_chat_id}


def message_event(
    event: Literal["new", "update", "delete"] = "new",
    *,
    id: int = 1245817,
    chat_id: int = 9012,
    entity_type: Literal["thread", "discussion", "user"] = "thread",
    entity_id: int = 5678,
    content: str = "Текст сообщения",
    user_id: int = 2345,
    parent_message_id: int | None = None,
    thread: Mapping[str, int] | _Default | None = DEFAULT,
    created_at: Timestamp = SPEC_CREATED_AT,
    changed_at: Timestamp | _Default | None = DEFAULT,
    url: str | None = None,
    webhook_timestamp: int | None = None,
) -> dict[str, Any]:
    """A `message` webhook (MessageWebhookPayload).

    In a thread, `entity_id` is the thread's id and `chat_id` the thread's own chat. `thread`
    defaults to `thread_ref()` for entity_type "thread" and to null otherwise, as Pachca fills
    it only for messages posted inside a thread. `changed_at` defaults to `created_at` (what
    Pachca sends for an unedited message); pass None for the null it sends for messages older
    than that field.
    """
    if thread is DEFAULT:
        thread = thread_ref() if entity_type == "thread" else None
    if changed_at is DEFAULT:
        changed_at = created_at
    return {
        "type": "message",
        "id": id,
        "event": event,
        "entity_type": entity_type,
        "entity_id": entity_id,
        "content": content,
        "user_id": user_id,
        "created_at": iso(created_at),
        "changed_at": None if changed_at is None else iso(changed_at),
        "url": url or f"https://pachca.com/chats/{chat_id}/messages/{id}",
        "chat_id": chat_id,
        "parent_message_id": parent_message_id,
        "thread": None if thread is None else dict(thread),
        "webhook_timestamp": _sent_at(webhook_timestamp),
    }


def reaction_event(
    event: Literal["new", "delete"] = "new",
    *,
    message_id: int = 1245817,
    chat_id: int | None = 9012,
    code: str = "👍",
    name: str = "thumbsup",
    user_id: int = 2345,
    created_at: Timestamp = SPEC_CREATED_AT,
    webhook_timestamp: int | None = None,
) -> dict[str, Any]:
    """A `reaction` webhook (ReactionWebhookPayload); chat_id may be null, per the spec."""
    return {
        "type": "reaction",
        "event": event,
        "chat_id": chat_id,
        "message_id": message_id,
        "code": code,
        "name": name,
        "user_id": user_id,
        "created_at": iso(created_at),
        "webhook_timestamp": _sent_at(webhook_timestamp),
    }


def button_event(
    *,
    message_id: int = 1245817,
    trigger_id: str | None = None,
    data: str = "button_data",
    user_id: int = 2345,
    chat_id: int = 9012,
    webhook_timestamp: int | None = None,
) -> dict[str, Any]:
    """A `button` click webhook (ButtonWebhookPayload); trigger_id is fresh unless given."""
    return {
        "type": "button",
        "event": "click",
        "message_id": message_id,
        "trigger_id": trigger_id or str(uuid.uuid4()),
        "data": data,
        "user_id": user_id,
        "chat_id": chat_id,
        "webhook_timestamp": _sent_at(webhook_timestamp),
    }


def view_submit_event(
    *,
    callback_id: str | None = "timeoff_request_form",
    private_metadata: str | None = '{"timeoff_id":4378}',
    chat_id: int | None = 9012,
    user_id: int = 1235523,
    data: Mapping[str, Any] | None = None,
    webhook_timestamp: int | None = None,
) -> dict[str, Any]:
    """A form submission webhook (ViewSubmitWebhookPayload)."""
    return {
        "type": "view",
        "event": "submit",
        "callback_id": callback_id,
        "private_metadata": private_metadata,
        "chat_id": chat_id,
        "user_id": user_id,
        "data": dict(data) if data is not None else {"reason": "Отпуск", "days": "5"},
        "webhook_timestamp": _sent_at(webhook_timestamp),
    }


def chat_member_event(
    event: Literal["add", "remove"] = "add",
    *,
    chat_id: int = 9012,
    thread_id: int | None = None,
    user_ids: Iterable[int] = (2345, 6789),
    created_at: Timestamp = SPEC_CREATED_AT,
    webhook_timestamp: int | None = None,
) -> dict[str, Any]:
    """A `chat_member` webhook (ChatMemberWebhookPayload); thread_id is set for a thread."""
    return {
        "type": "chat_member",
        "event": event,
        "chat_id": chat_id,
        "thread_id": thread_id,
        "user_ids": list(user_ids),
        "created_at": iso(created_at),
        "webhook_timestamp": _sent_at(webhook_timestamp),
    }


def company_member_event(
    event: Literal["invite", "confirm", "update", "suspend", "activate", "delete"] = "invite",
    *,
    user_ids: Iterable[int] = (2345, 6789),
    created_at: Timestamp = SPEC_CREATED_AT,
    webhook_timestamp: int | None = None,
) -> dict[str, Any]:
    """A `company_member` webhook (CompanyMemberWebhookPayload)."""
    return {
        "type": "company_member",
        "event": event,
        "user_ids": list(user_ids),
        "created_at": iso(created_at),
        "webhook_timestamp": _sent_at(webhook_timestamp),
    }


def link_shared_event(
    *,
    chat_id: int = 23438,
    message_id: int = 268092,
    links: Iterable[Mapping[str, Any]] | None = None,
    user_id: int = 2345,
    created_at: Timestamp = "2024-09-18T19:53:14.000Z",
    webhook_timestamp: int | None = None,
) -> dict[str, Any]:
    """A link-unfurl webhook (LinkSharedWebhookPayload): type "message", event "link_shared"."""
    if links is None:
        links = [{"url": "https://example.com/page1", "domain": "example.com", "skip": False}]
    return {
        "type": "message",
        "event": "link_shared",
        "chat_id": chat_id,
        "message_id": message_id,
        "links": [dict(link) for link in links],
        "user_id": user_id,
        "created_at": iso(created_at),
        "webhook_timestamp": _sent_at(webhook_timestamp),
    }


def video_call_event(
    event: Literal["started", "finished", "recording_ready"] = "started",
    *,
    video_room_id: int = 9012,
    chat_id: int = 23438,
    owner_id: int = 2345,
    thread: Mapping[str, int] | None = None,
    webhook_timestamp: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A `video_call` webhook (VideoCallWebhookPayload) with the fields the spec lists for
    `event`; `fields` overrides or adds any of them."""
    body: dict[str, Any] = {
        "type": "video_call",
        "event": event,
        "video_room_id": video_room_id,
        "chat_id": chat_id,
        "owner_id": owner_id,
        "thread": None if thread is None else dict(thread),
    }
    if event in ("started", "finished"):
        body["started_at"] = SPEC_CREATED_AT
    if event == "finished":
        body |= {
            "finished_at": SPEC_FINISHED_AT,
            "duration": 900,
            "members": [
                {"user_id": owner_id, "joined_at": SPEC_CREATED_AT, "left_at": SPEC_FINISHED_AT}
            ],
        }
    if event == "recording_ready":
        body |= {
            "recording_id": 4567,
            "file_id": 89012,
            "url": "https://api.pachca.com/files/89012",
            "size": 10485760,
            "duration": 900,
        }
    body |= fields
    body["webhook_timestamp"] = _sent_at(webhook_timestamp)
    return body


def encode(body: Mapping[str, Any]) -> bytes:
    """The raw bytes of a body: compact UTF-8 JSON, non-ASCII kept as is."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def signature(raw: bytes, secret: str) -> str:
    """`Pachca-Signature`: the hex HMAC-SHA256 of the raw body, keyed with the signing secret."""
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def signed(body: Mapping[str, Any], secret: str) -> tuple[bytes, dict[str, str]]:
    """Raw bytes of `body` and the headers Pachca sends with them, signed with `secret`."""
    raw = encode(body)
    return raw, {"Pachca-Signature": signature(raw, secret), "Content-Type": "application/json"}


# The spec's schema for each payload `type` (a link_shared event is a "message" too).
PAYLOAD_SCHEMAS: Final = {
    "message": "MessageWebhookPayload",
    "reaction": "ReactionWebhookPayload",
    "button": "ButtonWebhookPayload",
    "view": "ViewSubmitWebhookPayload",
    "chat_member": "ChatMemberWebhookPayload",
    "company_member": "CompanyMemberWebhookPayload",
    "video_call": "VideoCallWebhookPayload",
}


def payload_errors(payload: Mapping[str, Any]) -> list[str]:
    """Errors of a webhook body against the spec's schema for its `type` (the union alone
    would accept a body that happens to match another member); [] when valid."""
    kind = payload.get("type")
    if kind == "message" and payload.get("event") == "link_shared":
        return schema_errors("LinkSharedWebhookPayload", payload)
    if isinstance(kind, str) and kind in PAYLOAD_SCHEMAS:
        return schema_errors(PAYLOAD_SCHEMAS[kind], payload)
    return [f"type: {kind!r} is not a webhook type of the spec"]
