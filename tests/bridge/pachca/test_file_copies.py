"""The pure parts of copying Pachca's files: which links may be fetched, and the names and
types the copies get."""

from __future__ import annotations

import pytest

from bot.models import PachcaFile
from bridge.pachca.file_copies import fetchable, guess_type, safe_name


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        (
            "https://pachca-prod-uploads.s3.storage.selcloud.ru/attaches/a.png?X-Amz-Signature=1",
            True,
        ),
        ("http://127.0.0.1:8123/attaches/a.png", True),
        ("http://localhost/a.png", True),
        ("http://169.254.169.254/latest/meta-data/", False),
        ("http://files.example/a.png", False),
        ("file:///etc/passwd", False),
        ("ftp://example/a.png", False),
        ("/relative/a.png", False),
    ],
)
def test_only_https_links_or_loopback_ones_are_fetched(url: str, ok: bool) -> None:
    assert fetchable(url) is ok


def test_names_lose_path_separators_and_control_characters() -> None:
    assert safe_name("../../etc/passwd") == ".._.._etc_passwd"
    assert safe_name("a\\b\x00c\nd.pdf") == "a_b_c_d.pdf"
    assert safe_name("") == "file"
    assert len(safe_name("я" * 300)) == 255


def test_types_are_guessed_from_the_name() -> None:
    def file(name: str) -> PachcaFile:
        return PachcaFile(id=1, key="k", name=name, file_type="file", url="https://x/y")

    assert guess_type(file("photo.JPG")) == "image/jpeg"
    assert guess_type(file("work.pdf")) == "application/pdf"
    assert guess_type(file("no-extension")) == "application/octet-stream"
