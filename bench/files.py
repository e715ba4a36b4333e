"""Files: upload and download throughput, and the server's memory while 10 clients each
upload a 20 MiB file at once (bench/README.md).

    python bench/files.py [--clients 10] [--mib 20] [--rounds 5]

Starts the real service (local file storage in a temporary folder), then per round: every
client uploads its file at the same moment (``POST /api/v1/chats/{id}/files``), then every
client downloads it through its signed link at the same moment. Prints the median upload and
download throughput (all clients' bytes over the wall time) and the server's RSS growth:
its peak while files moved (sampled every 5 ms) minus its RSS before the first round.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._server import Server, seed_pairs, token

MIB = 1024 * 1024
TARGET_GROWTH_MIB = 10.0
TARGET_DOWNLOAD_MIBS = 200.0


class PeakRss:
    """Samples the server's RSS in the background; the highest seen."""

    def __init__(self, server: Server):
        self.server = server
        self.peak = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, self.server.rss_bytes())
            await asyncio.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def upload(
    session: aiohttp.ClientSession, base: str, pair: dict[str, Any], data: bytes
) -> dict[str, Any]:
    form = aiohttp.FormData(quote_fields=False)
    form.add_field("file", data, filename="scan.pdf", content_type="application/pdf")
    async with session.post(
        f"{base}/api/v1/chats/{pair['chat_id']}/files",
        data=form,
        headers={"Authorization": f"Bearer {token(pair['student'])}"},
    ) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["file"]


async def download(session: aiohttp.ClientSession, base: str, file: dict[str, Any]) -> int:
    size = 0
    async with session.get(base + file["url"]) as r:
        assert r.status == 200, await r.text()
        async for chunk in r.content.iter_chunked(1 << 20):
            size += len(chunk)
    assert size == file["size"]
    return size


async def run(clients: int, mib: int, rounds: int) -> None:
    folder = tempfile.TemporaryDirectory(prefix="bridge-bench-files-")
    extra = {
        "files": {"path": str(Path(folder.name) / "files"), "max_bytes": mib * MIB},
        "server": {"body_timeout_s": 120},
    }
    with Server(extra) as server:
        data = bytes(range(256)) * (mib * MIB // 256)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            pairs = await seed_pairs(session, server.base, clients, prefix="f")
            # Warm-up: code paths and buffers loaded before the baseline is taken.
            warm = await upload(session, server.base, pairs[0], data[: 4 * MIB])
            await download(session, server.base, warm)
            await asyncio.sleep(0.5)
            baseline = server.rss_bytes()
            ups: list[float] = []
            downs: list[float] = []
            with PeakRss(server) as peak:
                for _ in range(rounds):
                    started = time.perf_counter()
                    files = await asyncio.gather(
                        *(upload(session, server.base, p, data) for p in pairs)
                    )
                    ups.append(clients * len(data) / MIB / (time.perf_counter() - started))
                    started = time.perf_counter()
                    sizes = await asyncio.gather(
                        *(download(session, server.base, f) for f in files)
                    )
                    downs.append(sum(sizes) / MIB / (time.perf_counter() - started))
            growth = (peak.peak - baseline) / MIB
    folder.cleanup()
    up, down = statistics.median(ups), statistics.median(downs)
    print(f"files: {clients} clients x {mib} MiB at once, {rounds} rounds, local storage")
    print(f"  upload   median {up:8.1f} MiB/s   (rounds: {', '.join(f'{u:.0f}' for u in ups)})")
    verdict = "ok" if down >= TARGET_DOWNLOAD_MIBS else "MISS"
    print(
        f"  download median {down:8.1f} MiB/s   (rounds: {', '.join(f'{d:.0f}' for d in downs)})"
        f"   target >= {TARGET_DOWNLOAD_MIBS:.0f}: {verdict}"
    )
    print(
        f"  server RSS growth {growth:6.1f} MiB (peak {peak.peak / MIB:.1f}, before"
        f" {baseline / MIB:.1f})   target <= {TARGET_GROWTH_MIB:.0f}:"
        f" {'ok' if growth <= TARGET_GROWTH_MIB else 'MISS'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--mib", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not (1 <= args.clients <= 100 and 1 <= args.mib <= 200 and 1 <= args.rounds <= 20):
        parser.error("at most 100 clients, 200 MiB and 20 rounds")
    asyncio.run(asyncio.wait_for(run(args.clients, args.mib, args.rounds), timeout=600))


if __name__ == "__main__":
    main()
