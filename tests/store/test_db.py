"""SQLite: WAL checkpoints happen on their own thread, not inline."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from store.db import Database
from tests.eventually import eventually


async def test_checkpoints_move_the_wal_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.write() as conn:
            await conn.run(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        empty = path.stat().st_size
        async with db.write() as conn:
            for _ in range(200):
                await conn.run(text("INSERT INTO t (v) VALUES (:v)"), {"v": "x" * 1000})
        # Inline checkpoints are off: the rows sit in the WAL, the file has not grown.
        assert path.stat().st_size == empty

        db.start_checkpoints(every_s=0.02)
        await eventually(
            lambda: path.stat().st_size > empty + 100_000, what="a checkpoint to grow the file"
        )
        assert path.stat().st_size > empty + 100_000
    finally:
        await db.dispose()
