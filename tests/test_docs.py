"""The repository documents itself (docs/README.md): no file refers to reference files kept
outside it, and every relative link in its Markdown leads to a file, and a heading, that exists.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Built from pieces, so that this file does not match its own patterns. Pachca's real API base
# URL (pachca.api_url) has a path segment of that name right after /api/: that is a URL, not a
# reference to a folder outside.
OUTSIDE_REFERENCE = re.compile(
    "|".join(
        (
            r"(?<!api/)" + "sha" + "red/",  # a folder of that name beside or above the repository
            r"\b" + "CONT" + r"RACT\b",  # the external contract, by name or section
            r"\b" + "DES" + r"IGN\b",  # the design notes
        )
    )
)
SKIPPED_DIRS = {"__pycache__", "node_modules"}

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target "title") and ![alt](target); the text may hold one level of brackets.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|^//")


def repository_files(root: Path) -> list[Path]:
    """The files of the repository: git's (tracked, and new ones not ignored), else a walk."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return sorted(_walk(root))
    paths = {root / name for name in listed.decode().split("\0") if name}
    return sorted(p for p in paths if p.is_file())


def _walk(root: Path) -> Iterator[Path]:
    for path in root.iterdir():
        if path.name.startswith(".") or path.name in SKIPPED_DIRS:
            continue
        if path.is_dir():
            if not path.name.endswith(".egg-info"):
                yield from _walk(path)
        elif path.is_file():
            yield path


def text_of(path: Path) -> str | None:
    """The file's text, or None for a binary file (a screenshot, a database)."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def outside_references(root: Path, files: Iterable[Path]) -> list[str]:
    found = []
    for path in files:
        # Third-party license texts are quoted verbatim (MIT speaks of "an action of contract").
        text = None if "LICENSE" in path.name else text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_REFERENCE.search(line):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def prose_lines(text: str) -> Iterator[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def anchors(text: str) -> set[str]:
    """The ids GitHub gives the headings of a Markdown text: lower case, punctuation dropped
    (letters, digits, ``_`` and ``-`` stay), spaces made hyphens; repeats get -1, -2..."""
    seen: dict[str, int] = {}
    ids = set()
    for line in prose_lines(text):
        match = HEADING.match(line)
        if match is None:
            continue
        title = match.group(2).replace("`", "")
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link keeps its text
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def links(text: str) -> Iterator[str]:
    for line in prose_lines(text):
        line = INLINE_CODE.sub("", line)
        for match in INLINE_LINK.finditer(line):
            yield match.group(1)
        match = REFERENCE_LINK.match(line)
        if match is not None:
            yield match.group(1)


def broken_links(root: Path, markdown_files: Iterable[Path]) -> list[str]:
    """Relative links that lead outside the repository, to no file, or to no heading."""
    broken = []
    for path in markdown_files:
        text = path.read_text(encoding="utf-8")
        for target in links(text):
            if SCHEME.match(target):
                continue  # https:, mailto: and the like: not ours to check here
            where, _, fragment = target.partition("#")
            goal = (path.parent / where).resolve() if where else path
            problem = None
            if not goal.is_relative_to(root):
                problem = "leads outside the repository"
            elif not goal.exists():
                problem = "no such file"
            elif fragment and goal.suffix == ".md" and fragment not in anchors(goal.read_text()):
                problem = f"no heading #{fragment} in {goal.relative_to(root)}"
            if problem is not None:
                broken.append(f"{path.relative_to(root)}: ({target}) {problem}")
    return broken


@pytest.fixture(scope="module")
def files() -> list[Path]:
    return repository_files(ROOT)


def test_nothing_refers_to_reference_files_outside_the_repository(files: list[Path]) -> None:
    assert files, "found no files to check"
    assert outside_references(ROOT, files) == []


def test_relative_links_in_markdown_lead_to_files_and_headings_that_exist(
    files: list[Path],
) -> None:
    markdown = [p for p in files if p.suffix == ".md"]
    assert ROOT / "README.md" in markdown and ROOT / "docs" / "README.md" in markdown
    assert broken_links(ROOT, markdown) == []


def test_the_reference_pages_are_there_and_linked_from_the_readme() -> None:
    pages = ["api.md", "websocket.md", "configuration.md", "operations.md", "pachca.md"]
    index = (ROOT / "docs" / "README.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in pages:
        assert (ROOT / "docs" / page).is_file()
        assert f"]({page})" in index
        assert f"](docs/{page})" in readme


def test_the_checks_catch_what_they_look_for(tmp_path: Path) -> None:
    """Each check finds a planted fault, so the tests above cannot pass by seeing nothing."""
    outside = "../" + "sha" + "red/" + "CONT" + "RACT.md"
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Second `part`\n")
    pachca_url = "https://api.pachca.com/api/" + "sha" + "red/v1"
    (tmp_path / "notes.py").write_text(f'"""See {outside}."""\nURL = "{pachca_url}"\n')
    (tmp_path / "README.md").write_text(
        f"[outside]({outside})\n"
        "[fine](docs/page.md#second-part) [also fine](#top) [web](https://example.org/none)\n"
        "[missing](docs/nope.md) [no heading](docs/page.md#third)\n"
        "```\n[in code](docs/nope.md)\n```\n"
        "# Top\n"
    )
    files = sorted(_walk(tmp_path))

    found = outside_references(tmp_path, files)
    # The reference in each file, and not Pachca's URL on the second line of notes.py.
    assert sorted(line.split(": ")[0] for line in found) == ["README.md:1", "notes.py:1"]
    assert broken_links(tmp_path, [tmp_path / "README.md"]) == [
        f"README.md: ({outside}) leads outside the repository",
        "README.md: (docs/nope.md) no such file",
        "README.md: (docs/page.md#third) no heading #third in docs/page.md",
    ]
