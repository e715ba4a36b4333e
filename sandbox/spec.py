"""Pachca's own OpenAPI description, and validation of documents against it.

`pachca_openapi.yaml` beside this file is the spec Pachca publishes (MIT licensed; see
`pachca_openapi.LICENSE`). Everything the sandbox accepts and sends is checked against it:

    spec_errors("/components/schemas/Message", message)       # [] when valid
    spec_errors(pointer, body, strict=True)                    # unknown fields are errors too
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from typing import Any

import yaml
from jsonschema import FormatChecker
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

SPEC_PATH = resources.files("sandbox") / "pachca_openapi.yaml"
_SPEC_URI = "urn:pachca-openapi"
_STRICT_SPEC_URI = "urn:pachca-openapi-strict"

Json = dict[str, Any]


@functools.cache
def load_spec() -> Json:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C loader is 20x faster
    with SPEC_PATH.open(encoding="utf-8") as f:
        return yaml.load(f, Loader=loader)


def _forbid_unknown_fields(node: Any) -> None:
    """Close every plain object schema, in place, so unknown request fields are reported."""
    if isinstance(node, dict):
        composed = any(k in node for k in ("allOf", "anyOf", "oneOf"))
        if "properties" in node and "additionalProperties" not in node and not composed:
            node["additionalProperties"] = False
        for value in node.values():
            _forbid_unknown_fields(value)
    elif isinstance(node, list):
        for value in node:
            _forbid_unknown_fields(value)


def _let_null_through_allof(node: Any) -> None:
    """Rewrite `{nullable: true, allOf: [X]}` in place to accept null.

    The spec writes "X or null" that way (Message.forwarding, MessageWebhookPayload.thread...),
    but under OAS 3.0.3 `nullable` does not reach into allOf, so a validator rejects the null
    that the real API sends.
    """
    if isinstance(node, dict):
        if node.get("nullable") is True and "allOf" in node:
            all_of = node.pop("allOf")
            node["anyOf"] = [{"enum": [None], "nullable": True}, {"allOf": all_of}]
        for value in node.values():
            _let_null_through_allof(value)
    elif isinstance(node, list):
        for value in node:
            _let_null_through_allof(value)


@functools.cache
def _registry() -> Registry:
    spec = copy.deepcopy(load_spec())
    _let_null_through_allof(spec)
    strict = copy.deepcopy(spec)
    _forbid_unknown_fields(strict)
    return Registry().with_resources(
        [
            (_SPEC_URI, Resource.from_contents(spec, default_specification=DRAFT4)),
            (_STRICT_SPEC_URI, Resource.from_contents(strict, default_specification=DRAFT4)),
        ]
    )


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    checker.checkers.update(oas30_format_checker.checkers)
    # The spec types thread chat ids as int64 (its example is 2637266155) but every field that
    # takes a chat id (entity_id, /chats/{id}) as int32; the real server accepts them, so int32
    # is checked as int64 to avoid false violations.
    checker.checkers["int32"] = oas30_format_checker.checkers["int64"]
    return checker


@functools.cache
def _validator(pointer: str, strict: bool) -> OAS30Validator:
    uri = _STRICT_SPEC_URI if strict else _SPEC_URI
    return OAS30Validator(
        {"$ref": f"{uri}#{pointer}"}, registry=_registry(), format_checker=_format_checker()
    )


def spec_errors(pointer: str, instance: Any, *, strict: bool = False) -> list[str]:
    """Errors of `instance` against the spec node at JSON pointer `pointer`, e.g.
    "/components/schemas/Message"; [] when valid. `strict` also rejects unknown fields."""
    errors = _validator(pointer, strict).iter_errors(instance)
    return sorted(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" if e.absolute_path else e.message
        for e in errors
    )


def schema_errors(name: str, instance: Any, *, strict: bool = False) -> list[str]:
    """`spec_errors` for a schema of `components.schemas`, by name."""
    return spec_errors(f"/components/schemas/{name}", instance, strict=strict)


def pointer(*parts: str) -> str:
    """A JSON pointer to the spec node at `parts` (escaped), e.g. pointer("paths", "/uploads")."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)
