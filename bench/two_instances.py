"""Two instances on one PostgreSQL database with the Redis feed, against one, in one sitting.

Runs `pachca-bridge serve` twice (child processes on loopback) on the PostgreSQL database of
BRIDGE_BENCH_DATABASE_URL, both with `feed.backend: redis` at BENCH_REDIS_URL. Seeds chats of
two participants; each chat's student has a socket on instance A and its teacher one on
instance B, so every post is delivered on both instances, one of them through Redis. Then
`--posters` closed-loop clients POST `--posts` messages in all, spread over both instances
(poster n posts to instance n % 2), each into a chat of its own choosing, as fast as the
instances answer. The same load then runs against one instance alone (every socket and every
POST on it), for the ratio.

Prints, for each run: posts/s, server CPU per POST for each instance (its CPU time divided by
the POSTs it answered) and in all, p50/p99 from POST to receipt over every delivery (and over
the deliveries on the other instance than the POST's), and deliveries lost or duplicated
(each post must reach both sockets of its chat exactly once).

    BRIDGE_BENCH_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:5432/bench \\
        .venv/bin/python bench/two_instances.py --chats 50 --posters 100 --posts 10000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import Server, seed_pairs, token

DRAIN_S = 15.0


@dataclass
class Run:
    instances: int
    sent_at: dict[str, tuple[float, int]] = field(default_factory=dict)  # tag -> (time, via)
    received: dict[tuple[int, str], int] = field(default_factory=dict)  # (socket, tag) -> times
    copies: dict[tuple[int, int], int] = field(default_factory=dict)  # (socket, message id)
    latencies: list[float] = field(default_factory=list)
    cross: list[float] = field(default_factory=list)  # delivered on the other instance
    posts_via: list[int] = field(default_factory=lambda: [0, 0])
    failed: int = 0
    closed: int = 0
    measuring: bool = True


async def read(ws: aiohttp.ClientWebSocketResponse, sock: int, on: int, run: Run) -> None:
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        now = time.perf_counter()
        frame = orjson.loads(msg.data)
        if frame.get("type") != "message.created":
            continue
        tag = frame["message"]["content"]
        sent = run.sent_at.get(tag)
        if sent is None:
            continue  # warm-up
        # The same message twice on one socket is a duplicate; two messages with one tag (a
        # POST the HTTP client sent again) are not the feed's doing, and counted apart.
        copy = (sock, frame["message"]["id"])
        run.copies[copy] = run.copies.get(copy, 0) + 1
        key = (sock, tag)
        run.received[key] = run.received.get(key, 0) + 1
        if run.received[key] == 1:
            run.latencies.append(now - sent[0])
            if sent[1] != on:
                run.cross.append(now - sent[0])
    if run.measuring:
        run.closed += 1


async def measure(
    servers: list[Server], pairs: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    run = Run(len(servers))
    rest = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.posters))
    socks = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    try:
        sockets: list[tuple[aiohttp.ClientWebSocketResponse, int]] = []
        for pair in pairs:
            for i, user in enumerate((pair["student"], pair["teacher"])):
                on = i % len(servers)
                url = servers[on].base.replace("http", "ws", 1) + "/api/v1/ws"
                ws = await socks.ws_connect(f"{url}?token={token(user)}")
                ready = await ws.receive_json(timeout=30)
                assert ready["type"] == "ready", ready
                sockets.append((ws, on))
        readers = [asyncio.create_task(read(ws, n, on, run)) for n, (ws, on) in enumerate(sockets)]
        rng = random.Random(16)
        tokens = {p["student"]: token(p["student"]) for p in pairs}
        counter = iter(range(args.posts))
        expected = 0

        async def poster(n: int) -> None:
            nonlocal expected
            via = n % len(servers)
            base = servers[via].base
            for seq in counter:
                pair = rng.choice(pairs)
                tag = f"{run.instances}-{seq}"
                run.sent_at[tag] = (time.perf_counter(), via)
                async with rest.post(
                    f"{base}/api/v1/chats/{pair['chat_id']}/messages",
                    json={"content": tag},
                    headers={"Authorization": f"Bearer {tokens[pair['student']]}"},
                ) as resp:
                    await resp.read()
                if resp.status != 201:
                    run.failed += 1
                    del run.sent_at[tag]
                    continue
                run.posts_via[via] += 1
                expected += 2

        cpu0 = [s.cpu_seconds() for s in servers]
        t0 = time.perf_counter()
        await asyncio.gather(*(poster(n) for n in range(args.posters)))
        elapsed = time.perf_counter() - t0
        cpu = [s.cpu_seconds() - c for s, c in zip(servers, cpu0, strict=True)]
        deadline = time.perf_counter() + DRAIN_S
        while len(run.received) < expected and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # the last deliveries, for at most DRAIN_S
        run.measuring = False
        for ws, _ in sockets:
            await ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
    finally:
        await rest.close()
        await socks.close()
    posted = sum(run.posts_via)
    lost = expected - len(run.received)
    duplicated = sum(times - 1 for times in run.copies.values())
    reposted = sum(times - 1 for times in run.received.values()) - duplicated
    return {
        "run": run,
        "posted": posted,
        "elapsed": elapsed,
        "cpu": cpu,
        "lost": lost,
        "duplicated": duplicated,
        "reposted": reposted,
        "expected": expected,
    }


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def report(title: str, r: dict[str, Any]) -> float:
    run: Run = r["run"]
    rate = r["posted"] / r["elapsed"]
    print(f"--- {title}")
    print(f"posts                       {r['posted']:10d}  ({run.failed} failed)")
    print(f"posts/s                     {rate:10.0f}")
    for i, (cpu, via) in enumerate(zip(r["cpu"], run.posts_via, strict=False)):
        per = cpu / via * 1000 if via else float("nan")
        print(f"server CPU / POST, inst {'AB'[i]}   {per:10.3f} ms  ({via} POSTs, {cpu:.1f} s CPU)")
    print(f"server CPU / POST, all      {sum(r['cpu']) / max(r['posted'], 1) * 1000:10.3f} ms")
    p50, p99 = pct(run.latencies, 0.5), pct(run.latencies, 0.99)
    print(f"POST->receipt p50 / p99     {p50:10.2f} / {p99:.2f} ms")
    if run.instances > 1:
        print(
            f"  other instance p50 / p99  {pct(run.cross, 0.5):10.2f} / "
            f"{pct(run.cross, 0.99):.2f} ms"
        )
    print(f"deliveries                  {len(run.received):10d}  of {r['expected']} expected")
    print(f"lost / duplicated           {r['lost']:10d} / {r['duplicated']}")
    if r["reposted"]:
        print(f"  POSTs stored twice        {r['reposted'] // 2:10d}  (sent again by the client)")
    print(f"sockets closed by a server  {run.closed:10d}")
    return rate


async def main_async(args: argparse.Namespace) -> None:
    url = os.environ.get("BRIDGE_BENCH_DATABASE_URL", "")
    if not url.startswith("postgresql"):
        sys.exit("set BRIDGE_BENCH_DATABASE_URL to a PostgreSQL database (postgresql+asyncpg://)")
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    rates: dict[int, float] = {}
    prefix = f"x{uuid.uuid4().hex[:6]}"
    for count in args.order:
        feed = {"backend": "redis", "url": redis_url, "channel": f"bench-{uuid.uuid4().hex}"}
        extra = {"feed": feed}
        with contextlib.ExitStack() as stack:
            servers = [
                stack.enter_context(Server(extra=extra, database_url=url)) for _ in range(count)
            ]
            async with aiohttp.ClientSession() as session:
                pairs = await seed_pairs(
                    session, servers[0].base, args.chats, prefix=f"{prefix}{count}"
                )
            result = await measure(servers, pairs, args)
        rates[count] = report(f"{count} instance{'s' if count > 1 else ''}", result)
    if 1 in rates and 2 in rates:
        print(f"--- two instances / one      {rates[2] / rates[1]:10.2f} x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=50, help="chats, 2 sockets each")
    parser.add_argument("--posters", type=int, default=100, help="concurrent POSTing clients")
    parser.add_argument("--posts", type=int, default=10_000, help="posts in each run")
    parser.add_argument(
        "--only", choices=("1", "2"), help="run only one instance, or only two (default: both)"
    )
    args = parser.parse_args()
    if not 1 <= args.chats <= 2000 or not 1 <= args.posts <= 200_000:
        parser.error("--chats must be 1..2000 and --posts 1..200000")
    args.order = [int(args.only)] if args.only else [1, 2]
    asyncio.run(asyncio.wait_for(main_async(args), timeout=900))


if __name__ == "__main__":
    main()
