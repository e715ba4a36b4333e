"""The file storage behind Pachca's uploads, imitated: the S3 bucket that `POST /uploads` signs
for, its browser-style POST upload (`direct_url`), and presigned download links.

What the real bucket checks, this one checks too, with S3's own error answers (XML):
- the form is `multipart/form-data` and holds every field `POST /uploads` gave, each once and
  unchanged, and nothing else (no `direct_url`); fields after the `file` part are ignored, as
  S3 ignores them, so a field sent after the file counts as missing;
- `x-amz-signature` signs `policy`, and the policy has not expired (403);
- `key` starts with the issued prefix; a literal `${filename}` left in it is replaced by the file
  part's filename, as S3 does.
Objects live in memory. Download links carry an expiry and a signature over the key; a changed
or expired link is refused with 403.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from aiohttp import BodyPartReader, web

from sandbox.faults import FormPart
from sandbox.spec import pointer, spec_errors

FILENAME_PLACEHOLDER = "${filename}"
# The fields POST /uploads hands out and the form must send back (FileUploadRequest less file).
SIGNED_FIELDS = (
    "Content-Disposition",
    "acl",
    "policy",
    "x-amz-credential",
    "x-amz-algorithm",
    "x-amz-date",
    "x-amz-signature",
    "key",
)
FORM_SCHEMA = pointer(
    "paths", "/direct_url", "post", "requestBody", "content", "multipart/form-data", "schema"
)
MAX_FIELD_BYTES = 64 * 1024
DOWNLOAD_TTL_S = 7 * 24 * 3600  # Pachca's file links live about a week
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class StoredObject:
    key: str
    data: bytes
    content_type: str
    filename: str


@dataclass(frozen=True)
class NewFile:
    """A file a person attaches to a message in the app."""

    name: str
    data: bytes
    content_type: str = "application/octet-stream"
    width: int | None = None
    height: int | None = None


@dataclass
class _Issued:
    prefix: str  # the key up to `${filename}`
    fields: dict[str, str]
    expires_at: float


class UploadRefused(Exception):
    """A form the bucket refuses: `status`, S3's error `code` and `message`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.problems: list[str] = []  # the form's violations of the spec, if any

    def response(self) -> web.Response:
        return s3_error(self.status, self.code, self.message)


