import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.webhooks import (
    MAX_KEY_LEN,
    ButtonWebhookPayload,
    ChatMemberWebhookPayload,
    CompanyMemberWebhookPayload,
    InvalidPayload,
    LinkSharedWebhookPayload,
    MessageWebhookPayload,
    ReactionWebhookPayload,
    UnknownPayload,
    VideoCallWebhookPayload,
    ViewSubmitWebhookPayload,
    WebhookLink,
    WebhookMessageThread,
    WebhookVideoCallMember,
    WebhookVideoCallThread,
    delivery_key,
    parse_webhook,
)
from tests.fakes import webhooks as wh
from tests.fakes.pachca import load_spec, spec_errors

SPEC_TIME = datetime(2025, 5, 15, 14, 30, tzinfo=UTC)

# --- the fake's bodies (spec example values) parse to the right model -------------------------


def test_message_in_a_thread():
    body = wh.message_event(
        id=11, chat_id=22, entity_id=33, content="Ответ", user_id=44, webhook_timestamp=1
    )
    payload = parse_webhook(body)
    assert payload == MessageWebhookPayload(
        type="message",
        event="new",
        id=11,
        entity_type="thread",
        entity_id=33,
        chat_id=22,
        content="Ответ",
        user_id=44,
        created_at=SPEC_TIME,
        changed_at=SPEC_TIME,
        url="https://pachca.com/chats/22/messages/11",
        parent_message_id=None,
        thread=WebhookMessageThread(message_id=12345, message_chat_id=67890),
        webhook_timestamp=1,
    )


def test_direct_message_with_reply_and_legacy_null_changed_at():
    body = wh.message_event(
        "update", entity_type="user", parent_message_id=7, changed_at=None, content=""
    )
    payload = parse_webhook(body)
    assert isinstance(payload, MessageWebhookPayload)
    assert (payload.event, payload.entity_type, payload.thread) == ("update", "user", None)
    assert (payload.parent_message_id, payload.changed_at, payload.content) == (7, None, "")


def test_optional_message_fields_may_be_absent():
    body = wh.message_event(entity_type="discussion")
    for optional in ("changed_at", "parent_message_id", "thread"):
        del body[optional]
    payload = parse_webhook(body)
    assert isinstance(payload, MessageWebhookPayload)
    assert (payload.changed_at, payload.parent_message_id, payload.thread) == (None, None, None)


@pytest.mark.parametrize(
    ("body", "model", "expected"),
    [
        (wh.reaction_event("delete", chat_id=None), ReactionWebhookPayload, {"chat_id": None}),
        (wh.button_event(trigger_id="t-1"), ButtonWebhookPayload, {"trigger_id": "t-1"}),
        (wh.view_submit_event(callback_id=None), ViewSubmitWebhookPayload, {"callback_id": None}),
        (wh.chat_member_event(thread_id=5), ChatMemberWebhookPayload, {"thread_id": 5}),
        (wh.company_member_event("suspend"), CompanyMemberWebhookPayload, {"event": "suspend"}),
        (wh.link_shared_event(), LinkSharedWebhookPayload, {"event": "link_shared"}),
        (wh.video_call_event("finished"), VideoCallWebhookPayload, {"duration": 900}),
        (wh.video_call_event("recording_ready"), VideoCallWebhookPayload, {"file_id": 89012}),
    ],
)
def test_every_payload_type_parses_to_its_model(body, model, expected):
    payload = parse_webhook(body)
    assert type(payload) is model
    assert payload.type == body["type"]
    assert payload.event == body["event"]
    assert payload.webhook_timestamp == body["webhook_timestamp"]
    for field, value in expected.items():
        assert getattr(payload, field) == value


def test_link_shared_is_told_apart_from_a_message_by_its_event():
    payload = parse_webhook(wh.link_shared_event())
    assert isinstance(payload, LinkSharedWebhookPayload)
    assert payload.links[0].domain == "example.com"
    assert payload.links[0].skip is False


