"""The TokenRequest operation: ``POST .../serviceaccounts/<name>/token`` (kubernetes.md §1.1).

The API server's side of a token: it checks the request (names, uids, expiration
bounds, the bound object), then the :class:`~irsa_lab.kube.tokens.TokenIssuer` signs.
The answer echoes ``spec`` and carries ``status.token`` and
``status.expirationTimestamp``, which follows ``spec.expirationSeconds`` even when
the JWT's ``exp`` was extended (§1.1 step 9).
"""

from __future__ import annotations

import time
from typing import Any

from ..clock import Clock, rfc3339
from ..trace import Trace
from .pod_rules import check_shape
from .status import bad_request, conflict, invalid, not_found, value_invalid
from .store import Store
from .tokens import TokenIssuer, expiration_problem

__all__ = ["AUTHENTICATION_GROUP", "TOKEN_REQUEST_SHAPE", "answer_token_request", "require_uid"]

Obj = dict[str, Any]
AUTHENTICATION_GROUP = "authentication.k8s.io"
TOKEN_REQUEST_SHAPE: dict[str, Any] = {
    "apiVersion": "str",
    "kind": "str",
    "metadata": {"name": "str", "namespace": "str", "uid": "str"},
    "spec": {
        "audiences": ["str"],
        "expirationSeconds": "int",
        "boundObjectRef": {"kind": "str", "apiVersion": "str", "name": "str", "uid": "str"},
    },
}


def require_uid(obj: Obj, uid: str | None, resource: str, name: str, why: str) -> str:
    """``obj``'s uid; a 409 Conflict saying ``why`` when ``uid`` is given and differs."""
    actual = str(obj["metadata"]["uid"])
    if uid and uid != actual:
        raise conflict(resource, name, why.format(given=uid, actual=actual))
    return actual


def _check_names(meta: Obj, namespace: str, sa_name: str) -> None:
    causes = [
        value_invalid(
            f"metadata.{key}", meta[key], f"must match the service account {key} if specified"
        )
        for key, want in (("name", sa_name), ("namespace", namespace))
        if meta.get(key) and meta[key] != want
    ]
    if causes:
        # The real server has already named the request after the ServiceAccount
        # in the URL, so the message quotes that name, not the mismatched one.
        raise invalid("TokenRequest", sa_name, causes, AUTHENTICATION_GROUP)


def _bound_pod(
    store: Store, namespace: str, sa_name: str, ref: Obj
) -> tuple[tuple[str, str], tuple[str, str] | None]:
    """(pod, node) (name, uid) pairs of a pod binding, checked as the real server does."""
    ref_name = ref.get("name") or ""
    pod = store.get("pods", namespace, ref_name)
    if pod is None:
        raise not_found("pods", ref_name)
    if (pod.get("spec") or {}).get("serviceAccountName") != sa_name:
        raise bad_request(
            f'cannot bind token for serviceaccount "{sa_name}" to '
            "pod running with different serviceaccount name."
        )
    # This conflict names the object by its Kind ("Pod"), not by its resource, as
    # the real server's message does.
    uid = require_uid(
        pod,
        ref.get("uid"),
        "Pod",
        ref_name,
        "the UID in the bound object reference ({given}) does not match the UID in "
        "record. The object might have been deleted and then recreated",
    )
    node_name = (pod.get("spec") or {}).get("nodeName")
    # No Node objects in the lab: only the name is embedded, as when the real server
    # cannot find the Node.
    return (ref_name, uid), ((node_name, "") if node_name else None)


def _binding(
    store: Store, namespace: str, sa_name: str, ref: Obj | None
) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
    if not ref:
        return None, None
    api_version = ref.get("apiVersion") or ""
    group = api_version.rpartition("/")[0] if "/" in api_version else ""
    kind = ref.get("kind") or ""
    if group == "" and kind == "Pod":
        return _bound_pod(store, namespace, sa_name, ref)
    if group == "" and kind in ("Secret", "Node"):
        raise not_found(kind.lower() + "s", ref.get("name") or "")
    raise bad_request(f"cannot bind token to object of type {api_version}, Kind={kind}")


def answer_token_request(
    store: Store,
    issuer: TokenIssuer,
    clock: Clock,
    trace: Trace,
    namespace: str,
    sa_name: str,
    body: Any,
) -> Obj:
    """Answer a TokenRequest for ``namespace/sa_name``; raises :class:`~.status.ApiError`."""
    started = time.perf_counter()
    req = check_shape(body if body is not None else {}, "TokenRequest", TOKEN_REQUEST_SHAPE)
    if not namespace:
        raise bad_request("namespace is required")
    meta = req.get("metadata") or {}
    spec = req.get("spec") or {}
    _check_names(meta, namespace, sa_name)
    sa = store.get("serviceaccounts", namespace, sa_name)
    if sa is None:
        raise not_found("serviceaccounts", sa_name)
    sa_uid = require_uid(
        sa,
        meta.get("uid"),
        "serviceaccounts",
        sa_name,
        "the UID in the token request ({given}) does not match the UID of the "
        "service account ({actual})",
    )
    audiences = list(spec.get("audiences") or issuer.api_audiences)
    expiration = int(spec.get("expirationSeconds") or 3600)
    problem = expiration_problem(expiration)
    if problem is not None:
        raise invalid(
            "TokenRequest",
            "",
            [value_invalid("spec.expirationSeconds", expiration, problem)],
            AUTHENTICATION_GROUP,
        )
    ref = spec.get("boundObjectRef")
    pod_ref, node_ref = _binding(store, namespace, sa_name, ref)
    issued = issuer.issue(
        namespace=namespace,
        service_account=(sa_name, sa_uid),
        audiences=audiences,
        expiration_seconds=expiration,
        pod=pod_ref,
        node=node_ref,
    )
    now = clock.now()
    trace.record(
        "kubelet" if pod_ref else "learner",
        "apiserver",
        "TokenRequest",
        "ok",
        duration_ms=(time.perf_counter() - started) * 1000,
        namespace=namespace,
        serviceaccount=sa_name,
        audiences=audiences,
        expirationSeconds=expiration,
        **({"pod": pod_ref[0]} if pod_ref else {}),
    )
    return {
        "kind": "TokenRequest",
        "apiVersion": f"{AUTHENTICATION_GROUP}/v1",
        "metadata": {
            "name": sa_name,
            "namespace": namespace,
            "uid": sa_uid,
            "creationTimestamp": rfc3339(now),
        },
        # boundObjectRef is a pointer without omitempty in the Go type: an unbound
        # request is echoed with "boundObjectRef": null.
        "spec": {
            "audiences": audiences,
            "expirationSeconds": expiration,
            "boundObjectRef": dict(ref) if ref else None,
        },
        # status.expirationTimestamp follows spec.expirationSeconds, never the
        # extended JWT exp (§1.1 step 9).
        "status": {
            "token": issued.token,
            "expirationTimestamp": rfc3339(int(now) + expiration),
        },
    }
