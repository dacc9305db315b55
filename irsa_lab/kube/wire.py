"""The API stand-in's wire formats: request bodies in, JSON responses and headers out.

docs/reference/kubernetes.md §4 and §6.1. What a body may be (JSON, YAML, the three
patch types, Kubernetes protobuf as kubectl sends it), how a response is
written (compact JSON, ``Cache-Control: no-cache, private``, kind/apiVersion/metadata
first), how webhook warnings become ``Warning`` headers, and RFC 7386 merge patch. No
routing and no operation lives here: :mod:`irsa_lab.kube.routes` calls these.
"""

from __future__ import annotations

import copy
import json
import unicodedata
from typing import Any

from .. import web
from .discovery import Resource
from .status import ApiError, bad_request, unsupported_media_type

__all__ = [
    "API_CACHE_CONTROL",
    "DISCOVERY_CACHE_CONTROL",
    "JSON_TYPES",
    "MAX_BODY",
    "PATCH_TYPES",
    "PROTOBUF",
    "SYSTEM_META",
    "check_kind",
    "content_type",
    "decode_protobuf",
    "decode_token_request_protobuf",
    "json_response",
    "merge_patch",
    "ordered",
    "read_body",
    "status_response",
    "warning_header",
    "warning_value",
]

Obj = dict[str, Any]

MAX_BODY = 3 * 1024 * 1024  # the real server's limit for a request body
# What the real server sends on every API response; the discovery documents, meant
# to be cached, say DISCOVERY_CACHE_CONTROL instead.
API_CACHE_CONTROL = "no-cache, private"
DISCOVERY_CACHE_CONTROL = "public, max-age=3600"
PROTOBUF = "application/vnd.kubernetes.protobuf"
JSON_TYPES = ("application/json", "")
# Metadata the server sets: never taken from a request body.
SYSTEM_META = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "selfLink",
)
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


# --- responses --------------------------------------------------------------------------


def ordered(obj: Obj, res: Resource) -> Obj:
    """``obj`` led by kind/apiVersion/metadata, as the real server writes objects."""
    head = {"kind": res.kind, "apiVersion": res.api_version, "metadata": obj.get("metadata", {})}
    return {**head, **{k: v for k, v in obj.items() if k not in head}}


def json_response(
    obj: Any,
    status: int = 200,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Compact JSON, as every JSON body the real server writes."""
    return web.Response(
        body=json.dumps(obj, separators=(",", ":")).encode(),
        status=status,
        content_type=content_type,
        headers={"Cache-Control": API_CACHE_CONTROL, **(headers or {})},
    )


def status_response(err: ApiError) -> web.Response:
    """The one place an :class:`ApiError` becomes a ``Status`` response."""
    return json_response(err.status(), err.code, headers=err.headers)


def warning_value(text: str) -> str:
    """One ``Warning: 299 - "..."`` value: quotes and backslashes escaped, and control
    characters (a webhook may send any) turned into spaces so the header stays one line."""
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def warning_header(warnings: list[str]) -> dict[str, str]:
    """The ``Warning`` header carrying ``warnings`` (none when there are none)."""
    return {"Warning": ", ".join(warning_value(w) for w in warnings)} if warnings else {}


# --- request bodies ----------------------------------------------------------------------


def content_type(request: web.Request) -> str:
    """The request's media type, "" when it sent no ``Content-Type``."""
    return request.content_type if request.headers.get("Content-Type") else ""


async def read_body(request: web.Request, *, patch: bool = False, protobuf: bool = False) -> Any:
    """The decoded body: JSON, YAML or Kubernetes protobuf (any kind the compiled
    definitions carry, :mod:`irsa_lab.kube.protobuf`), or a patch document when
    ``patch``. 400/415 otherwise. (``protobuf`` is accepted for older callers.)"""
    del protobuf
    ctype = content_type(request)
    raw = await request.read()
    if ctype == PROTOBUF and not patch:
        from .protobuf import expected_kind

        return decode_protobuf(raw, expected_kind(request.path))
    if patch:
        if ctype not in PATCH_TYPES:
            raise unsupported_media_type(
                "application/json-patch+json, "
                "application/merge-patch+json, "
                "application/apply-patch+yaml"
            )
    elif ctype not in JSON_TYPES + ("application/yaml", "*/*"):
        raise unsupported_media_type(f"application/json, application/yaml, {PROTOBUF}")
    if not raw.strip():
        raise bad_request("empty patch" if patch else "the request body is empty")
    if ctype == "application/yaml":
        import yaml  # rare (kubectl sends JSON), so not loaded with the API server

        try:
            return yaml.safe_load(raw)
        except (ValueError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None


def check_kind(body: Any, res: Resource) -> None:
    """Refuse a body whose kind or apiVersion is not ``res``'s (omitting them is fine:
    the Python client does)."""
    if not isinstance(body, dict):
        return
    kind, version = body.get("kind"), body.get("apiVersion")
    if (kind not in (None, "", res.kind)) or (version not in (None, "", res.api_version)):
        raise bad_request(
            f"the API version in the data ({version}) does not match the "
            f"expected API version ({res.api_version})"
            if kind in (None, "", res.kind)
            else f'{kind} in version "{version}" cannot be handled as a '
            f'{res.kind}: no kind "{kind}" is registered for the expected '
            f"type {res.kind}"
        )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also used for strategic merge on the lab's kinds)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


# --- protobuf ----------------------------------------------------------------------------------


def decode_protobuf(raw: bytes, kind: str = "") -> Obj:
    """A body sent as ``application/vnd.kubernetes.protobuf`` (kubectl's typed requests)
    to an endpoint expecting ``kind``, as the JSON dict the store keeps; 400 when it
    cannot be read."""
    # google.protobuf is loaded on the first protobuf body, not at start-up.
    from .protobuf import ProtobufError, codec, error_message

    try:
        return codec().decode(raw)
    except ProtobufError as exc:
        raise bad_request(error_message(exc, raw, kind)) from None


def decode_token_request_protobuf(raw: bytes) -> Obj:
    """A TokenRequest sent as protobuf (``kubectl create token``): :func:`decode_protobuf`."""
    return decode_protobuf(raw, "TokenRequest")