def test_video_call_members_and_thread():
    thread = {"id": 1, "chat_id": 2, "message_id": 3, "message_chat_id": 4}
    payload = parse_webhook(wh.video_call_event("finished", thread=thread))
    assert isinstance(payload, VideoCallWebhookPayload)
    assert payload.thread is not None and payload.thread.chat_id == 2
    assert payload.members is not None and payload.members[0].left_at.minute == 45


def test_unknown_extra_fields_are_ignored():
    body = wh.message_event() | {"brand_new_field": {"x": 1}}
    body["thread"]["also_new"] = True
    assert parse_webhook(body) == parse_webhook(
        wh.message_event(webhook_timestamp=body["webhook_timestamp"])
    )


def test_timestamps_are_timezone_aware_utc():
    naive = parse_webhook(wh.message_event(created_at="2025-05-15T14:30:00"))
    assert isinstance(naive, MessageWebhookPayload)
    assert naive.created_at == SPEC_TIME


def test_models_are_frozen():
    payload = parse_webhook(wh.message_event())
    with pytest.raises(ValueError):
        payload.content = "changed"  # type: ignore[misc]


# --- unknown and invalid bodies --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "type_", "event"),
    [
        ({"type": "poll", "event": "vote", "webhook_timestamp": 1}, "poll", "vote"),
        ({"type": "poll"}, "poll", None),
        # A new event of a known type is skipped like a new type, not treated as broken.
        (wh.message_event() | {"event": "pin"}, "message", "pin"),
        (wh.reaction_event() | {"event": "update"}, "reaction", "update"),
    ],
)
def test_unknown_type_or_event_gives_unknown_payload(body, type_, event):
    payload = parse_webhook(body)
    assert isinstance(payload, UnknownPayload)
    assert (payload.type, payload.event, payload.raw) == (type_, event, body)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"id": "not-a-number"}, "id"),
        ({"entity_type": "channel"}, "entity_type"),
        ({"content": None}, "content"),
        ({"chat_id": None}, "chat_id"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"thread": {"message_id": 1}}, "thread.message_chat_id"),
        ({"webhook_timestamp": None}, "webhook_timestamp"),
    ],
)
def test_known_type_with_invalid_field_raises_invalid_payload(change, field):
    body = wh.message_event(content="private text") | change
    with pytest.raises(InvalidPayload) as info:
        parse_webhook(body)
    message = str(info.value)
    assert message.startswith("invalid message/new webhook: ")
    assert f"{field}: " in message
    assert "private text" not in message  # bodies are not echoed into logs
    assert (info.value.type, info.value.event) == ("message", "new")


def test_missing_required_field_is_named():
    body = wh.reaction_event()
    del body["message_id"]
    with pytest.raises(InvalidPayload, match="message_id: Field required"):
        parse_webhook(body)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"event": "new"},
        {"type": 5, "event": "new"},
        {"type": "message"},
        {"type": "message", "event": ["new"]},
        ["not", "a", "dict"],
    ],
)
def test_bodies_without_type_or_event_are_invalid(body):
    with pytest.raises(InvalidPayload):
        parse_webhook(body)


# --- delivery keys ---------------------------------------------------------------------------


def test_message_redelivery_has_the_same_key():
    first = parse_webhook(wh.message_event(webhook_timestamp=100))
    again = parse_webhook(wh.message_event(webhook_timestamp=160))
    assert (
        delivery_key(first)
        == delivery_key(again)
        == ("message:new:1245817:2025-05-15T14:30:00+00:00")
    )


def test_each_message_event_has_its_own_key():
    keys = {
        delivery_key(parse_webhook(body))
        for body in (
            wh.message_event("new"),
            wh.message_event("update", changed_at="2025-05-15T14:35:00.000Z"),
            wh.message_event("update", changed_at="2025-05-15T14:36:00.000Z"),
            wh.message_event("delete", changed_at="2025-05-15T14:36:00.000Z"),
            wh.message_event("new", id=2),
        )
    }
    assert len(keys) == 5


