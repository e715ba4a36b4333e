"""Signed file links: bound to the file and the expiry, refused once changed, expired, or
signed under a JWT key no longer in force."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from bridge.auth import Tokens
from bridge.config import LiveConfig, parse_config
from bridge.forum.file_links import FileLinks

SECRET = "a-jwt-secret-of-at-least-32-bytes-long"


def links_at(
    now: list[float], secret: str = SECRET, ttl: int = 600
) -> tuple[FileLinks, LiveConfig]:
    live = LiveConfig(parse_config({"auth": {"jwt_secret": secret}, "files": {"url_ttl_s": ttl}}))
    return FileLinks(live, Tokens(live, ""), clock=lambda: now[0]), live


def parts(url: str) -> tuple[str, str, str]:
    path, query = urlsplit(url).path, dict(parse_qsl(urlsplit(url).query))
    return path.split("/")[4], query["expires"], query["signature"]


def test_a_link_works_until_it_expires() -> None:
    now = [1_000_000.0]
    links, _ = links_at(now)
    file_id, expires, signature = parts(links.url("f" * 32))
    assert file_id == "f" * 32 and int(expires) == 1_000_600
    assert links.valid(file_id, expires, signature)
    now[0] = 1_000_599.0
    assert links.valid(file_id, expires, signature)
    now[0] = 1_000_600.0
    assert not links.valid(file_id, expires, signature)


def test_changed_parts_are_refused() -> None:
    now = [1_000_000.0]
    links, _ = links_at(now)
    file_id, expires, signature = parts(links.url("a" * 32))
    assert not links.valid("b" * 32, expires, signature)
    assert not links.valid(file_id, str(int(expires) + 1), signature)
    assert not links.valid(
        file_id, expires, signature[:-1] + ("0" if signature[-1] != "0" else "1")
    )
    assert not links.valid(file_id, expires, signature.upper())
    assert not links.valid(file_id, "-5", signature)
    assert not links.valid(file_id, "1e9", signature)
    assert not links.valid(file_id, expires, "")
    assert not links.valid(file_id, expires, "подпись")


def test_a_new_jwt_key_ends_the_links_given_out() -> None:
    now = [1_000_000.0]
    links, live = links_at(now)
    file_id, expires, signature = parts(links.url("c" * 32))
    live.current = parse_config(
        {
            "auth": {"jwt_secret": "another-jwt-secret-of-32-bytes-or-more"},
            "files": {"url_ttl_s": 600},
        }
    )
    assert not links.valid(file_id, expires, signature)
