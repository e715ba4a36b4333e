"""The README's first screen works as written: its shell blocks before the first section
heading - the command that installs and runs the service, the test command, and the "try it"
block - pasted into a fresh shell on a fresh copy of the repository, install the service, start
it, use it and stop it. (The test command is what CI runs; running it here would run this test
inside itself.)

Nothing is faked: the copy gets its own virtual environment and a real ``pip install -e .``
(about 20 s here, from pip's cache). Two things differ from a reader's machine, both outside
the README's text: the port (another test run may hold 8080, so the service is told another
one with ``BRIDGE_SERVER__PORT`` and the URLs are rewritten to it) and the time limit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.bridge.test_cli import free_port
from tests.test_docs import repository_files

pytestmark = pytest.mark.one_database

ROOT = Path(__file__).resolve().parent.parent
FIRST_SCREEN_TIMEOUT_S = 600
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)


def first_screen_blocks(readme: str) -> list[str]:
    head = readme.split("\n## ", 1)[0]
    return SH_BLOCK.findall(head)


def test_the_first_screen_has_the_two_commands_then_a_try_it_block_that_waits() -> None:
    serve, tests, try_it = first_screen_blocks((ROOT / "README.md").read_text("utf-8"))
    assert serve.strip() == (
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/pachca-bridge serve"
    )
    assert tests.strip() == (
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && .venv/bin/pytest"
    )
    # The wait comes before the first request, which the service must be ready for.
    assert try_it.index("/readyz") < try_it.index("curl -X PUT")


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError("the service did not become ready")


def test_the_first_screen_runs_as_written_in_a_fresh_shell(tmp_path: Path) -> None:
    copy = tmp_path / "clone"
    for path in repository_files(ROOT):
        target = copy / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    port = free_port()
    serve, _tests, try_it = first_screen_blocks((copy / "README.md").read_text("utf-8"))
    try_it = try_it.replace("localhost:8080", f"localhost:{port}")
    # A fresh shell: none of this process's settings (a venv's PATH, BRIDGE_* variables).
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "BRIDGE_SERVER__PORT": str(port),
        **{k: v for k, v in os.environ.items() if k.startswith(("PIP_", "http", "HTTP"))},
    }
    # The first command installs and serves in the foreground: run it until it is ready,
    # then stop it as Ctrl-C would.
    log = tmp_path / "first-command.log"
    with log.open("w") as out:
        first = subprocess.Popen(
            ["bash", "-c", serve],
            cwd=copy,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_ready(port, first, log, FIRST_SCREEN_TIMEOUT_S)
        finally:
            os.killpg(first.pid, signal.SIGINT)
            first.wait(timeout=30)
    done = subprocess.run(
        ["bash", "-c", try_it],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=FIRST_SCREEN_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # The last curl prints the student's chats: the one the enrollment created.
    chats = json.loads('{"chats"' + done.stdout.rsplit('{"chats"', 1)[1])
    [chat] = chats["chats"]
    assert chat["enrollment_id"] == "e1" and chat["type"] == "forum_subject"
    assert {p["id"] for p in chat["participants"]} == {"s1", "t1"}
    assert (copy / "bridge.db").exists()