def test_edits_of_a_message_without_changed_at_are_told_apart_by_text():
    def key(content: str, ts: int) -> str:
        return delivery_key(
            parse_webhook(
                wh.message_event("update", changed_at=None, content=content, webhook_timestamp=ts)
            )
        )

    assert key("v2", 1) == key("v2", 2)
    assert key("v2", 1) != key("v3", 1)


def test_reaction_keys():
    def key(**kw: Any) -> str:
        return delivery_key(parse_webhook(wh.reaction_event(**kw)))

    assert key(webhook_timestamp=1) == key(webhook_timestamp=2)
    assert key(event="new") != key(event="delete")
    assert key(code="👍") != key(code="🔥")
    assert key(user_id=1) != key(user_id=2)
    assert key() != key(created_at="2025-05-15T15:00:00.000Z")
    assert key(chat_id=None) == key()  # chat_id only goes null when the message is gone


def test_button_key_is_the_trigger_id():
    def key(**kw: Any) -> str:
        return delivery_key(parse_webhook(wh.button_event(**kw)))

    assert key(trigger_id="abc", webhook_timestamp=1) == key(trigger_id="abc", webhook_timestamp=9)
    assert key() != key()  # every click gets a fresh trigger_id
    assert key(trigger_id="abc") == "button:click:abc"


def test_view_submit_key_covers_the_submission():
    def key(**kw: Any) -> str:
        return delivery_key(parse_webhook(wh.view_submit_event(**kw)))

    assert key(webhook_timestamp=1) == key(webhook_timestamp=2)
    assert key(data={"a": 1, "b": 2}) == key(data={"b": 2, "a": 1})
    assert key(data={"a": 1}) != key(data={"a": 2})
    assert key(user_id=1) != key(user_id=2)
    assert key(private_metadata="x") != key(private_metadata="y")


def test_member_keys():
    def chat(**kw: Any) -> str:
        return delivery_key(parse_webhook(wh.chat_member_event(**kw)))

    def company(**kw: Any) -> str:
        return delivery_key(parse_webhook(wh.company_member_event(**kw)))

    assert chat(user_ids=[1, 2], webhook_timestamp=1) == chat(user_ids=[2, 1], webhook_timestamp=5)
    assert chat(event="add") != chat(event="remove")
    assert chat(thread_id=None) != chat(thread_id=5)
    assert chat(user_ids=[1]) != chat(user_ids=[2])
    assert company(event="invite") != company(event="confirm")
    assert company(webhook_timestamp=1) == company(webhook_timestamp=2)


def test_video_call_keys():
    def key(event: str, **kw: Any) -> str:
        return delivery_key(parse_webhook(wh.video_call_event(event, **kw)))

    assert len({key("started"), key("finished"), key("recording_ready")}) == 3
    assert key("recording_ready", recording_id=1) != key("recording_ready", recording_id=2)
    assert key("started", webhook_timestamp=1) == key("started", webhook_timestamp=2)


def test_link_shared_key_differs_from_the_message_key():
    link = delivery_key(parse_webhook(wh.link_shared_event(message_id=5)))
    message = delivery_key(parse_webhook(wh.message_event(id=5)))
    assert link.startswith("message:link_shared:5:")
    assert link != message


def test_unknown_payload_key_ignores_only_the_send_time():
    def key(**kw: Any) -> str:
        return delivery_key(parse_webhook({"type": "poll", "event": "vote"} | kw))

    assert key(id=1, webhook_timestamp=1) == key(id=1, webhook_timestamp=2)
    assert key(id=1) != key(id=2)
    assert key(id=1).startswith("poll:vote:")


def test_long_keys_are_hashed_to_fit_and_stay_distinct():
    many = [parse_webhook(wh.chat_member_event(user_ids=range(n, n + 100))) for n in (0, 1)]
    keys = [delivery_key(p) for p in many]
    assert all(len(k) <= MAX_KEY_LEN for k in keys)
    assert keys[0] != keys[1]
    assert keys[0].startswith("chat_member:add:9012:")
    assert delivery_key(many[0]) == keys[0]


