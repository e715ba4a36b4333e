"""Webhook bodies as Pachca sends them, for tests that post to `/webhooks/pachca`: the
sandbox's builders (`sandbox/webhooks.py`, which the sandbox itself emits with), re-exported
under the names the tests use.

    raw, headers = signed(message_event(content="hi"), secret)
    await client.post("/webhooks/pachca", data=raw, headers=headers)
"""

from sandbox.webhooks import (
    DEFAULT,
    PAYLOAD_SCHEMAS,
    SPEC_CREATED_AT,
    SPEC_FINISHED_AT,
    Timestamp,
    button_event,
    chat_member_event,
    company_member_event,
    encode,
    iso,
    link_shared_event,
    message_event,
    payload_errors,
    reaction_event,
    signature,
    signed,
    thread_ref,
    video_call_event,
    view_submit_event,
)

__all__ = [
    "DEFAULT",
    "PAYLOAD_SCHEMAS",
    "SPEC_CREATED_AT",
    "SPEC_FINISHED_AT",
    "Timestamp",
    "button_event",
    "chat_member_event",
    "company_member_event",
    "encode",
    "iso",
    "link_shared_event",
    "message_event",
    "payload_errors",
    "reaction_event",
    "signature",
    "signed",
    "thread_ref",
    "video_call_event",
    "view_submit_event",
]
