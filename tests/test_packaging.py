"""Packaging. The Dockerfile (docs/operations.md, Docker), read as Docker reads it (no daemon
needed): the image holds every package, its health check works against the real service, the
graceful stop ends within Docker's stop grace, and the data volume is the service user's. And
pyproject.toml: test dependencies are bounded above."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import sys
import tomllib
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from bridge.config import load_config
from tests.bridge.test_cli import free_port

ROOT = Path(__file__).resolve().parent.parent
DOCKER_DEFAULT_STOP_GRACE_S = 10  # `docker stop` / compose, unless told otherwise


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text("utf-8")
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", text)  # continuation lines (and comments within)
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def env() -> dict[str, str]:
    values: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                values[name] = value
    return values


def test_every_package_of_the_distribution_is_copied_in() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.rstrip("*") for p in include}
    copied = {rest.split()[0].rstrip("/") for word, rest in instructions() if word == "COPY"}
    assert packages <= copied, packages - copied
    assert "web" in packages and "sandbox" in packages


def test_the_graceful_stop_ends_within_dockers_stop_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BRIDGE_CONFIG", str(ROOT / "config.yaml"))  # the file the image copies
    config = load_config()
    assert config.server.shutdown_timeout_s < DOCKER_DEFAULT_STOP_GRACE_S
    assert ("STOPSIGNAL", "SIGTERM") in instructions()


def test_the_data_volume_is_the_working_directory_and_the_service_users() -> None:
    steps = instructions()
    user = next(rest for word, rest in steps if word == "USER")
    assert user not in ("root", "0")
    assert ("VOLUME", "/data") in steps
    workdirs = [rest for word, rest in steps if word == "WORKDIR"]
    assert workdirs[-1] == "/data"  # relative paths (files, say) land in the volume
    assert any(word == "RUN" and f"chown {user} /data" in rest for word, rest in steps)
    assert env()["BRIDGE_DATABASE__URL"].endswith("////data/bridge.db")


async def test_the_health_check_passes_against_the_service_and_fails_without_it(
    client: TestClient,
) -> None:
    [check] = [rest for word, rest in instructions() if word == "HEALTHCHECK"]
    command = json.loads(check.split(" CMD ", 1)[1])
    assert command[0] == "python"

    async def run(port: int) -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *command[1:],
            env={"BRIDGE_SERVER__PORT": str(port)},
            stderr=asyncio.subprocess.DEVNULL,  # the refused connection's traceback
        )
        return await asyncio.wait_for(proc.wait(), 30)

    assert client.server.port is not None
    assert await run(client.server.port) == 0
    assert await run(free_port()) != 0


def test_every_test_dependency_has_an_upper_bound() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    for requirement in pyproject["project"]["optional-dependencies"]["test"]:
        assert "<" in requirement, requirement
