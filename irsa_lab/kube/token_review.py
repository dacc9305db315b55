"""The TokenReview operation: ``POST /apis/authentication.k8s.io/v1/tokenreviews``.

docs/reference/kubernetes.md §2.5.

Who is this token? The server runs the token through the same authenticators as a
bearer token (:mod:`irsa_lab.kube.authn`), with the audiences of ``spec.audiences``,
or the API audiences (``--api-audiences``) when the request names none. The answer is
not stored: it echoes ``metadata`` (a TokenReview is cluster-scoped: no namespace)
and ``spec`` (``audiences`` left out when empty), and its ``status`` says either
``authenticated: true`` with the ``user`` and the ``audiences`` the token matched, or
an empty ``user`` and the ``error`` (for a token whose pod is gone,
``[invalid bearer token, service account token has been invalidated]``).

A real server caches a successful answer for 10 s, so a review made within 10 s of a
success still succeeds after the pod is deleted; the stand-in answers afresh each time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .authn import Authenticated, AuthenticationError
from .pod_rules import check_shape
from .status import bad_request
from .wire import SYSTEM_META

__all__ = ["TOKEN_REVIEW_SHAPE", "Authenticate", "review_token"]

Obj = dict[str, Any]
# (token, the audiences asked for or None) -> who it is, or AuthenticationError.
Authenticate = Callable[[str, Sequence[str] | None], Authenticated]
TOKEN_REVIEW_SHAPE: dict[str, Any] = {
    "apiVersion": "str",
    "kind": "str",
    "metadata": {"name": "str", "generateName": "str", "labels": "map", "annotations": "map"},
    "spec": {"token": "str", "audiences": ["str"]},
}
# Set by the server, never echoed from a request (and a TokenReview has no namespace).
_DROPPED_META = ("namespace", *SYSTEM_META)


def review_token(body: Any, authenticate: Authenticate) -> Obj:
    """Answer a TokenReview ``body`` with ``authenticate``; 400 without ``spec.token``."""
    req = check_shape(body, "TokenReview", TOKEN_REVIEW_SHAPE)
    spec = req.get("spec") or {}
    token = spec.get("token") or ""
    if not token:
        raise bad_request("token is required for TokenReview in authentication")
    audiences = list(spec.get("audiences") or [])
    status: Obj
    try:
        who = authenticate(token, audiences or None)
    except AuthenticationError as err:
        status = {"user": {}, "error": err.review_error}
    else:
        status = {"authenticated": True, "user": dict(who.user), "audiences": who.audiences}
    meta = {k: v for k, v in (req.get("metadata") or {}).items() if k not in _DROPPED_META}
    echoed: Obj = {"token": token}
    if audiences:
        echoed["audiences"] = audiences
    return {
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": meta,
        "spec": echoed,
        "status": status,
    }
