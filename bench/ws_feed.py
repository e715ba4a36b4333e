"""The WebSocket feed under load: deliveries/s, POST -> receipt latency, memory per socket.

Runs the real service (subprocess, SQLite by default; BRIDGE_BENCH_DATABASE_URL for PostgreSQL)
on loopback, seeds `--clients / 2` chats of two participants (a student and a teacher), opens
one socket per participant and waits for every `ready`. Then:

1. memory: the server's RSS before and after opening the sockets, divided by their number
   (idle connections: upgraded, authenticated, subscribed, nothing queued);
2. load: messages POSTed over REST at `--rate` posts/s (open loop; `--rate 0` posts as fast as
   `--concurrency` closed-loop posters can) for `--duration` seconds, each into a random chat,
   by one of its two participants; both participants' sockets receive it. Latency is from just
   before the POST is sent to the moment the frame is read from the socket.

Everything is bounded: at most `--duration` seconds of load, plus a 10 s drain and a global
timeout. Prints one summary.

    /work/venv/bin/python bench/ws_feed.py --clients 1000 --rate 100 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import Server, seed_pairs, token

DRAIN_S = 10.0
CONNECT_CONCURRENCY = 50


@dataclass
class Stats:
    sent_at: dict[int, float] = field(default_factory=dict)  # post seq -> send time
    latencies: list[float] = field(default_factory=list)
    post_latencies: list[float] = field(default_factory=list)  # POST until its response
    deliveries: int = 0
    expected: int = 0
    posted: int = 0
    failed_posts: int = 0
    closed_early: int = 0
    measuring: bool = False
    posting_done: bool = False
    all_in: asyncio.Event = field(default_factory=asyncio.Event)

    def check_all_in(self) -> None:
        if self.posting_done and self.deliveries >= self.expected:
            self.all_in.set()


async def reader(ws: aiohttp.ClientWebSocketResponse, stats: Stats) -> None:
    async for msg in ws:
        if msg.type is not aiohttp.WSMsgType.TEXT:
            break
        now = time.perf_counter()
        frame = orjson.loads(msg.data)
        if frame.get("type") != "message.created":
            continue
        content = frame["message"]["content"]
        if not content.startswith("b"):
            continue  # warm-up traffic
        sent = stats.sent_at.get(int(content[1:]))
        if sent is not None:
            stats.deliveries += 1
            stats.latencies.append(now - sent)
            stats.check_all_in()
    if not stats.measuring:
        return
    stats.closed_early += 1


async def open_sockets(
    session: aiohttp.ClientSession, base: str, users: list[str]
) -> list[aiohttp.ClientWebSocketResponse]:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    url = base.replace("http", "ws", 1) + "/api/v1/ws"

    async def one(user: str) -> aiohttp.ClientWebSocketResponse:
        async with gate:
            ws = await session.ws_connect(f"{url}?token={token(user)}", autoping=True)
            first = await ws.receive_json(timeout=30)
            assert first["type"] == "ready", first
            return ws

    return list(await asyncio.gather(*(one(u) for u in users)))


async def post(
    session: aiohttp.ClientSession, base: str, pair: dict[str, Any], seq: int, stats: Stats
) -> None:
    sender = pair["student"] if seq % 2 else pair["teacher"]
    stats.sent_at[seq] = time.perf_counter()
    async with session.post(
        f"{base}/api/v1/chats/{pair['chat_id']}/messages",
        json={"content": f"b{seq}"},
        headers={"Authorization": f"Bearer {pair['tokens'][sender]}"},
    ) as resp:
        await resp.read()
        if resp.status != 201:
            stats.failed_posts += 1
            del stats.sent_at[seq]
            return
    stats.post_latencies.append(time.perf_counter() - stats.sent_at[seq])
    stats.posted += 1
    stats.expected += 2


async def load(
    session: aiohttp.ClientSession,
    base: str,
    pairs: list[dict[str, Any]],
    stats: Stats,
    *,
    rate: float,
    duration: float,
    concurrency: int,
) -> float:
    rng = random.Random(7)
    started = time.perf_counter()
    deadline = started + duration
    if rate > 0:
        # Open loop: a post every 1/rate s regardless of how long earlier ones take.
        tasks = []
        seq = 0
        while (now := time.perf_counter()) < deadline:
            due = started + seq / rate
            if due > now:
                await asyncio.sleep(due - now)
            tasks.append(asyncio.create_task(post(session, base, rng.choice(pairs), seq, stats)))
            seq += 1
        await asyncio.gather(*tasks)
    else:
        counter = iter(range(10**9))

        async def poster() -> None:
            while time.perf_counter() < deadline:
                await post(session, base, rng.choice(pairs), next(counter), stats)

        await asyncio.gather(*(poster() for _ in range(concurrency)))
    return time.perf_counter() - started


async def run(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.clients * 2 + 512))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # the server inherits it
    stats = Stats()
    with Server() as server:
        rest = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency))
        sockets_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            pairs = await seed_pairs(rest, server.base, max(1, args.clients // 2), prefix="w")
            for pair in pairs:
                pair["tokens"] = {u: token(u) for u in (pair["student"], pair["teacher"])}
            users = [u for p in pairs for u in (p["student"], p["teacher"])]

            # Warm up every code path once, then measure memory from a settled baseline.
            warm = await open_sockets(sockets_session, server.base, users[:2])
            await post(rest, server.base, pairs[0], -1, Stats())
            for ws in warm:
                await ws.close()
            await asyncio.sleep(1.0)
            rss0 = server.rss_bytes()
            t0 = time.perf_counter()
            sockets = await open_sockets(sockets_session, server.base, users)
            connect_s = time.perf_counter() - t0
            await asyncio.sleep(1.0)
            rss1 = server.rss_bytes()

            readers = [asyncio.create_task(reader(ws, stats)) for ws in sockets]
            stats.measuring = True
            cpu0 = server.cpu_seconds()
            elapsed = await load(
                rest,
                server.base,
                pairs,
                stats,
                rate=args.rate,
                duration=args.duration,
                concurrency=args.concurrency,
            )
            stats.posting_done = True
            stats.check_all_in()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stats.all_in.wait(), DRAIN_S)
            cpu = server.cpu_seconds() - cpu0
            stats.measuring = False
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*readers, return_exceptions=True)
        finally:
            await rest.close()
            await sockets_session.close()

    lat = sorted(stats.latencies)
    n = len(sockets)

    def pct(p: float, values: list[float] = lat) -> float:
        if not values:
            return float("nan")
        return values[min(len(values) - 1, int(len(values) * p))] * 1000

    post_lat = sorted(stats.post_latencies)

    mode = f"{args.rate:g} posts/s" if args.rate > 0 else f"saturation, {args.concurrency} posters"
    print(f"sockets={n} chats={len(pairs)} load={mode} duration={elapsed:.1f}s")
    print(f"sockets opened in        {connect_s:10.2f} s")
    print(f"memory per idle socket   {(rss1 - rss0) / n / 1024:10.1f} KB  (server RSS delta)")
    print(f"posts                    {stats.posted:10d}  ({stats.failed_posts} failed)")
    print(f"posts/s                  {stats.posted / elapsed:10.0f}")
    print(f"deliveries               {stats.deliveries:10d}  of {stats.expected} expected")
    print(f"deliveries/s             {stats.deliveries / elapsed:10.0f}")
    print(f"POST->receipt p50        {pct(0.50):10.2f} ms")
    print(f"POST->receipt p90        {pct(0.90):10.2f} ms")
    print(f"POST->receipt p99        {pct(0.99):10.2f} ms")
    print(f"POST->receipt max        {(lat[-1] * 1000 if lat else float('nan')):10.2f} ms")
    if lat:
        print(f"POST->receipt mean       {statistics.fmean(lat) * 1000:10.2f} ms")
    print(f"POST response p50/p99    {pct(0.5, post_lat):10.2f} / {pct(0.99, post_lat):.2f} ms")
    print(f"server CPU busy          {cpu / elapsed:10.0%}")
    print(f"sockets closed by server {stats.closed_early:10d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000, help="sockets (2 per chat)")
    parser.add_argument("--rate", type=float, default=100, help="posts/s; 0 = saturate")
    parser.add_argument("--duration", type=float, default=10, help="seconds of load")
    parser.add_argument("--concurrency", type=int, default=64, help="REST connections")
    args = parser.parse_args()
    if not 2 <= args.clients <= 10_000 or not 0 < args.duration <= 120:
        parser.error("--clients must be 2..10000 and --duration 0..120")
    budget = 300 + args.duration + args.clients * 0.05
    asyncio.run(asyncio.wait_for(run(args), timeout=budget))


if __name__ == "__main__":
    main()
