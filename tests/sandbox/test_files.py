"""Files in the sandbox, as in Pachca: POST /uploads, the bucket's direct upload (checked the
way S3 checks a POST policy), `files` in POST /messages, and presigned downloads that can fail,
hang or send more than the file."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from sandbox.pachca import DIRECT_UPLOAD_PATH, DIRECT_URL, PachcaSandbox
from sandbox.spec import schema_errors
from sandbox.storage import NewFile
from tests.sandbox.conftest import CHANNEL, TEACHER, open_thread

PNG = b"\x89PNG\r\n\x1a\n" + b"pixels" * 100
Part = tuple[str, str | tuple[str, bytes, str]]


def multipart(parts: list[Part]) -> tuple[bytes, str]:
    """A multipart/form-data body with the parts exactly in this order."""
    boundary = uuid.uuid4().hex
    chunks: list[bytes] = []
    for name, value in parts:
        chunks.append(f"--{boundary}\r\n".encode())
        if isinstance(value, tuple):
            filename, data, content_type = value
            chunks.append(
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: {content_type}\r\n\r\n".encode()
            )
            chunks.append(data)
        else:
            chunks.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
            chunks.append(value.encode())
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def form(params: dict[str, str], filename: str, data: bytes = PNG) -> list[Part]:
    """The form as the FACTS say: every field as given (not direct_url), key's ${filename}
    replaced, the file last."""
    fields: list[Part] = [
        (k, v.replace("${filename}", filename) if k == "key" else v)
        for k, v in params.items()
        if k != "direct_url"
    ]
    return [*fields, ("file", (filename, data, "image/png"))]


async def direct_upload(url: str, parts: list[Part]) -> httpx.Response:
    body, content_type = multipart(parts)
    async with httpx.AsyncClient(timeout=10) as client:  # no Authorization: the bucket's own
        return await client.post(url, content=body, headers={"Content-Type": content_type})


async def upload_params(raw: httpx.AsyncClient) -> dict[str, str]:
    resp = await raw.post("/uploads")
    assert resp.status_code == 201, resp.text
    return resp.json()


async def uploaded_key(raw: httpx.AsyncClient, filename: str, data: bytes = PNG) -> str:
    params = await upload_params(raw)
    resp = await direct_upload(params["direct_url"], form(params, filename, data))
    assert resp.status_code == 204, resp.text
    return params["key"].replace("${filename}", filename)


# --- the happy path -------------------------------------------------------------------------


async def test_upload_then_post_then_download(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    params = await upload_params(raw)
    assert schema_errors("UploadParams", params) == []
    assert params["key"].endswith("/${filename}")
    assert params["direct_url"] == f"{sandbox.origin}{DIRECT_UPLOAD_PATH}"

    upload = await direct_upload(params["direct_url"], form(params, "work.png"))
    assert (upload.status_code, upload.content) == (204, b"")
    key = params["key"].replace("${filename}", "work.png")
    assert sandbox.store.objects[key].data == PNG
    [recorded] = sandbox.requests_to("POST", DIRECT_URL)
    assert [p.name for p in recorded.form] == [*list(params)[:-1], "file"]
    assert (recorded.form[-1].filename, recorded.form[-1].size) == ("work.png", len(PNG))
    assert "Authorization" not in recorded.headers

    thread = await open_thread(raw, TEACHER)
    file = {"key": key, "name": "work.png", "file_type": "image", "size": len(PNG)}
    body = {
        "message": {
            "entity_type": "thread",
            "entity_id": thread["id"],
            "content": "",
            "files": [{**file, "width": 40, "height": 30}],
        }
    }
    created = await raw.post("/messages", json=body)
    assert created.status_code == 201, created.text
    message_id = created.json()["data"]["id"]

    fetched = (await raw.get(f"/messages/{message_id}")).json()["data"]
    [attached] = fetched["files"]
    assert schema_errors("Message", fetched) == []
    assert (attached["key"], attached["name"], attached["file_type"]) == (key, "work.png", "image")
    assert (attached["width"], attached["height"]) == (40, 30)
    assert urlsplit(attached["url"]).netloc == urlsplit(sandbox.origin or "").netloc

    async with httpx.AsyncClient(timeout=10) as anyone:  # a presigned link needs no token
        download = await anyone.get(attached["url"])
    assert download.status_code == 200
    assert download.content == PNG
    assert download.headers["Content-Type"] == "image/png"
    assert sandbox.violations == []


async def test_a_literal_filename_placeholder_is_replaced_as_s3_does(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    params = await upload_params(raw)
    parts = [(k, v) for k, v in params.items() if k != "direct_url"]
    parts.append(("file", ("scan.pdf", b"%PDF", "application/pdf")))

    resp = await direct_upload(params["direct_url"], parts)  # type: ignore[arg-type]

    assert resp.status_code == 204
    assert params["key"].replace("${filename}", "scan.pdf") in sandbox.store.objects


async def test_a_file_a_person_sends_can_be_read_and_downloaded(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    thread = await open_thread(raw, TEACHER)
    sent = sandbox.post_as_user(
        TEACHER,
        entity_type="thread",
        entity_id=thread["id"],
        content="",
        files=[NewFile("answer.txt", b"corrected", "text/plain")],
    )

    fetched = (await raw.get(f"/messages/{sent['id']}")).json()["data"]
    [file] = fetched["files"]
    assert file["file_type"] == "file"
    assert sandbox.webhook_payload(sent["id"])["content"] == ""  # a webhook carries no files
    async with httpx.AsyncClient(timeout=10) as anyone:
        assert (await anyone.get(file["url"])).content == b"corrected"


# --- what the bucket refuses ----------------------------------------------------------------


async def test_sending_direct_url_back_is_an_extra_field(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    params = await upload_params(raw)
    parts = [("direct_url", params["direct_url"]), *form(params, "a.png")]

    resp = await direct_upload(params["direct_url"], parts)

    assert resp.status_code == 403
    assert b"Extra input fields: direct_url" in resp.content
    assert sandbox.store.objects == {}
    [violation] = sandbox.violations
    assert violation.path == DIRECT_URL
    assert any("direct_url" in e for e in violation.errors)


async def test_a_field_after_the_file_is_ignored_so_it_is_missing(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    params = await upload_params(raw)
    parts = form(params, "a.png")
    acl = next(p for p in parts if p[0] == "acl")
    parts.remove(acl)
    parts.append(acl)  # after the file

    resp = await direct_upload(params["direct_url"], parts)

    assert resp.status_code == 403
    assert b"Policy Condition failed" in resp.content
    assert sandbox.store.objects == {}
    [violation] = sandbox.violations
    assert any("after the file" in e for e in violation.errors), violation.errors


@pytest.mark.parametrize(
    ("change", "status", "answer"),
    [
        ({"acl": "public-read"}, 403, b"Policy Condition failed"),
        ({"x-amz-signature": "0" * 64}, 403, b"SignatureDoesNotMatch"),
        ({"key": "attaches/files/other/a.png"}, 403, b"starts-with"),
    ],
)
async def test_a_changed_field_is_refused(
    sandbox: PachcaSandbox,
    raw: httpx.AsyncClient,
    change: dict[str, str],
    status: int,
    answer: bytes,
) -> None:
    params = await upload_params(raw)
    parts = [(k, change.get(k, v)) for k, v in form(params, "a.png")]

    resp = await direct_upload(params["direct_url"], parts)  # type: ignore[arg-type]

    assert resp.status_code == status
    assert answer in resp.content
    assert sandbox.store.objects == {}


async def test_a_missing_field_or_file(sandbox: PachcaSandbox, raw: httpx.AsyncClient) -> None:
    params = await upload_params(raw)
    without_key = [p for p in form(params, "a.png") if p[0] != "key"]
    without_file = form(params, "a.png")[:-1]

    no_key = await direct_upload(params["direct_url"], without_key)
    no_file = await direct_upload(params["direct_url"], without_file)

    assert (no_key.status_code, no_file.status_code) == (400, 400)
    assert b"must contain a field named 'key'" in no_key.content
    assert sandbox.store.objects == {}
    assert [len(v.errors) > 0 for v in sandbox.violations] == [True, True]


async def test_an_expired_signature_is_403_until_params_are_asked_again(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    params = await upload_params(raw)
    sandbox.store.expire_uploads()

    expired = await direct_upload(params["direct_url"], form(params, "a.png"))
    fresh = await upload_params(raw)
    sandbox.store.refuse_next_upload()
    refused = await direct_upload(fresh["direct_url"], form(fresh, "a.png"))
    accepted = await direct_upload(fresh["direct_url"], form(fresh, "a.png"))

    assert (expired.status_code, refused.status_code, accepted.status_code) == (403, 403, 204)
    assert b"Policy expired" in expired.content
    assert sandbox.violations == []  # a valid form; the bucket said no


async def test_upload_faults(sandbox: PachcaSandbox, raw: httpx.AsyncClient) -> None:
    params = await upload_params(raw)
    sandbox.fail_next(status=503, path=DIRECT_URL)

    failed = await direct_upload(params["direct_url"], form(params, "a.png"))
    again = await direct_upload(params["direct_url"], form(params, "a.png"))

    assert (failed.status_code, again.status_code) == (503, 204)
    assert len(sandbox.store.objects) == 1


async def test_files_in_a_message_must_be_uploaded_and_named_alike(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    key = await uploaded_key(raw, "photo.png")

    def post(file: dict[str, Any]) -> Any:
        return raw.post(
            "/messages",
            json={"message": {"entity_id": CHANNEL, "content": "", "files": [file]}},
        )

    unknown = await post({"key": key + "x", "name": "photo.png", "file_type": "image", "size": 1})
    renamed = await post({"key": key, "name": "photo.jpg", "file_type": "image", "size": 1})
    no_size = await post({"key": key, "name": "photo.png", "file_type": "image"})

    assert unknown.status_code == 422
    assert (renamed.status_code, renamed.json()["errors"][0]["code"]) == (422, "wrong_params")
    assert no_size.status_code == 400
    assert [v.path for v in sandbox.violations] == ["/messages"]  # the missing size only
    assert sandbox.messages == {}


# --- downloads that go wrong ----------------------------------------------------------------


async def file_url(sandbox: PachcaSandbox, raw: httpx.AsyncClient) -> str:
    thread = await open_thread(raw, TEACHER)
    sent = sandbox.post_as_user(
        TEACHER,
        entity_type="thread",
        entity_id=thread["id"],
        content="",
        files=[NewFile("big.bin", b"0123456789", "application/octet-stream")],
    )
    return str((await raw.get(f"/messages/{sent['id']}")).json()["data"]["files"][0]["url"])


async def test_a_changed_or_expired_link_is_403(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    url = await file_url(sandbox, raw)
    async with httpx.AsyncClient(timeout=10) as anyone:
        tampered = await anyone.get(url.replace("big.bin", "other.bin"))
        sandbox.store.download_ttl_s = -60  # links signed from now on are already stale
        stale = await anyone.get(await file_url(sandbox, raw))

    assert (tampered.status_code, stale.status_code) == (403, 403)
    assert b"Request has expired" in stale.content


async def test_downloads_fail_hang_or_send_too_much(
    sandbox: PachcaSandbox, raw: httpx.AsyncClient
) -> None:
    url = await file_url(sandbox, raw)
    sandbox.fail_next(status=502, path="/attaches/*")
    sandbox.hang_next(seconds=30, path="/attaches/*")
    sandbox.oversize_next(size=300_000)

    async with httpx.AsyncClient(timeout=10) as anyone:
        failed = await anyone.get(url)
        with pytest.raises(httpx.ReadTimeout):
            await anyone.get(url, timeout=0.3)
        oversized = await anyone.get(url)
        normal = await anyone.get(url)

    assert failed.status_code == 502
    assert oversized.status_code == 200
    assert "Content-Length" not in oversized.headers
    assert len(oversized.content) >= 300_000
    assert oversized.content.startswith(b"0123456789")
    assert normal.content == b"0123456789"
    assert [r.path.startswith("/attaches/") for r in sandbox.requests_to("GET", "/attaches/*")] == [
        True
    ] * 4