_FILE_TOO_LARGE = (400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
_FIELD_TOO_LARGE = (
    400,
    "MaxPostPreDataLengthExceeded",
    "Your POST request fields preceeding the upload file were too large.",
)


async def _read_part(part: BodyPartReader, cap: int, too_large: tuple[int, str, str]) -> bytes:
    """A part's bytes, refused (S3's answer `too_large`) past `cap` without reading on."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > cap:
            raise UploadRefused(*too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def s3_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


class ObjectStore:
    def __init__(
        self,
        *,
        company_id: int = 1,
        upload_ttl_s: float = 3600.0,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.objects: dict[str, StoredObject] = {}
        self.upload_ttl_s = upload_ttl_s
        self.download_ttl_s: float = DOWNLOAD_TTL_S
        self.max_bytes = max_bytes
        self._company_id = company_id
        self._secret = secrets.token_bytes(32)
        self._issued: dict[str, _Issued] = {}  # by policy
        self._refuse_uploads = 0  # direct uploads still to refuse as expired

    # --- POST /uploads ----------------------------------------------------------------------

    def issue(self, direct_url: str) -> dict[str, str]:
        """Fresh UploadParams: a key with `${filename}`, a policy and its signature."""
        now = time.time()
        prefix = f"attaches/files/{self._company_id}/{uuid.uuid4()}/"
        amz_date = datetime.fromtimestamp(now, UTC).strftime(_AMZ_DATE)
        credential = f"sandbox/{amz_date[:8]}/ru-1/s3/aws4_request"
        expires_at = now + self.upload_ttl_s
        conditions: list[Any] = [
            {"bucket": "sandbox-uploads"},
            ["starts-with", "$key", prefix],
            {"Content-Disposition": "attachment"},
            {"acl": "private"},
            {"x-amz-credential": credential},
            {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
            {"x-amz-date": amz_date},
        ]
        expiration = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        document = {"expiration": expiration, "conditions": conditions}
        policy = base64.b64encode(json.dumps(document).encode()).decode()
        fields = {
            "Content-Disposition": "attachment",
            "acl": "private",
            "policy": policy,
            "x-amz-credential": credential,
            "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-date": amz_date,
            "x-amz-signature": self._sign(policy),
            "key": prefix + FILENAME_PLACEHOLDER,
        }
        self._issued[policy] = _Issued(prefix, fields, expires_at)
        return {**fields, "direct_url": direct_url}

    def expire_uploads(self) -> None:
        """Every upload signature given out so far expires now (the next direct upload with
        one of them gets 403, as after a long wait)."""
        for issued in self._issued.values():
            issued.expires_at = 0.0

    def refuse_next_upload(self, n: int = 1) -> None:
        """The next `n` direct uploads get 403 "Policy expired" whatever they send."""
        self._refuse_uploads += n

    # --- the direct upload ------------------------------------------------------------------

    async def receive(self, request: web.Request, parts: list[FormPart]) -> tuple[str, list[str]]:
        """Read the upload form, appending each part to `parts`; store the file. Returns the
        stored key and the form's violations of the spec (reported, not refused: S3 answers
        for itself). Raises UploadRefused."""
        if request.content_type != "multipart/form-data":
            refused = UploadRefused(
                412,
                "PreconditionFailed",
                "Bucket POST must be of the enclosure-type multipart/form-data",
            )
            refused.problems = [f"Content-Type {request.content_type!r} is not multipart/form-data"]
            raise refused
        fields: dict[str, str] = {}
        problems: list[str] = []
        duplicates: list[str] = []
        upload: tuple[str, bytes, str] | None = None
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise UploadRefused(400, "MalformedPOSTRequest", "Nested multipart is not valid")
            name = part.name or ""
            if upload is not None:  # S3 ignores whatever follows the file
                await part.release()
                parts.append(FormPart(name, None))
                problems.append(f"part {name!r} after the file part (ignored)")
                continue
            if name == "file":
                body = await _read_part(part, self.max_bytes, _FILE_TOO_LARGE)
                filename = part.filename or ""
                content_type = part.headers.get("Content-Type", "application/octet-stream")
                upload = (filename, body, content_type)
                parts.append(FormPart(name, None, filename=filename, size=len(body)))
                continue
            value = (await _read_part(part, MAX_FIELD_BYTES, _FIELD_TOO_LARGE)).decode(
                "utf-8", "replace"
            )
            parts.append(FormPart(name, value))
            if name in fields:
                duplicates.append(name)
                problems.append(f"field {name!r} sent twice")
            fields.setdefault(name, value)
        spec_form = {**fields, "file": "(binary)"} if upload else fields
        problems += spec_errors(FORM_SCHEMA, spec_form, strict=True)
        try:
            if upload is None:
                raise UploadRefused(
                    400, "InvalidArgument", "POST requires exactly one file upload per request."
                )
            if duplicates:
                raise UploadRefused(400, "InvalidArgument", f"Duplicate field: {duplicates[0]}")
            key = self._check(fields, upload[0])
        except UploadRefused as refused:
            refused.problems = problems
            raise
        filename, body, content_type = upload
        self.objects[key] = StoredObject(key, body, content_type, filename)
        return key, problems

    def _check(self, fields: dict[str, str], filename: str) -> str:
        """The policy checks S3 makes; the key to store the file under."""
        for name in ("key", "policy", "x-amz-signature"):
            if name not in fields:
                raise UploadRefused(
                    400, "InvalidArgument", f"Bucket POST must contain a field named '{name}'."
                )
        if self._refuse_uploads > 0:
            self._refuse_uploads -= 1
            raise UploadRefused(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        policy = fields["policy"]
        if not hmac.compare_digest(self._sign(policy), fields["x-amz-signature"]):
            raise UploadRefused(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        issued = self._issued.get(policy)
        if issued is None:
            raise UploadRefused(403, "AccessDenied", "Invalid Policy: Invalid JSON.")
        if time.time() > issued.expires_at:
            raise UploadRefused(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
        extra = sorted(set(fields) - set(SIGNED_FIELDS))
        if extra:
            raise UploadRefused(
                403,
                "AccessDenied",
                "Invalid according to Policy: Extra input fields: " + ", ".join(extra),
            )
        for name in SIGNED_FIELDS:
            if name != "key" and fields.get(name) != issued.fields[name]:  # missing or changed
                raise UploadRefused(
                    403,
                    "AccessDenied",
                    f"Invalid according to Policy: Policy Condition failed: "
                    f'["eq", "${name}", "{issued.fields[name]}"]',
                )
        key = fields["key"]
        if not key.startswith(issued.prefix):
            raise UploadRefused(
                403,
                "AccessDenied",
                "Invalid according to Policy: Policy Condition failed: "
                f'["starts-with", "$key", "{issued.prefix}"]',
            )
        key = key.replace(FILENAME_PLACEHOLDER, filename)
        if key == issued.prefix or "/" in key.removeprefix(issued.prefix):
            raise UploadRefused(400, "InvalidArgument", "The key has no file name.")
        return key

    def _sign(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()

    # --- downloads --------------------------------------------------------------------------

    def put(self, filename: str, data: bytes, content_type: str) -> StoredObject:
        """Store a file as if uploaded (a person's upload in the app); returns the object."""
        safe_name = filename.replace("/", "_") or "file"
        key = f"attaches/files/{self._company_id}/{uuid.uuid4()}/{safe_name}"
        stored = StoredObject(key, data, content_type, filename)
        self.objects[key] = stored
        return stored

    def presigned_url(self, origin: str, key: str) -> str:
        """A download link for `key` on the sandbox at `origin`, valid `download_ttl_s`."""
        amz_date = datetime.now(UTC).strftime(_AMZ_DATE)
        expires = str(int(self.download_ttl_s))
        signature = self._sign(f"{key}\n{amz_date}\n{expires}")
        query = (
            "response-content-disposition=attachment&X-Amz-Algorithm=AWS4-HMAC-SHA256"
            f"&X-Amz-Date={amz_date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host"
            f"&X-Amz-Signature={signature}"
        )
        return f"{origin}/{quote(key)}?{query}"

    def download(self, key: str, query: Any) -> web.Response:
        """The answer to GET on a presigned link."""
        amz_date = query.get("X-Amz-Date", "")
        expires = query.get("X-Amz-Expires", "")
        given = query.get("X-Amz-Signature", "")
        if not hmac.compare_digest(self._sign(f"{key}\n{amz_date}\n{expires}"), given):
            return s3_error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        signed_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC).timestamp()
        if time.time() > signed_at + int(expires):
            return s3_error(403, "AccessDenied", "Request has expired")
        stored = self.objects.get(key)
        if stored is None:
            return s3_error(404, "NoSuchKey", "The specified key does not exist.")
        disposition = f"attachment; filename*=UTF-8''{quote(stored.filename)}"
        return web.Response(
            body=stored.data,
            headers={"Content-Type": stored.content_type, "Content-Disposition": disposition},
        )
