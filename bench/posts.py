"""Durable POSTs: posts/s at saturation and server CPU per POST.

Runs the real service (subprocess, SQLite by default; BRIDGE_BENCH_DATABASE_URL for PostgreSQL)
on loopback, seeds chats of two participants, then `--clients` concurrent clients POST
`--posts` messages in all over keep-alive connections. Prints posts/s, latency percentiles and
server CPU milliseconds per POST (from /proc: user + system time of the server process).

    .venv/bin/python bench/posts.py --clients 200 --posts 20000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import Server, postgres_cpu_seconds, seed_pairs, token


async def run(clients: int, posts: int, chats: int) -> None:
    with Server() as server:
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            pairs = await seed_pairs(session, server.base, chats)
            per_client = posts // clients
            latencies: list[float] = []

            async def client(n: int) -> None:
                pair = pairs[n % len(pairs)]
                headers = {"Authorization": f"Bearer {token(pair['student'])}"}
                url = f"{server.base}/api/v1/chats/{pair['chat_id']}/messages"
                for i in range(per_client):
                    started = time.perf_counter()
                    async with session.post(
                        url, json={"content": f"m{n}-{i}"}, headers=headers
                    ) as r:
                        await r.read()
                        assert r.status == 201, r.status
                    latencies.append(time.perf_counter() - started)

            # Warm up (imports, caches, the JWT key) outside the measurement.
            await asyncio.gather(*(client(n) for n in range(min(clients, 10))))
            latencies.clear()
            on_postgres = server.database_url.startswith("postgresql")
            db0 = postgres_cpu_seconds() if on_postgres else 0.0
            cpu0, t0, own0 = server.cpu_seconds(), time.perf_counter(), time.process_time()
            await asyncio.gather(*(client(n) for n in range(clients)))
            elapsed, cpu = time.perf_counter() - t0, server.cpu_seconds() - cpu0
            own = time.process_time() - own0
            db = postgres_cpu_seconds() - db0 if on_postgres else 0.0
    done = len(latencies)
    latencies.sort()
    print(f"clients={clients} chats={chats} posts={done}")
    print(f"posts/s            {done / elapsed:10.0f}")
    print(f"server CPU / post  {cpu / done * 1000:10.3f} ms")
    print(f"server CPU busy    {cpu / elapsed:10.0%}")
    print(f"load generator CPU {own / elapsed:10.0%}  (the bench's own process)")
    if db:
        print(f"PostgreSQL CPU / post {db / done * 1000:7.3f} ms  (every postgres process here)")
    print(f"latency p50        {statistics.median(latencies) * 1000:10.2f} ms")
    print(f"latency p99        {latencies[int(done * 0.99) - 1] * 1000:10.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--posts", type=int, default=10_000)
    parser.add_argument("--chats", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(asyncio.wait_for(run(args.clients, args.posts, args.chats), timeout=600))


if __name__ == "__main__":
    main()
