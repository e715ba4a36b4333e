"""Signed Pachca webhooks ingested per second (verify, dedup, store, fan-out).

Runs the real service (subprocess, SQLite by default; BRIDGE_BENCH_DATABASE_URL for PostgreSQL)
on loopback with a signing secret, seeds `--chats` forum chats whose teachers have linked Pachca
accounts and whose Pachca threads are mapped, then `--concurrency` senders POST `--events`
signed `message/new` webhooks in all (teachers replying in their threads), each a new message
relayed into the forum. Prints webhooks/s, latency, server CPU per webhook, and checks that
every message was stored exactly once.

    .venv/bin/python bench/webhooks.py --events 10000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import SERVICE_TOKEN, Server, seed_pairs, token

from bot.signature import sign

SECRET = "bench-signing-secret"
THREAD_CHAT_BASE = 900_000
TEACHER_PACHCA_BASE = 10_000


def webhook(seq: int, chat: int, thread_chat_id: int, teacher_pachca_id: int) -> bytes:
    now = int(time.time())
    created = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    return orjson.dumps(
        {
            "type": "message",
            "event": "new",
            "id": 5_000_000 + seq,
            "entity_type": "thread",
            "entity_id": 70_000 + chat,
            "content": f"reply {seq}",
            "user_id": teacher_pachca_id,
            "created_at": created,
            "changed_at": created,
            "parent_message_id": None,
            "chat_id": thread_chat_id,
            "thread": {"message_id": 60_000 + chat, "message_chat_id": 42},
            "url": f"https://app.pachca.com/chats/{thread_chat_id}?message={seq}",
            "webhook_timestamp": now,
        }
    )


async def map_threads(server: Server, pairs: list[dict[str, Any]]) -> None:
    """Link each teacher's Pachca account (platform API) and map each chat to a Pachca thread
    (as the outbox would have, once the thread was open) straight in the database."""
    from sqlalchemy import update

    from store.db import Database
    from store.models import Chat

    headers = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
    async with aiohttp.ClientSession() as session:
        for i, pair in enumerate(pairs):
            body = {
                "role": "teacher",
                "name": pair["teacher"],
                "pachca_user_id": TEACHER_PACHCA_BASE + i,
            }
            async with session.put(
                f"{server.base}/api/v1/users/{pair['teacher']}", json=body, headers=headers
            ) as r:
                assert r.status == 200, await r.text()
    db = Database(server.database_url)
    try:
        async with db.write() as tx:
            for i, pair in enumerate(pairs):
                await tx.run(
                    update(Chat)
                    .where(Chat.id == pair["chat_id"])
                    .values(pachca_thread_id=70_000 + i, pachca_thread_chat_id=THREAD_CHAT_BASE + i)
                )
    finally:
        await db.dispose()


async def run(events: int, concurrency: int, chats: int) -> None:
    extra = {"pachca": {"signing_secret": SECRET, "bot_user_id": 1}}
    with Server(extra) as server:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency)
        ) as session:
            pairs = await seed_pairs(session, server.base, chats)
            await map_threads(server, pairs)
            url = f"{server.base}/webhooks/pachca"
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            seq = iter(range(events + 100))

            async def sender(count: int) -> None:
                for _ in range(count):
                    n = next(seq)
                    chat = n % chats
                    raw = webhook(n, chat, THREAD_CHAT_BASE + chat, TEACHER_PACHCA_BASE + chat)
                    headers = {
                        "Pachca-Signature": sign(raw, SECRET),
                        "Content-Type": "application/json",
                    }
                    started = time.perf_counter()
                    async with session.post(url, data=raw, headers=headers) as r:
                        await r.read()
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                    latencies.append(time.perf_counter() - started)

            await sender(50)  # warm-up, outside the measurement
            latencies.clear()
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            await asyncio.gather(*(sender(events // concurrency) for _ in range(concurrency)))
            elapsed, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0

            stored = 0
            for pair in pairs:
                async with session.get(
                    f"{server.base}/api/v1/chats/{pair['chat_id']}/messages?limit=1",
                    headers={"Authorization": f"Bearer {token(pair['student'])}"},
                ) as r:
                    stored += (await r.json())["total"]
    done = len(latencies)
    latencies.sort()
    print(f"events={done} concurrency={concurrency} chats={chats} statuses={statuses}")
    print(f"webhooks/s            {done / elapsed:10.0f}")
    print(f"server CPU / webhook  {cpu / done * 1000:10.3f} ms")
    print(f"server CPU busy       {cpu / elapsed:10.0%}")
    print(f"latency p50           {statistics.median(latencies) * 1000:10.2f} ms")
    print(f"latency p99           {latencies[int(done * 0.99) - 1] * 1000:10.2f} ms")
    print(f"messages stored       {stored:10d} (expected {done + 50}: each event exactly once)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--chats", type=int, default=50)
    args = parser.parse_args()
    if not 1 <= args.events <= 200_000 or not 1 <= args.concurrency <= 1000:
        parser.error("--events 1..200000, --concurrency 1..1000")
    asyncio.run(asyncio.wait_for(run(args.events, args.concurrency, args.chats), timeout=600))


if __name__ == "__main__":
    main()
