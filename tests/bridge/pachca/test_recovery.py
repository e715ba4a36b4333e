"""Missed-webhook recovery from Pachca's saved event history (GET /webhooks/events), against
the fake Pachca server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from bot.client import PachcaClient
from bridge.cli import main
from bridge.pachca.recovery import recover_webhooks
from handlers.keys import SERVICES
from store.db import Database
from tests.fakes import (
    FAKE_PACHCA_TOKEN,
    FakePachca,
    fake_pachca_fixture,  # noqa: F401
)
from tests.fakes.webhook_kit import (
    BOT_USER_ID,
    TEACHER_PACHCA_ID,
    Forum,
    build_forum,
    chat_messages,
    counts,
    deliver_ok,
    map_thread,
    outbox_jobs,
    pachca_section,
)
from tests.fakes.webhooks import button_event, message_event
from tests.world import World

CHANNEL_ID = 4242


pytestmark = pytest.mark.config_sections(pachca=pachca_section())


@pytest.fixture
async def pachca(fake_pachca: FakePachca) -> AsyncIterator[PachcaClient]:
    assert fake_pachca.base_url is not None
    async with PachcaClient(fake_pachca.base_url, FAKE_PACHCA_TOKEN) as client:
        yield client


@pytest.fixture
async def forum(world: World, database: Database, pachca: PachcaClient) -> Forum:
    """The forum, its subject chat mirrored by a real (fake) Pachca thread."""
    forum = await build_forum(world, database)
    root = await pachca.create_message(
        entity_type="discussion", entity_id=CHANNEL_ID, content="Mathematics · Sam"
    )
    thread = await pachca.create_thread(root.id)
    await map_thread(
        database, forum.subject_chat, thread_id=thread.id, thread_chat_id=thread.chat_id
    )
    forum.thread_id, forum.thread_chat_id = thread.id, thread.chat_id
    return forum


def missed(fake: FakePachca, forum: Forum, content: str) -> dict[str, Any]:
    """The teacher writes in the thread while the bridge is down: Pachca saves the webhook."""
    message = fake.post_as_user(
        TEACHER_PACHCA_ID, entity_type="thread", entity_id=forum.thread_id, content=content
    )
    payload = fake.webhook_payload(message["id"])
    fake.add_webhook_event(payload)
    return payload


async def test_missed_messages_are_recovered_and_removed_from_the_history(
    client: TestClient,
    world: World,
    database: Database,
    fake_pachca: FakePachca,
    pachca: PachcaClient,
    forum: Forum,
) -> None:
    # One delivered live before the outage: it is in the history too, and stays single.
    live = missed(fake_pachca, forum, "delivered live")
    await deliver_ok(client, live)
    missed(fake_pachca, forum, "missed one")
    missed(fake_pachca, forum, "missed two")
    fake_pachca.add_webhook_event(button_event())  # a kind the bridge ignores
    help_request = message_event(
        id=99_001,
        entity_type="user",
        entity_id=BOT_USER_ID,
        chat_id=700_500,
        user_id=555,
        content="/help",
    )
    fake_pachca.add_webhook_event(help_request)

    rt = client.app[SERVICES].rt
    report = await recover_webhooks(
        rt, pachca, metrics=client.app[SERVICES].metrics, page_pause_s=0
    )

    assert report.error is None
    assert (report.seen, report.deleted) == (5, 5)
    assert dict(report.outcomes) == {"duplicate": 1, "accepted": 2, "ignored": 1, "command": 1}
    messages = await chat_messages(world, forum.student, forum.subject_chat)
    assert [(m["content"], m["source"]) for m in messages] == [
        ("delivered live", "pachca"),
        ("missed one", "pachca"),
        ("missed two", "pachca"),
    ]
    [answer] = await outbox_jobs(database, "send_text")
    assert answer["payload"]["entity_id"] == 555
    assert fake_pachca.webhook_events == []
    assert fake_pachca.violations == []

    # Nothing left: a second run reads an empty history and changes nothing.
    before = await counts(database)
    again = await recover_webhooks(rt, pachca, page_pause_s=0)
    assert (again.seen, again.error) == (0, None)
    assert await counts(database) == before


async def test_a_long_history_is_read_page_by_page(
    client: TestClient,
    world: World,
    fake_pachca: FakePachca,
    pachca: PachcaClient,
    forum: Forum,
) -> None:
    for n in range(57):
        missed(fake_pachca, forum, f"m{n}")
    report = await recover_webhooks(client.app[SERVICES].rt, pachca, page_pause_s=0)
    assert (report.seen, report.deleted, report.error) == (57, 57, None)
    messages = await chat_messages(world, forum.student, forum.subject_chat)
    assert [m["content"] for m in messages] == [f"m{n}" for n in range(57)]
    assert len(fake_pachca.requests_to("GET", "/webhooks/events")) == 3  # 50 + 7 + empty


async def test_a_failed_delete_stops_the_run_and_the_event_is_handled_once_later(
    client: TestClient,
    world: World,
    fake_pachca: FakePachca,
    pachca: PachcaClient,
    forum: Forum,
) -> None:
    missed(fake_pachca, forum, "first")
    missed(fake_pachca, forum, "second")
    fake_pachca.fail_next(status=503, method="DELETE", path="/webhooks/events/*")
    rt = client.app[SERVICES].rt

    report = await recover_webhooks(rt, pachca, page_pause_s=0)
    assert report.error is not None
    assert (report.seen, report.deleted) == (1, 0)
    assert len(fake_pachca.webhook_events) == 2

    report = await recover_webhooks(rt, pachca, page_pause_s=0)
    assert (report.seen, report.deleted, report.error) == (2, 2, None)
    assert dict(report.outcomes) == {"duplicate": 1, "accepted": 1}
    messages = await chat_messages(world, forum.student, forum.subject_chat)
    assert [m["content"] for m in messages] == ["first", "second"]


async def test_unreadable_history_is_reported_not_raised(
    client: TestClient, fake_pachca: FakePachca, pachca: PachcaClient
) -> None:
    fake_pachca.fail_next(status=500, method="GET", path="/webhooks/events")
    report = await recover_webhooks(client.app[SERVICES].rt, pachca, page_pause_s=0)
    assert report.error is not None
    assert report.seen == 0


async def test_cli_recover_webhooks(tmp_path: Path, fake_pachca: FakePachca) -> None:
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    config = {
        "database": {"url": db_url},
        "pachca": {
            "api_url": fake_pachca.base_url,
            "token": FAKE_PACHCA_TOKEN,
            "signing_secret": "s",
            "bot_user_id": BOT_USER_ID,
        },
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    fake_pachca.add_webhook_event(
        message_event(entity_type="user", entity_id=BOT_USER_ID, user_id=777, content="/help")
    )
    # The CLI runs its own event loop: off this one, which serves the fake. Only `serve`
    # and `migrate` create the database.
    assert await asyncio.to_thread(main, ["recover-webhooks", "--config", str(path)]) == 1
    assert not (tmp_path / "cli.db").exists()
    assert await asyncio.to_thread(main, ["migrate", "--config", str(path)]) == 0
    assert await asyncio.to_thread(main, ["recover-webhooks", "--config", str(path)]) == 0
    assert fake_pachca.webhook_events == []
    db = Database(db_url)
    try:
        [answer] = await outbox_jobs(db, "send_text")
        assert answer["payload"]["entity_id"] == 777
    finally:
        await db.dispose()


async def test_cli_recover_webhooks_without_a_token_fails(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump({"database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"}})
    )
    assert await asyncio.to_thread(main, ["recover-webhooks", "--config", str(path)]) == 2


async def test_the_running_service_recovers_the_history_on_schedule(
    client: TestClient, world: World, fake_pachca: FakePachca, forum: Forum
) -> None:
    """The scheduled job reads the history with the service's own Pachca client."""
    missed(fake_pachca, forum, "missed while down")
    live = client.app[SERVICES].rt.live  # Pachca switched on, as a config reload would
    pachca = live.current.pachca.model_copy(
        update={
            "enabled": True,
            "api_url": fake_pachca.base_url,
            "token": SecretStr(FAKE_PACHCA_TOKEN),
        }
    )
    live.current = live.current.model_copy(update={"pachca": pachca})

    report = await client.app[SERVICES].maintenance.recover_webhooks()

    assert report is not None and report.error is None
    messages = await chat_messages(world, forum.student, forum.subject_chat)
    assert [m["content"] for m in messages] == ["missed while down"]
    assert fake_pachca.webhook_events == []
