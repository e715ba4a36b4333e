"""Serving the web client: the page with its security headers, versioned immutable assets,
/client.js for other front ends, conditional requests, and files read once at start-up."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from handlers.web import CSP, WebClient

PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def asset_paths(client: TestClient) -> list[str]:
    page = await (await client.get("/")).text()
    return re.findall(r'(?:href|src)="(/assets/[^"]+)"', page)


async def test_the_page_has_a_strict_policy_and_is_revalidated(client: TestClient) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    for name, value in PAGE_HEADERS.items():
        assert resp.headers[name] == value, name
    directives = resp.headers["Content-Security-Policy"].split("; ")
    policy = dict(part.split(" ", 1) for part in directives)
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'"  # no inline script, no eval, no other host
    assert policy["connect-src"] == "'self'"
    assert policy["img-src"] == "'self' blob: data:"
    assert policy["object-src"] == "'none'"
    assert policy["base-uri"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in resp.headers["Content-Security-Policy"]
    body = await resp.text()
    # Nothing inline for the policy to refuse, nothing from another host.
    assert "<script>" not in body and "<style" not in body and " style=" not in body
    assert "http://" not in body and "https://" not in body
    assert "{{assets}}" not in body


async def test_assets_are_versioned_and_immutable(client: TestClient) -> None:
    paths = await asset_paths(client)
    assert any(p.endswith("/app.js") for p in paths)
    assert any(p.endswith("/style.css") for p in paths)
    versions = {p.split("/")[2] for p in paths}
    assert len(versions) == 1 and re.fullmatch(r"[0-9a-f]{16}", versions.pop())
    for path in paths:
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        if path.endswith(".js"):
            assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
        if path.endswith(".css"):
            assert resp.headers["Content-Type"] == "text/css; charset=utf-8"


async def test_every_module_the_page_imports_is_served(client: TestClient) -> None:
    """Each relative import of each module resolves to a served asset (no build step checks
    this for us)."""
    [app_js] = [p for p in await asset_paths(client) if p.endswith("/app.js")]
    prefix = app_js.rsplit("/", 1)[0]
    seen: set[str] = set()
    todo = ["app.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        resp = await client.get(f"{prefix}/{name}")
        assert resp.status == 200, name
        source = await resp.text()
        todo += re.findall(r'from "\./([\w.-]+\.js)"', source)
    assert {"app.js", "client.js", "i18n.js", "dom.js", "messages.js", "composer.js"} <= seen


async def test_another_version_or_an_unknown_asset_is_404(client: TestClient) -> None:
    [css] = [p for p in await asset_paths(client) if p.endswith("/style.css")]
    assert (await client.get(css.replace(css.split("/")[2], "0" * 16))).status == 404
    assert (await client.get(css.replace("style.css", "nope.css"))).status == 404
    assert (await client.get(css.replace("style.css", "..%2F..%2Findex.html"))).status == 404
    resp = await client.get("/assets/x/../../pyproject.toml")
    assert resp.status == 404


async def test_client_js_is_the_same_module_revalidated_and_readable_cross_origin(
    client: TestClient,
) -> None:
    resp = await client.get("/client.js")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["Access-Control-Allow-Origin"] == "*"  # a module script elsewhere
    body = await resp.read()
    assert b"export class BridgeClient" in body
    assert not re.search(rb"^import ", body, re.M)  # self-contained: works on its own
    [versioned] = [p for p in await asset_paths(client) if p.endswith("/client.js")]
    assert await (await client.get(versioned)).read() == body


@pytest.mark.parametrize("path", ["/", "/client.js"])
async def test_a_known_version_gets_304(client: TestClient, path: str) -> None:
    first = await client.get(path)
    etag = first.headers["ETag"]
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status == 304
    assert again.headers["ETag"] == etag
    assert await again.read() == b""
    assert (await client.get(path, headers={"If-None-Match": f'W/{etag}, "x"'})).status == 304
    assert (await client.get(path, headers={"If-None-Match": '"stale"'})).status == 200


async def test_head_answers_without_a_body(client: TestClient) -> None:
    resp = await client.head("/")
    assert resp.status == 200
    assert resp.headers["Content-Security-Policy"] == CSP
    assert await resp.read() == b""


def test_files_are_read_once_at_start_up(tmp_path: Path) -> None:
    """The content hash follows the files' content; later changes on disk are not served."""
    root = tmp_path / "web"
    (root / "assets").mkdir(parents=True)
    packaged = resources.files("web")
    (root / "index.html").write_text((packaged / "index.html").read_text("utf-8"))
    for name in ("client.js", "style.css"):
        (root / "assets" / name).write_bytes((packaged / "assets" / name).read_bytes())
    first = WebClient(root)
    assert WebClient(root).version == first.version
    (root / "assets" / "style.css").write_text("body { color: red; }")
    assert first.assets["style.css"].body != b"body { color: red; }"
    changed = WebClient(root)
    assert changed.version != first.version
    assert changed.prefix in changed.page.body.decode()
