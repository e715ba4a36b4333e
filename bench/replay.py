"""`since` replay with a large event log: the time one WebSocket join takes.

Runs the real service (subprocess, SQLite by default; with BRIDGE_BENCH_DATABASE_URL, a fresh
PostgreSQL database made next to the one named and dropped afterwards) on loopback. Seeds
`--pairs` chats of a student and a teacher, and one student with a subject and a tutor chat
over the platform API; stops the service and writes `--events` events straight into the log
(messages spread over every chat, one in `--every` in the student's chat, and now and then a
`chat.updated` addressed to the student and someone else); starts the service again. Then the
student joins `--joins` times with `since` set to the log's first event (the whole log lies
after it), then 10,000 events back, then without `since`, and each join is timed from the
upgrade request to the `ready` frame. Prints the median, p90 and max of each, and the server's
CPU time per join (user + system, from /proc; steadier than wall time on a busy machine).

    .venv/bin/python bench/replay.py --events 300000 --joins 50
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import SERVICE_TOKEN, Server, seed_pairs, token

BATCH = 5000
ADDRESSED_EVERY = 10_000  # one chat.updated addressed to the student in this many events


async def seed_student(session: aiohttp.ClientSession, base: str) -> tuple[str, list[int]]:
    """A student with a teacher and a tutor: a subject chat and a tutor chat."""
    headers = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    people = [("rtutor", {"role": "tutor"}), ("rteacher", {"role": "teacher"})]
    people.append(("rstudent", {"role": "student", "tutor_id": "rtutor"}))
    for uid, body in people:
        async with session.put(
            f"{base}/api/v1/users/{uid}", json={"name": uid, **body}, headers=headers
        ) as r:
            assert r.status == 200, await r.text()
    body = {
        "student_id": "rstudent",
        "teacher_id": "rteacher",
        "subject": {"id": "phys", "name": "Physics"},
    }
    async with session.put(f"{base}/api/v1/enrollments/re", json=body, headers=headers) as r:
        assert r.status == 200, await r.text()
        chats = [c["id"] for c in (await r.json())["chats"]]
    return "rstudent", chats


async def fill_log(
    url: str, events: int, every: int, own_chats: list[int], others: list[dict[str, Any]]
) -> None:
    """Write the events through the store and the event log (so whatever the schema keeps
    for an event's audience is written as the service writes it)."""
    from sqlalchemy import text

    from bridge.feed.events import MESSAGE_CREATED, EventLog, encode
    from store.db import Database
    from store.models import Event

    db = Database(url)
    log = EventLog()
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []

    def message(i: int, chat_id: int) -> dict[str, Any]:
        body = {
            "message": {
                "id": i,
                "chat_id": chat_id,
                "sender": {"id": "bench", "name": "Bench", "role": "student"},
                "content": f"message {i} " + "x" * 80,
                "created_at": now.isoformat(),
                "edited_at": None,
                "reply_to_id": None,
                "source": "web",
                "read_by": [],
            }
        }
        payload = encode(MESSAGE_CREATED, chat_id, body).decode()
        return {"chat_id": chat_id, "type": MESSAGE_CREATED, "payload": payload, "created_at": now}

    try:
        async with db.write() as conn:
            for i in range(events):
                if i % ADDRESSED_EVERY == ADDRESSED_EVERY // 2:
                    if rows:
                        await conn.run(Event.__table__.insert(), rows)
                        rows = []
                    other = others[i % len(others)]
                    await log.append(
                        conn,
                        "chat.updated",
                        other["chat_id"],
                        {"chat": {"id": other["chat_id"]}},
                        now,
                        audience={"rstudent", other["student"], other["teacher"]},
                    )
                    continue
                own = i % every == 0
                chat_id = (
                    own_chats[i % len(own_chats)] if own else others[i % len(others)]["chat_id"]
                )
                rows.append(message(i, chat_id))
                if len(rows) >= BATCH:
                    await conn.run(Event.__table__.insert(), rows)
                    rows = []
            if rows:
                await conn.run(Event.__table__.insert(), rows)
            if not db.is_sqlite:
                # What autovacuum would soon do: the planner needs the table's new size.
                await conn.run(text("ANALYZE"))
    finally:
        await db.dispose()


async def first_and_last(url: str) -> tuple[int, int]:
    from sqlalchemy import func, select

    from store.db import Database
    from store.models import Event

    db = Database(url)
    try:
        async with db.read() as conn:
            row = await conn.first(
                select(func.min(Event.id).label("first"), func.max(Event.id).label("last"))
            )
    finally:
        await db.dispose()
    assert row is not None
    return int(row["first"]), int(row["last"])


async def join(session: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    """Seconds from the upgrade request to `ready`, and how many events came before it."""
    started = time.perf_counter()
    async with session.ws_connect(url) as ws:
        replayed = 0
        async for msg in ws:
            assert msg.type is aiohttp.WSMsgType.TEXT, (msg.type, ws.close_code)
            if msg.json()["type"] == "ready":
                return time.perf_counter() - started, replayed
            replayed += 1
    raise RuntimeError(f"closed before ready: {ws.close_code}")


async def measure(
    session: aiohttp.ClientSession, server: Server, url: str, joins: int
) -> tuple[list[float], float, int]:
    """Sorted join times, the server's CPU seconds per join, and how many were replayed."""
    await join(session, url)  # warm-up
    times, replayed = [], 0
    cpu0 = server.cpu_seconds()
    for _ in range(joins):
        took, replayed = await join(session, url)
        times.append(took)
    return sorted(times), (server.cpu_seconds() - cpu0) / joins, replayed


def summary(label: str, times: list[float], cpu: float, replayed: int) -> str:
    p90 = times[max(0, int(len(times) * 0.9) - 1)]
    return (
        f"{label:28s} median {statistics.median(times) * 1000:7.2f} ms"
        f"   p90 {p90 * 1000:7.2f} ms   max {times[-1] * 1000:7.2f} ms"
        f"   server CPU {cpu * 1000:6.2f} ms   ({replayed} replayed)"
    )


async def run(events: int, joins: int, pairs: int, every: int, database_url: str | None) -> None:
    with Server(database_url=database_url) as server:
        async with aiohttp.ClientSession() as session:
            others = await seed_pairs(session, server.base, pairs)
            student, own_chats = await seed_student(session, server.base)
        server.stop()
        started = time.perf_counter()
        await fill_log(server.database_url, events, every, own_chats, others)
        seeded = time.perf_counter() - started
        first, last = await first_and_last(server.database_url)
        server.start()
        ws = f"{server.base.replace('http', 'ws')}/api/v1/ws?token={token(student)}"
        async with aiohttp.ClientSession() as session:
            whole = await measure(session, server, f"{ws}&since={first}", joins)
            recent = await measure(session, server, f"{ws}&since={last - 10_000}", joins)
            bare = await measure(session, server, ws, joins)
    backend = "postgresql" if database_url else "sqlite"
    count = last - first + 1
    print(f"{backend}: {count} events in the log (seeded in {seeded:.0f} s), {joins} joins each")
    print(summary("since = first event", *whole))
    print(summary("since = 10,000 events back", *recent))
    print(summary("no since", *bare))


async def with_database(events: int, joins: int, pairs: int, every: int, base_url: str) -> None:
    """PostgreSQL: a database of its own for the run, dropped at the end."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(base_url)
    name = f"bench_replay_{uuid.uuid4().hex[:8]}"
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            fresh = url.set(database=name).render_as_string(hide_password=False)
            await run(events, joins, pairs, every, fresh)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--joins", type=int, default=50)
    parser.add_argument("--pairs", type=int, default=200, help="other chats in the log")
    parser.add_argument("--every", type=int, default=3000, help="one event in this many is ours")
    args = parser.parse_args()
    if not 1_000 <= args.events <= 2_000_000 or not 1 <= args.joins <= 1_000:
        parser.error("--events 1000..2000000, --joins 1..1000")
    base_url = os.environ.get("BRIDGE_BENCH_DATABASE_URL")
    if base_url:
        work = with_database(args.events, args.joins, args.pairs, args.every, base_url)
    else:
        work = run(args.events, args.joins, args.pairs, args.every, None)
    asyncio.run(asyncio.wait_for(work, timeout=1800))


if __name__ == "__main__":
    main()
