"""Editing config.yaml under a running app applies auth at once (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bridge.config import load_config
from handlers.app import create_app
from store.db import Database
from tests.eventually import eventually


async def test_new_service_token_applies_without_restart(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    config_data["auth"]["service_tokens"] = ["old-service-token-0123456789"]
    path.write_text(yaml.safe_dump(config_data))
    client = await aiohttp_client(create_app(load_config(path), config_path=path, db=database))

    async def status(token: str) -> int:
        resp = await client.get(
            "/api/v1/users/nobody", headers={"Authorization": f"Bearer {token}"}
        )
        return resp.status

    assert await status("old-service-token-0123456789") == 404  # authenticated; the user is unknown
    assert await status("new-service-token-0123456789") == 401

    config_data["auth"]["service_tokens"] = ["new-service-token-0123456789"]
    path.write_text(yaml.safe_dump(config_data))

    async def new_token_accepted() -> bool:
        return await status("new-service-token-0123456789") == 404

    # The file is polled every second.
    await eventually(new_token_accepted, every=0.1, what="the new token to be accepted")
    assert await status("new-service-token-0123456789") == 404
    assert await status("old-service-token-0123456789") == 401


async def test_file_limits_apply_at_once_and_the_storage_waits_for_a_restart(
    aiohttp_client: Any, config_data: dict[str, Any], database: Database, tmp_path: Path
) -> None:
    from handlers.keys import SERVICES
    from tests.files_kit import form
    from tests.world import World

    path = tmp_path / "config.yaml"
    config_data["files"] = {"path": str(tmp_path / "files"), "max_bytes": 1000}
    path.write_text(yaml.safe_dump(config_data))
    client = await aiohttp_client(create_app(load_config(path), config_path=path, db=database))
    world = World(client, service_token=config_data["auth"]["service_tokens"][0])
    student, teacher = await world.user("student"), await world.user("teacher")
    chat = (await world.enroll(student, teacher)).subject_chat["id"]

    async def upload_status() -> int:
        resp = await client.post(
            f"/api/v1/chats/{chat}/files",
            data=form("a.bin", b"x" * 2000),
            headers=world.auth(student),
        )
        return resp.status

    assert await upload_status() == 413
    config_data["files"] = {"path": str(tmp_path / "elsewhere"), "max_bytes": 5000}
    path.write_text(yaml.safe_dump(config_data))

    async def bigger_files_accepted() -> bool:
        return await upload_status() == 201

    await eventually(bigger_files_accepted, every=0.1, what="the new limit to apply")
    # The folder chosen at start stays in force until a restart.
    services = client.app[SERVICES]
    assert services.config.files.path == str(tmp_path / "files")
    assert not (tmp_path / "elsewhere").exists()
