"""The README's first screen works as written: its shell blocks before the first section
heading (the install, then the "try it" block), pasted into a fresh shell on a fresh copy of
the repository, install the service, start it, use it and stop it.

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
import subprocess
from pathlib import Path

from tests.bridge.test_cli import free_port
from tests.test_docs import repository_files

ROOT = Path(__file__).resolve().parent.parent
FIRST_SCREEN_TIMEOUT_S = 600
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)


def first_screen_blocks(readme: str) -> list[str]:
    head = readme.split("\n## ", 1)[0]
    return SH_BLOCK.findall(head)


def test_the_first_screen_has_the_install_and_a_try_it_block_that_waits_until_ready() -> None:
    install, try_it = first_screen_blocks((ROOT / "README.md").read_text("utf-8"))
    assert "pip install -e ." in install
    assert "/readyz" in try_it
    # The wait comes before the first request, which the service must be ready for.
    assert try_it.index("/readyz") < try_it.index("curl -X PUT")


def test_the_first_screen_runs_as_written_in_a_fresh_shell(tmp_path: Path) -> None:
    copy = tmp_path / "clone"
    for path in repository_files(ROOT):
        target = copy / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    port = free_port()
    script = "\n".join(first_screen_blocks((copy / "README.md").read_text("utf-8")))
    script = script.replace("localhost:8080", f"localhost:{port}")
    # A fresh shell: none of this process's settings (a venv's PATH, BRIDGE_* variables).
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "LANG": "C.UTF-8",
        "BRIDGE_SERVER__PORT": str(port),
        **{k: v for k, v in os.environ.items() if k.startswith(("PIP_", "http", "HTTP"))},
    }
    done = subprocess.run(
        ["bash", "-c", script],
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
