"""The ``admission.k8s.io`` AdmissionReview, the one wire type both ends of a webhook call share.

The API server builds the request half (docs/reference/kubernetes.md §3.5) and reads
the response half back (§3.6); the pod identity webhook reads the request and writes
the response (docs/reference/webhook.md §2.5, §6.1). Both sides take their types and
builders from here, spelled with the wire's own camelCase field names, so the code
reads beside ``kubectl get -o yaml``:

* :class:`AdmissionReview` is the envelope both ways, :class:`AdmissionRequest` and
  :class:`AdmissionResponse` its halves, :class:`Status` the ``metav1.Status`` of a
  denial;
* :func:`pod_create_review` (the API server's side) is the review for a pod CREATE;
  :func:`pod_create_request` wraps any object as is (for probes that send what a real
  API server would never send);
* :func:`allowed_response`, :func:`denied_response` and :func:`review_answer` (the
  webhook's side) write the answer, with :func:`encode_patch` for ``response.patch``;
  :func:`decode_patch_json` reads it back.

Pure data and the standard library only: importing this module loads no HTTP client.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any, Required, TypedDict

from .store import copy_json

__all__ = [
    "API_GROUP",
    "KNOWN_REVIEW_VERSIONS",
    "PATCH_TYPE_JSON",
    "REVIEW_KIND",
    "AdmissionRequest",
    "AdmissionResponse",
    "AdmissionReview",
    "NotBase64",
    "GroupVersionKind",
    "GroupVersionResource",
    "Obj",
    "Status",
    "UserInfo",
    "allowed_response",
    "api_version",
    "decode_patch_json",
    "denied_response",
    "encode_patch",
    "pod_create_request",
    "pod_create_review",
    "review_answer",
]

Obj = dict[str, Any]

API_GROUP = "admission.k8s.io"
REVIEW_KIND = "AdmissionReview"
# The versions a webhook may list in admissionReviewVersions; the API server sends
# the first it knows (§3.2).
KNOWN_REVIEW_VERSIONS = ("v1", "v1beta1")
# The only patchType Kubernetes accepts (§3.6).
PATCH_TYPE_JSON = "JSONPatch"


class GroupVersionKind(TypedDict):
    """``{"group": "", "version": "v1", "kind": "Pod"}``."""

    group: str
    version: str
    kind: str


class GroupVersionResource(TypedDict):
    """``{"group": "", "version": "v1", "resource": "pods"}``."""

    group: str
    version: str
    resource: str


class UserInfo(TypedDict, total=False):
    """Who made the request, as the webhook sees it."""

    username: str
    uid: str
    groups: list[str]
    extra: dict[str, list[str]]


class AdmissionRequest(TypedDict, total=False):
    """``AdmissionReview.request`` for a CREATE (kubernetes.md §3.5)."""

    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    requestKind: GroupVersionKind
    requestResource: GroupVersionResource
    name: str
    namespace: str
    operation: str
    userInfo: UserInfo
    object: Any
    oldObject: Obj | None
    dryRun: bool
    options: Obj


class Status(TypedDict, total=False):
    """The ``metav1.Status`` of a denial; the pod identity webhook fills only ``message``."""

    metadata: Obj
    status: str
    message: str
    reason: str
    details: Obj
    code: int


class AdmissionResponse(TypedDict, total=False):
    """``AdmissionReview.response`` (kubernetes.md §3.6): ``uid`` and ``allowed`` always."""

    uid: Required[str]
    allowed: Required[bool]
    status: Status
    patch: str  # base64 of the JSON of RFC 6902 operations
    patchType: str
    warnings: list[str]
    auditAnnotations: dict[str, str]


class AdmissionReview(TypedDict, total=False):
    """The envelope both ways: ``request`` from the API server, ``response`` back."""

    apiVersion: str
    kind: str
    request: AdmissionRequest
    response: AdmissionResponse


def api_version(version: str = "v1") -> str:
    """``admission.k8s.io/<version>``."""
    return f"{API_GROUP}/{version}"


# --- the API server's side: the request ---------------------------------------------------

_POD_GVK: GroupVersionKind = {"group": "", "version": "v1", "kind": "Pod"}
_POD_GVR: GroupVersionResource = {"group": "", "version": "v1", "resource": "pods"}


def pod_create_request(
    uid: str, obj: Any, namespace: str, user: UserInfo, *, name: str | None = None
) -> AdmissionRequest:
    """``request`` of the review for a pod CREATE, carrying ``obj`` as it is given.

    ``name`` is omitted when ``None`` (a pod created with ``generateName``).
    """
    request: AdmissionRequest = {
        "uid": uid,
        "kind": GroupVersionKind(**_POD_GVK),
        "resource": GroupVersionResource(**_POD_GVR),
        "requestKind": GroupVersionKind(**_POD_GVK),
        "requestResource": GroupVersionResource(**_POD_GVR),
    }
    if name is not None:
        request["name"] = name
    request.update(
        {
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": user,
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        }
    )
    return request


def pod_create_review(
    uid: str, pod: Obj, namespace: str, user: UserInfo, version: str = "v1"
) -> AdmissionReview:
    """The AdmissionReview the API server sends for a pod CREATE (kubernetes.md §3.5).

    The pod is copied and shown as the server holds it before storing: in the
    request's namespace, with no uid yet, a null ``creationTimestamp`` and
    ``apiVersion``/``kind`` first. ``name`` is omitted when generateName is used.
    """
    obj = copy_json(pod)
    meta = obj.setdefault("metadata", {})
    meta["namespace"] = namespace
    meta.pop("uid", None)
    meta["creationTimestamp"] = None
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        **{k: v for k, v in obj.items() if k not in ("apiVersion", "kind")},
    }
    return {
        "apiVersion": api_version(version),
        "kind": REVIEW_KIND,
        "request": pod_create_request(uid, obj, namespace, user, name=meta.get("name") or None),
    }


# --- the webhook's side: the response -----------------------------------------------------


def encode_patch(ops: Sequence[Mapping[str, Any]]) -> str:
    """``response.patch``: the compact JSON of RFC 6902 operations, base64 encoded."""
    raw = json.dumps(list(ops), separators=(",", ":")).encode()
    return base64.b64encode(raw).decode()


class NotBase64(ValueError):
    """Raised when ``response.patch`` is not standard base64."""


def decode_patch_json(encoded: str) -> Any:
    """The inverse of :func:`encode_patch`: the JSON value ``response.patch`` carries.

    Raises :class:`NotBase64` when it is not base64, ``ValueError`` when the bytes are
    not JSON. Whether the value is a list of operations is the reader's to check.
    """
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise NotBase64(str(exc)) from None
    return json.loads(raw)


def allowed_response(
    uid: str, patch: Sequence[Mapping[str, Any]] | None = None
) -> AdmissionResponse:
    """``allowed: true``, with the patch and ``patchType: JSONPatch`` when there is one."""
    response: AdmissionResponse = {"uid": uid, "allowed": True}
    if patch:
        response["patch"] = encode_patch(patch)
        response["patchType"] = PATCH_TYPE_JSON
    return response


def denied_response(uid: str, message: str) -> AdmissionResponse:
    """``allowed: false`` with only ``status.message``, as the pod identity webhook denies
    (webhook.md §6.1: no code, no reason; the API server then answers 403)."""
    return {"uid": uid, "allowed": False, "status": {"metadata": {}, "message": message}}


def review_answer(echo: Mapping[str, str], response: AdmissionResponse) -> AdmissionReview:
    """The answer's envelope: ``apiVersion`` and ``kind`` echoed from the request, if it
    had them, then ``response``."""
    answer: AdmissionReview = {}
    if "apiVersion" in echo:
        answer["apiVersion"] = echo["apiVersion"]
    if "kind" in echo:
        answer["kind"] = echo["kind"]
    answer["response"] = response
    return answer
