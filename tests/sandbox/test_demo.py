"""`pachca-bridge demo` as a person runs it: a subprocess on free ports, both links opened in
Chromium, a reply written as the teacher on the sandbox page reaching the student's page (and
the student's answer reaching the thread), then Ctrl-C: exit 0, nothing left behind.

Every step is bounded: reading the links by LINKS_S, each browser step by STEP_MS, the exit by
EXIT_S, the whole test by TEST_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from bridge import cli
from bridge.config import parse_config
from sandbox.demo import demo_config
from sandbox.pachca import PachcaSandbox
from tests.web.conftest import STEP_MS

pytestmark = pytest.mark.one_database

LINKS_S = 60.0
EXIT_S = 30.0
TEST_S = 150.0
STUDENT_LINK = re.compile(r"^\s+(http://127\.0\.0\.1:\d+/#token=\S+)$")
TEACHER_LINK = re.compile(r"^\s+(http://127\.0\.0\.1:\d+/#as=\d+)$")


class Demo:
    """The `demo` command in a child process, its output read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        assert process.stderr is not None
        self._stderr = asyncio.create_task(self._drain(process.stderr, self.stderr))

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, into: list[str]) -> None:
        while line := await stream.readline():
            into.append(line.decode())

    async def links(self) -> tuple[str, str]:
        """The student's and the teacher's link, as printed."""
        assert self.process.stdout is not None
        student = teacher = None
        async with asyncio.timeout(LINKS_S):
            while student is None or teacher is None:
                line = (await self.process.stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"demo ended early: {''.join(self.stderr)}")
                self.stdout.append(line)
                if found := STUDENT_LINK.match(line):
                    student = found.group(1)
                if found := TEACHER_LINK.match(line):
                    teacher = found.group(1)
        return student, teacher

    async def interrupt(self) -> int:
        """Ctrl-C, and the exit code."""
        self.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(EXIT_S):
            assert self.process.stdout is not None
            self.stdout += [line.decode() async for line in self.process.stdout]
            await self._stderr
            return await self.process.wait()

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self._stderr.cancel()


@pytest.fixture
def workdirs(tmp_path: Path) -> tuple[Path, Path]:
    """The demo's working directory and its TMPDIR, both empty."""
    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    return cwd, tmp


async def start_demo(cwd: Path, tmp: Path) -> Demo:
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    # --port 0: the system picks free ports for the service and the sandbox; the links say which.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "demo",
        "--port",
        "0",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return Demo(process)


async def open_tab(browser: Browser, url: str) -> tuple[Page, list[str]]:
    context = await browser.new_context(locale="en-US", viewport={"width": 1100, "height": 720})
    context.set_default_timeout(STEP_MS)
    page = await context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type in ("error", "assert") else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(url)
    return page, errors


