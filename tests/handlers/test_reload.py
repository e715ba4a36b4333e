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
