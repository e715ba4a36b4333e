"""The SQLite files are the owner's only (section 16, "Files on disk"): they hold every message
and the generated JWT key. Checked on real files, on SQLite whatever the test database is."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
import yaml
from sqlalchemy import text

from bridge.cli import main
from store.db import Database


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes(path: Path) -> dict[str, int]:
    """The modes of the database file ("") and its -wal and -shm files, those that exist."""
    sides = {suffix: Path(f"{path}{suffix}") for suffix in ("", "-wal", "-shm")}
    return {suffix: mode(side) for suffix, side in sides.items() if side.exists()}


def leave_wide_side_files(path: Path, wide: dict[str, int]) -> None:
    for suffix, side_mode in wide.items():
        Path(f"{path}{suffix}").touch()
        os.chmod(f"{path}{suffix}", side_mode)


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """A umask that lets group and others read what is created, as many systems have."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


async def use(path: Path) -> None:
    """Open the database, write to it, and check the files while the connection is open (WAL
    mode: -wal and -shm exist then)."""
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.write() as conn:
            await conn.run(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
            await conn.run(text("INSERT INTO t VALUES (1)"))
        assert modes(path) == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
    finally:
        await db.dispose()


async def test_a_new_database_and_its_wal_and_shm_are_created_for_the_owner_only(
    tmp_path: Path,
) -> None:
    await use(tmp_path / "new.db")


async def test_existing_files_readable_by_others_are_tightened_and_logged(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    await use(path)
    os.chmod(path, 0o644)
    # Left over from an earlier run with a wider umask (empty files are valid to SQLite).
    leave_wide_side_files(path, {"-wal": 0o666, "-shm": 0o664})

    with structlog.testing.capture_logs() as logs:
        await use(path)

    tightened = {e["path"]: e["mode_was"] for e in logs if "owner only" in e["event"]}
    assert tightened == {str(path): "0o644", f"{path}-wal": "0o666", f"{path}-shm": "0o664"}


def test_the_cli_migrate_creates_the_database_for_the_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"database": {"url": f"sqlite+aiosqlite:///{path}"}}))
    assert main(["migrate", "--config", str(config)]) == 0
    assert mode(path) == 0o600