def test_delivery_key_rejects_non_payloads():
    with pytest.raises(TypeError):
        delivery_key({"type": "message"})  # type: ignore[arg-type]


# --- the models against Pachca's spec --------------------------------------------------------

SPEC_MODELS = {
    "MessageWebhookPayload": MessageWebhookPayload,
    "ReactionWebhookPayload": ReactionWebhookPayload,
    "ButtonWebhookPayload": ButtonWebhookPayload,
    "ViewSubmitWebhookPayload": ViewSubmitWebhookPayload,
    "ChatMemberWebhookPayload": ChatMemberWebhookPayload,
    "CompanyMemberWebhookPayload": CompanyMemberWebhookPayload,
    "LinkSharedWebhookPayload": LinkSharedWebhookPayload,
    "VideoCallWebhookPayload": VideoCallWebhookPayload,
}


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    return load_spec()["components"]["schemas"]


def resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """A property schema with its $ref / allOf references merged in."""
    if "$ref" in schema:
        return resolve(schemas[schema["$ref"].rsplit("/", 1)[1]], schemas)
    merged: dict[str, Any] = {}
    for part in schema.get("allOf", []):
        merged |= resolve(part, schemas)
    return merged | {k: v for k, v in schema.items() if k != "allOf"}


def example(schema: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """A value built from the spec's own examples, with every property filled in."""
    schema = resolve(schema, schemas)
    if "example" in schema:
        return schema["example"]
    if "enum" in schema:
        return schema["enum"][0]
    if "properties" in schema:
        return {k: example(v, schemas) for k, v in schema["properties"].items()}
    if schema.get("type") == "array":
        return [example(schema["items"], schemas)]
    if schema.get("type") == "object":
        return {"field": "value"}
    raise AssertionError(f"no example for {schema}")


def test_union_members_are_the_modelled_ones(schemas):
    members = {ref["$ref"].rsplit("/", 1)[1] for ref in schemas["WebhookPayloadUnion"]["anyOf"]}
    assert members == set(SPEC_MODELS)


NESTED_MODELS = {
    "WebhookMessageThread": WebhookMessageThread,
    "WebhookLink": WebhookLink,
    "WebhookVideoCallThread": WebhookVideoCallThread,
    "WebhookVideoCallMember": WebhookVideoCallMember,
}


@pytest.mark.parametrize("name", [*SPEC_MODELS, *NESTED_MODELS])
def test_model_matches_spec_fields(schemas, name):
    spec = schemas[name]
    model = SPEC_MODELS.get(name) or NESTED_MODELS[name]
    required = {f for f, info in model.model_fields.items() if info.is_required()}
    assert set(model.model_fields) == set(spec["properties"])
    assert required == set(spec["required"])


FAKE_BODIES = {
    "MessageWebhookPayload": [
        wh.message_event(event, entity_type=entity_type, changed_at=changed_at)
        for event in ("new", "update", "delete")
        for entity_type in ("thread", "discussion", "user")
        for changed_at in (wh.DEFAULT, None)
    ]
    + [wh.message_event(parent_message_id=1)],
    "ReactionWebhookPayload": [wh.reaction_event("new"), wh.reaction_event("delete", chat_id=None)],
    "ButtonWebhookPayload": [wh.button_event()],
    "ViewSubmitWebhookPayload": [
        wh.view_submit_event(),
        wh.view_submit_event(callback_id=None, private_metadata=None, chat_id=None, data={}),
    ],
    "ChatMemberWebhookPayload": [
        wh.chat_member_event("add"),
        wh.chat_member_event("remove", thread_id=3),
    ],
    "CompanyMemberWebhookPayload": [
        wh.company_member_event(event)
        for event in ("invite", "confirm", "update", "suspend", "activate", "delete")
    ],
    "LinkSharedWebhookPayload": [wh.link_shared_event()],
    "VideoCallWebhookPayload": [
        wh.video_call_event("started"),
        wh.video_call_event(
            "finished", thread={"id": 1, "chat_id": 2, "message_id": 3, "message_chat_id": 4}
        ),
        wh.video_call_event("recording_ready", file_id=None),
    ],
}


@pytest.mark.parametrize("name", SPEC_MODELS)
def test_fake_bodies_conform_to_the_spec(schemas, name):
    properties = schemas[name]["properties"]
    for body in FAKE_BODIES[name]:
        # The validator misses that `nullable: true` beside an allOf $ref (the `thread` fields)
        # allows null, so those nulls are taken out before checking the rest.
        checked = {k: v for k, v in body.items() if v is not None or "allOf" not in properties[k]}
        # strict: the fake must not invent fields Pachca does not send either.
        assert spec_errors(f"/components/schemas/{name}", checked, strict=True) == []
        assert type(parse_webhook(body)) is SPEC_MODELS[name]


@pytest.mark.parametrize("name", SPEC_MODELS)
def test_spec_example_parses_for_every_event(schemas, name):
    events = resolve(schemas[name]["properties"]["event"], schemas)["enum"]
    body = example(schemas[name], schemas)
    for event in events:
        payload = parse_webhook(body | {"event": event})
        assert type(payload) is SPEC_MODELS[name]
        assert payload.event == event
        assert len(delivery_key(payload)) <= MAX_KEY_LEN


@pytest.mark.parametrize("name", SPEC_MODELS)
def test_nullability_and_enums_follow_the_spec(schemas, name):
    body = example(schemas[name], schemas)
    for field, prop in schemas[name]["properties"].items():
        prop = resolve(prop, schemas)
        if prop.get("nullable"):
            assert getattr(parse_webhook(body | {field: None}), field) is None
        elif field in schemas[name]["required"]:
            # type and event are the dispatch keys, so their message is worded differently.
            with pytest.raises(InvalidPayload, match=f"'?{field}'?"):
                parse_webhook(body | {field: None})
        if "enum" in prop and field not in ("type", "event"):
            for value in prop["enum"]:
                assert getattr(parse_webhook(body | {field: value}), field) == value
            with pytest.raises(InvalidPayload, match=f"{field}: "):
                parse_webhook(body | {field: "not-in-the-enum"})


# --- properties ------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=20,
)
field_names = st.sampled_from(
    ["type", "event", "id", "chat_id", "user_ids", "created_at", "changed_at", "thread", "data",
     "links", "members", "entity_type", "content", "webhook_timestamp", "trigger_id"]
)  # fmt: skip
valid_bodies = st.sampled_from(
    [
        wh.message_event(webhook_timestamp=1),
        wh.reaction_event(webhook_timestamp=1),
        wh.button_event(webhook_timestamp=1),
        wh.view_submit_event(webhook_timestamp=1),
        wh.chat_member_event(webhook_timestamp=1),
        wh.company_member_event(webhook_timestamp=1),
        wh.link_shared_event(webhook_timestamp=1),
        wh.video_call_event("finished", webhook_timestamp=1),
    ]
)
KNOWN_MODELS = (*SPEC_MODELS.values(), UnknownPayload)


def parses_or_rejects_cleanly(body: Any) -> None:
    try:
        payload = parse_webhook(body)
    except InvalidPayload:
        return
    assert isinstance(payload, KNOWN_MODELS)
    assert len(delivery_key(payload)) <= MAX_KEY_LEN


@given(st.dictionaries(st.text(max_size=10) | field_names, json_values))
def test_property_arbitrary_dicts_parse_or_raise_invalid_payload(body):
    parses_or_rejects_cleanly(body)


@given(
    valid_bodies,
    st.lists(st.tuples(field_names, json_values | st.just(...)), min_size=1, max_size=4),
)
def test_property_mutated_payloads_parse_or_raise_invalid_payload(body, changes):
    body = copy.deepcopy(body)
    for field, value in changes:
        if value is ...:
            body.pop(field, None)
        else:
            body[field] = value
    parses_or_rejects_cleanly(body)
