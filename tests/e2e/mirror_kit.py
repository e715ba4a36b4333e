"""The kit of the Pachca mirror's end-to-end tests (threads follow the policy, reactions both
ways): the real app with its outbox worker against the fake Pachca, which sends its signed
webhooks (message, reaction, chat_member) back to the app, as Pachca does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import select

from bridge.config import parse_config
from bridge.pachca.worker import OutboxTuning
from handlers.app import create_app
from handlers.keys import SERVICES
from store.db import Database
from store.models import Chat, OutboxJob
from tests.conftest import SERVICE_TOKEN
from tests.eventually import eventually
from tests.fakes import FAKE_PACHCA_TOKEN
from tests.fakes.pachca import FakePachca
from tests.world import World

CHANNEL = 111
TUTOR_CHANNEL = 222
SECRET = "mirror-test-signing-secret"
BOT = 1  # the fake's bot user

FAST = OutboxTuning(
    poll_s=0.05,
    min_pass_gap_s=0.005,
    backoff_base_s=0.02,
    backoff_max_s=0.1,
    postpone_s=0.05,
    waiting_poll_s=0.05,
    stop_grace_s=0.3,
)

AppFactory = Callable[..., Awaitable[tuple[TestClient, World]]]


@pytest.fixture
def start(
    database: Database, config_data: dict[str, Any], fake_pachca: FakePachca, aiohttp_client: Any
) -> AppFactory:
    """Build and start an app on the test database (call again for a "restart"), its Pachca
    the fake, whose webhooks go to this app. ``pachca`` overrides keys of the section."""
    fake_pachca.signing_secret = SECRET
    fake_pachca.sender.first_pause_s = 0.01  # a webhook to a stopped app is retried at once

    async def start(**pachca: Any) -> tuple[TestClient, World]:
        section = {
            "enabled": True,
            "api_url": fake_pachca.base_url,
            "token": FAKE_PACHCA_TOKEN,
            "signing_secret": SECRET,
            "bot_user_id": BOT,
            "channels": {"default": CHANNEL, "tutors": TUTOR_CHANNEL},
            "rate_per_chat": 1000,
            "rate_global": 1000,
            "max_attempts": 5,
            "request_timeout_s": 2,
            **pachca,
        }
        app = create_app(parse_config({**config_data, "pachca": section}), db=database)
        app[SERVICES].worker.tuning = FAST
        client = await aiohttp_client(app)
        fake_pachca.webhook_url = str(client.make_url("/webhooks/pachca"))
        return client, World(client, service_token=SERVICE_TOKEN)

    return start


async def chat_row(db: Database, chat_id: int) -> Any:
    async with db.read() as conn:
        return await conn.first(select(Chat.__table__).where(Chat.__table__.c.id == chat_id))


async def jobs(db: Database) -> list[Any]:
    async with db.read() as conn:
        return await conn.rows(select(OutboxJob.__table__).order_by(OutboxJob.id))


async def all_done(db: Database) -> bool:
    rows = await jobs(db)
    return bool(rows) and all(r["status"] == "done" for r in rows)


async def settled(db: Database, fake: FakePachca) -> None:
    """Every job done, and every webhook the fake sent answered."""
    await eventually(lambda: all_done(db), what="every outbox job done")
    await fake.deliveries_done()
    await eventually(lambda: all_done(db), what="every outbox job done, after the webhooks")


@dataclass
class Thread:
    chat_id: int
    thread_id: int
    thread_chat_id: int


async def thread_of(db: Database, chat_id: int) -> Thread:
    async def opened() -> Any:
        row = await chat_row(db, chat_id)
        return row if row is not None and row["pachca_thread_chat_id"] is not None else None

    row = await eventually(opened, what=f"the thread of chat {chat_id}")
    return Thread(chat_id, row["pachca_thread_id"], row["pachca_thread_chat_id"])


def thread_log(fake: FakePachca, thread: Thread) -> list[tuple[str, Any]]:
    """What the bridge asked of Pachca about one thread, in order: ("add", [ids]),
    ("remove", id), ("note", text) - a message from the bot that is no relayed web message."""
    out: list[tuple[str, Any]] = []
    for r in fake.requests:
        if r.method == "POST" and r.path == f"/chats/{thread.thread_chat_id}/members":
            out.append(("add", r.json["member_ids"]))
        elif r.method == "DELETE" and r.path.startswith(f"/chats/{thread.thread_chat_id}/members/"):
            out.append(("remove", int(r.path.rsplit("/", 1)[1])))
        elif (
            r.method == "POST"
            and r.path == "/messages"
            and r.json["message"].get("entity_id") == thread.thread_id
            and "display_name" not in r.json["message"]
        ):
            out.append(("note", r.json["message"]["content"]))
    return out