async def test_the_demo_end_to_end(browser: Browser, workdirs: tuple[Path, Path]) -> None:
    cwd, tmp = workdirs
    demo = await start_demo(cwd, tmp)
    try:
        async with asyncio.timeout(TEST_S):
            student_link, teacher_link = await demo.links()
            assert any("Ctrl-C" in line for line in demo.stdout)
            assert len(list(tmp.iterdir())) == 1  # the demo's own folder, while it runs

            student, student_errors = await open_tab(browser, student_link)
            teacher, teacher_errors = await open_tab(browser, teacher_link)

            # The student's chat, with the first question the demo posted.
            await student.locator(".chat-item", has_text="Mathematics").first.click()
            question = "Hello! I am stuck on exercise 3: where do I start?"
            await expect(student.get_by_text(question, exact=True)).to_be_visible()

            # The teacher's thread in the sandbox: the question as the bridge relayed it.
            relayed = teacher.locator("#messages > li", has=teacher.get_by_text(question))
            await expect(relayed.locator(".msg-author")).to_have_text("Sam Student")

            # A reply in "Pachca" reaches the student's page as a signed webhook...
            answer = "Start from definition 2.1."
            await teacher.locator("#composer-input").fill(answer)
            await teacher.locator("#composer-input").press("Enter")
            await expect(student.get_by_text(answer, exact=True)).to_be_visible()

            # ...and the student's answer reaches the thread.
            await student.locator("#composer-input").fill("Thank you!")
            await student.locator("#composer-input").press("Enter")
            await expect(teacher.get_by_text("Thank you!", exact=True)).to_be_visible()

            # Reactions both ways: the teacher's 👍 in "Pachca" shows under the student's
            # message; the student's 🎉 (from the page's picker) is held by the bot on the
            # teacher's message in the thread.
            thanks = teacher.locator("#messages > li", has=teacher.get_by_text("Thank you!"))
            await thanks.get_by_role("button", name="React with 👍").click()
            own = student.locator("#message-list > li", has=student.get_by_text("Thank you!"))
            await expect(own.locator(".msg-reactions li")).to_have_text(["👍 1"])
            mine = student.locator("#message-list > li", has=student.get_by_text(answer))
            await mine.get_by_role("button", name="React").click()
            await mine.get_by_role("button", name="React with 🎉").click()
            await expect(mine.locator(".msg-reactions li.mine")).to_have_text("🎉 1")
            replied = teacher.locator("#messages > li", has=teacher.get_by_text(answer))
            await expect(replied.locator(".reaction")).to_have_text(["🎉 1"])
            assert student_errors == []
            assert teacher_errors == []
            await student.context.close()
            await teacher.context.close()

            code = await demo.interrupt()
    finally:
        await demo.kill()

    assert code == 0, "".join(demo.stderr)
    assert list(tmp.iterdir()) == []  # the temporary database and its folder are gone
    assert list(cwd.iterdir()) == []  # and nothing was written where it ran


async def test_a_busy_port_is_an_error_and_leaves_nothing(workdirs: tuple[Path, Path]) -> None:
    cwd, tmp = workdirs
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        env = {**os.environ, "TMPDIR": str(tmp)}
        async with asyncio.timeout(LINKS_S):
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge", "demo", "--port", str(port),
                cwd=cwd, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await process.communicate()
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()

    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err.decode()
    assert out == b""
    assert list(tmp.iterdir()) == []
    assert list(cwd.iterdir()) == []


def test_a_port_out_of_range_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["demo", "--port", "70000"])

    assert exited.value.code == 2
    assert "a port is 0..65535" in capsys.readouterr().err


async def test_the_environment_cannot_point_the_demo_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRIDGE_DATABASE__URL", "postgresql+asyncpg://prod@db:5432/bridge")
    monkeypatch.setenv("BRIDGE_FEED__BACKEND", "redis")
    monkeypatch.setenv("BRIDGE_FEED__URL", "redis://prod:6379/0")
    monkeypatch.setenv("BRIDGE_PACHCA__TOKEN", "the-real-bot-token")
    monkeypatch.setenv("BRIDGE_LIMITS__POSTS_PER_MINUTE", "7")
    base = parse_config({})  # the environment applies, as load_config applies it
    sandbox = PachcaSandbox(token="sandbox-token", signing_secret="sandbox-secret")
    await sandbox.start()
    try:
        config = demo_config(base, tmp_path, 0, sandbox)
    finally:
        await sandbox.stop()

    assert base.database.url.startswith("postgresql")  # what a real run would have used
    assert config.database.url == f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"
    assert config.feed.backend == "memory"
    assert config.pachca.token.get_secret_value() == "sandbox-token"
    assert config.pachca.api_url == sandbox.base_url
    assert config.pachca.signing_secrets == ["sandbox-secret"]
    assert config.limits.posts_per_minute == 7  # the rest of the config is the user's
    assert len(config.auth.service_tokens) == 1
    assert len(config.auth.jwt_secret.get_secret_value()) >= 32
