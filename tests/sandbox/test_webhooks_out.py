"""Webhooks from the sandbox, as Pachca sends them: every event of a message, reaction or chat
member, signed over the raw body (checked here with the bridge's own verifier), retried until
answered 2xx, and kept in the webhook history with "save event history" on."""

from __future__ import annotations

import json
import time

import httpx

from bot.signature import WebhookVerifier
from sandbox.pachca import PachcaSandbox
from sandbox.webhooks import payload_errors
from tests.eventually import eventually
from tests.sandbox.conftest import BOT, SECRET, TEACHER, TUTOR, Receiver, open_thread, relay


def bodies(receiver: Receiver) -> list[dict]:
    return [json.loads(r.raw) for r in receiver.received]


async def test_every_event_reaches_the_url_signed(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient, receiver: Receiver
) -> None:
    sandbox.save_history = True
    thread = await open_thread(raw, TEACHER)  # chat_member add (and the bot's root message)
    question = await relay(raw, thread, "Question", "Sam")
    reply = sandbox.post_as_user(
        TEACHER, entity_type="thread", entity_id=thread["id"], content="Answer"
    )
    sandbox.edit_as_user(TEACHER, reply["id"], "Answer, edited")
    sandbox.react_as_user(TEACHER, question, "👍")
    sandbox.unreact_as_user(TEACHER, question, "👍")
    sandbox.delete_as_user(TEACHER, reply["id"])
    sandbox.remove_member(thread["chat_id"], TEACHER)

    await sandbox.deliveries_done()
    expected = [
        ("message", "new", BOT),  # the root message in the channel
        ("chat_member", "add", None),
        ("message", "new", BOT),  # the relayed question: the bot's own message
        ("message", "new", TEACHER),
        ("message", "update", TEACHER),
        ("reaction", "new", TEACHER),
        ("reaction", "delete", TEACHER),
        ("message", "delete", TEACHER),
        ("chat_member", "remove", None),
    ]
    got = bodies(receiver)
    assert [(b["type"], b["event"], b.get("user_id")) for b in got] == expected
    verifier = WebhookVerifier([SECRET], tolerance_s=60)
    for received, body in zip(receiver.received, got, strict=True):
        verifier.verify_signature(received.raw, received.headers["Pachca-Signature"])
        verifier.verify_timestamp(body["webhook_timestamp"])
        assert received.headers["Content-Type"] == "application/json"
        assert payload_errors(body) == []
    teacher_reply = got[3]
    assert teacher_reply["thread"] == {
        "message_id": thread["message_id"],
        "message_chat_id": thread["message_chat_id"],
    }
    assert (teacher_reply["chat_id"], teacher_reply["entity_id"]) == (
        thread["chat_id"],
        thread["id"],
    )
    assert all(d.delivered and d.attempts == 1 for d in sandbox.deliveries)
    # "Save event history": the same events, readable with GET /webhooks/events.
    history = (await raw.get("/webhooks/events")).json()["data"]
    assert [e["event_type"] for e in history] == [f"{t}_{e}" for t, e, _ in expected]
    assert [e["payload"]["type"] for e in history] == [b["type"] for b in got]


async def test_no_2xx_is_retried_each_attempt_signed(
    sandbox: PachcaSandbox, receiver: Receiver
) -> None:
    receiver.statuses = [503, 500]

    sandbox.add_members(100, [TEACHER])
    sandbox.add_members(100, [TUTOR])
    await sandbox.deliveries_done()

    first, second = sandbox.deliveries
    assert (first.attempts, first.status, first.delivered) == (3, 200, True)
    assert (second.attempts, second.delivered) == (1, True)
    # In order: the second event waited for the first one's retries.
    assert [b["user_ids"] for b in bodies(receiver)] == [[TEACHER]] * 3 + [[TUTOR]]
    verifier = WebhookVerifier([SECRET], tolerance_s=60)
    for received in receiver.received:
        verifier.verify_signature(received.raw, received.headers["Pachca-Signature"])
    assert [r.raw for r in receiver.received[:3]] == first.bodies


async def test_a_delivery_is_given_up_after_its_attempts(
    sandbox: PachcaSandbox, receiver: Receiver
) -> None:
    receiver.statuses = [500] * 10
    sandbox.sender.attempts = 3

    sandbox.add_members(100, [TEACHER])
    await sandbox.deliveries_done()

    [delivery] = sandbox.deliveries
    assert (delivery.attempts, delivery.delivered, delivery.status) == (3, False, 500)
    assert len(receiver.received) == 3


async def test_ignore_own_messages_drops_the_bots_events(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient, receiver: Receiver
) -> None:
    sandbox.ignore_own_messages = True
    sandbox.save_history = True
    thread = await open_thread(raw)
    await relay(raw, thread, "Question", "Sam")
    sandbox.post_as_user(TEACHER, entity_type="thread", entity_id=thread["id"], content="Answer")

    await sandbox.deliveries_done()

    assert [(b["type"], b["user_id"]) for b in bodies(receiver)] == [("message", TEACHER)]
    assert len(sandbox.webhook_events) == 1


async def test_without_a_url_or_history_nothing_is_sent_or_kept(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    thread = await open_thread(raw, TEACHER)
    sandbox.post_as_user(TEACHER, entity_type="thread", entity_id=thread["id"], content="x")

    assert sandbox.deliveries == []
    assert sandbox.webhook_events == []
    assert [p["type"] for p in sandbox.emitted] == ["message", "chat_member", "message"]


async def test_a_slow_receiver_is_timed_out_and_retried(
    sandbox: PachcaSandbox, receiver: Receiver
) -> None:
    receiver.delays = [1.0]
    sandbox.sender.timeout_s = 0.2

    sandbox.add_members(100, [TEACHER])
    await sandbox.deliveries_done()

    [delivery] = sandbox.deliveries
    assert (delivery.attempts, delivery.delivered) == (2, True)
    assert len(receiver.received) == 2


async def test_an_unknown_url_is_not_a_delivery(sandbox: PachcaSandbox, receiver: Receiver) -> None:
    sandbox.webhook_url = receiver.url.replace("/webhooks/pachca", "/nowhere")
    sandbox.sender.attempts = 2

    sandbox.add_members(100, [TEACHER])
    await sandbox.deliveries_done()

    [delivery] = sandbox.deliveries
    assert (delivery.status, delivery.delivered, delivery.attempts) == (404, False, 2)


async def test_the_timestamp_is_the_moment_of_sending(
    sandbox: PachcaSandbox, receiver: Receiver
) -> None:
    before = int(time.time())
    sandbox.add_members(100, [TEACHER])

    await eventually(lambda: receiver.received, what="a delivery")

    [body] = bodies(receiver)
    assert before <= body["webhook_timestamp"] <= int(time.time())
