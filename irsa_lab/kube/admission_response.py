"""A webhook's answer, as the API server reads it (docs/reference/kubernetes.md §3.6, §3.7).

:func:`check_response` verifies the AdmissionReview that came back as the real server
does (uid, apiVersion and kind, patch and patchType together, Go's field types);
:func:`decode_patch` turns ``response.patch`` into RFC 6902 operations and
:func:`apply_patch` applies them to the object that was sent. Two ways to fail, each
its own error, because the API server treats them differently:

* :class:`CallError`: the webhook could not be called or answered unusably; its
  ``failurePolicy`` decides (``Ignore`` lets the pod through unmutated);
* :class:`PatchError`: a patch that decodes but does not apply; a 500 whatever the
  policy.
"""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer

from .admission_review import (
    PATCH_TYPE_JSON,
    REVIEW_KIND,
    AdmissionResponse,
    NotBase64,
    Obj,
    api_version,
    decode_patch_json,
)
from .store import copy_json

__all__ = ["CallError", "PatchError", "apply_patch", "check_response", "decode_patch"]


class CallError(Exception):
    """Raised when a webhook could not be called or answered unusably (failurePolicy applies)."""


class PatchError(Exception):
    """Raised when a decoded patch does not apply: a 500 whatever the failurePolicy."""


def check_response(body: Any, uid: str, version: str) -> AdmissionResponse:
    """Verify a webhook's answer as the real server does; raise :class:`CallError` otherwise."""
    if not isinstance(body, dict):
        raise CallError("received invalid webhook response: the body is not a JSON object")
    response = body.get("response")
    if not isinstance(response, dict):
        raise CallError("received invalid webhook response: webhook response was absent")
    if version == "v1":
        if response.get("uid") != uid:
            raise CallError(
                f"received invalid webhook response: expected response.uid="
                f'"{uid}", got "{response.get("uid", "")}"'
            )
        if body.get("apiVersion") != api_version("v1") or body.get("kind") != REVIEW_KIND:
            raise CallError(
                "received invalid webhook response: expected webhook response of "
                "admission.k8s.io/v1, Kind=AdmissionReview, got "
                f"{body.get('apiVersion', '')}, Kind={body.get('kind', '')}"
            )
        has_patch = bool(response.get("patch"))
        ptype = response.get("patchType")
        if has_patch and ptype is None:
            raise CallError(
                "received invalid webhook response: webhook returned "
                "response.patch but not response.patchType"
            )
        if ptype is not None and not has_patch:
            raise CallError(
                "received invalid webhook response: webhook returned "
                "response.patchType but not response.patch"
            )
        if ptype is not None and ptype != PATCH_TYPE_JSON:
            raise CallError(f'unsupported patch type "{ptype}"')
    if not isinstance(response.get("allowed"), bool):
        raise CallError("received invalid webhook response: response.allowed is not a boolean")
    if response.get("patch") is not None and not isinstance(response.get("patch"), str):
        raise CallError(
            "failed to call webhook: json: cannot unmarshal into Go struct field "
            "AdmissionResponse.response.patch of type []uint8"
        )
    # The server decodes the answer into Go types: a field of the wrong JSON type is an
    # unmarshal error, that is, a failed call.
    for field_name, go_type, ok in (
        ("warnings", "[]string", _is_list_of_str(response.get("warnings"))),
        ("auditAnnotations", "map[string]string", _is_str_map(response.get("auditAnnotations"))),
    ):
        if not ok:
            raise CallError(
                "failed to call webhook: json: cannot unmarshal into Go struct field "
                f"AdmissionResponse.response.{field_name} of type {go_type}"
            )
    return response  # type: ignore[return-value]


def _is_list_of_str(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _is_str_map(value: Any) -> bool:
    return value is None or (
        isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    )


def decode_patch(encoded: str) -> list[Obj]:
    """Base64 JSON to RFC 6902 operations; :class:`CallError` when it is not a patch."""
    try:
        ops = decode_patch_json(encoded)
    except NotBase64 as exc:
        raise CallError(f"failed to call webhook: illegal base64 data: {exc}") from None
    except ValueError as exc:  # JSON, or UTF-8 under it
        raise CallError(f"received undecodable patch in webhook response: {exc}") from None
    if not isinstance(ops, list) or not all(isinstance(o, dict) for o in ops):
        raise CallError(
            "received undecodable patch in webhook response: json: cannot "
            "unmarshal into Go value of type jsonpatch.Patch"
        )
    return ops


def apply_patch(obj: Obj, ops: list[Obj]) -> Obj:
    """Apply RFC 6902 operations (``add`` on an existing member replaces it); :class:`PatchError`."""
    try:
        # Applied in place on a copy (jsonpatch's own copy is a slower deepcopy).
        patched = jsonpatch.JsonPatch(ops).apply(copy_json(obj), in_place=True)
    except (
        jsonpatch.JsonPatchException,
        jsonpointer.JsonPointerException,
        KeyError,
        TypeError,
        ValueError,
        IndexError,
        AttributeError,
    ) as exc:
        raise PatchError(str(exc) or type(exc).__name__) from None
    if not isinstance(patched, dict):
        raise PatchError("the patched document is not an object")
    return patched
