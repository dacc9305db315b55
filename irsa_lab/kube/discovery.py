"""What kubectl reads before it acts: API discovery, ``/version`` and server-side tables.

kubectl 1.32 asks ``/api`` and ``/apis`` for aggregated discovery first; a server that
answers with plain ``application/json`` is read as legacy discovery, so the lab serves
only the legacy documents (``APIVersions``, ``APIGroupList``, ``APIResourceList``).
``kubectl get`` asks for a ``Table``; :func:`table` builds one with the same columns
the real server prints for the kinds the lab serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..constants import KUBERNETES_VERSION

__all__ = [
    "CORE_RESOURCES",
    "DEPLOYMENTS",
    "EVENTS",
    "EVENTS_V1",
    "GROUP_RESOURCES",
    "NAMESPACES",
    "PODS",
    "REPLICASETS",
    "SELF_SUBJECT_ACCESS_REVIEWS",
    "SELF_SUBJECT_REVIEWS",
    "SERVICEACCOUNTS",
    "TOKEN_REVIEWS",
    "WEBHOOKS",
    "api_group",
    "api_groups",
    "api_versions",
    "core_resources",
    "group_resources",
    "human_age",
    "Obj",
    "openapi_v3_document",
    "openapi_v3_root",
    "Resource",
    "table",
    "version_info",
]

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    """One resource the stand-in serves, with what discovery says about it."""

    name: str
    singular: str
    kind: str
    group: str
    version: str
    namespaced: bool
    verbs: tuple[str, ...]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = field(default=())

    @property
    def api_version(self) -> str:
        """``v1`` or ``group/version``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        """``PodList`` etc."""
        return self.kind + "List"

    def discovery_entry(self) -> Obj:
        """The ``APIResource`` entry of an ``APIResourceList``."""
        entry: Obj = {
            "name": self.name,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": list(self.verbs),
        }
        if self.short_names:
            entry["shortNames"] = list(self.short_names)
        if self.categories:
            entry["categories"] = list(self.categories)
        return entry


_CRUD = ("create", "delete", "get", "list", "patch", "update", "watch")
NAMESPACES = Resource("namespaces", "namespace", "Namespace", "", "v1", False, _CRUD, ("ns",))
SERVICEACCOUNTS = Resource(
    "serviceaccounts", "serviceaccount", "ServiceAccount", "", "v1", True, _CRUD, ("sa",)
)
PODS = Resource("pods", "pod", "Pod", "", "v1", True, _CRUD, ("po",), ("all",))
EVENTS = Resource("events", "event", "Event", "", "v1", True, ("get", "list", "watch"), ("ev",))
WEBHOOKS = Resource(
    "mutatingwebhookconfigurations",
    "mutatingwebhookconfiguration",
    "MutatingWebhookConfiguration",
    "admissionregistration.k8s.io",
    "v1",
    False,
    _CRUD,
    ("mwc",),
    ("api-extensions",),
)
SELF_SUBJECT_REVIEWS = Resource(
    "selfsubjectreviews",
    "selfsubjectreview",
    "SelfSubjectReview",
    "authentication.k8s.io",
    "v1",
    False,
    ("create",),
)
TOKEN_REVIEWS = Resource(
    "tokenreviews",
    "tokenreview",
    "TokenReview",
    "authentication.k8s.io",
    "v1",
    False,
    ("create",),
)
EVENTS_V1 = Resource(
    "events", "event", "Event", "events.k8s.io", "v1", True, ("get", "list", "watch"), ("ev",)
)

# Workloads (irsa_lab.kube.workloads) and kubectl auth can-i.
DEPLOYMENTS = Resource(
    "deployments", "deployment", "Deployment", "apps", "v1", True, _CRUD, ("deploy",), ("all",)
)
REPLICASETS = Resource(
    "replicasets", "replicaset", "ReplicaSet", "apps", "v1", True, _CRUD, ("rs",), ("all",)
)
SELF_SUBJECT_ACCESS_REVIEWS = Resource(
    "selfsubjectaccessreviews",
    "selfsubjectaccessreview",
    "SelfSubjectAccessReview",
    "authorization.k8s.io",
    "v1",
    False,
    ("create",),
)

CORE_RESOURCES = (NAMESPACES, SERVICEACCOUNTS, PODS, EVENTS)
GROUP_RESOURCES: dict[str, tuple[Resource, ...]] = {
    "admissionregistration.k8s.io/v1": (WEBHOOKS,),
    "apps/v1": (DEPLOYMENTS, REPLICASETS),
    "authentication.k8s.io/v1": (SELF_SUBJECT_REVIEWS, TOKEN_REVIEWS),
    "authorization.k8s.io/v1": (SELF_SUBJECT_ACCESS_REVIEWS,),
    "events.k8s.io/v1": (EVENTS_V1,),
}


def version_info() -> Obj:
    """The ``/version`` body."""
    return {
        "major": KUBERNETES_VERSION["major"],
        "minor": KUBERNETES_VERSION["minor"],
        "gitVersion": KUBERNETES_VERSION["gitVersion"],
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-03-27T14:00:00Z",
        "goVersion": "go1.23.8",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> Obj:
    """The ``/api`` body (``APIVersions``)."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def core_resources() -> Obj:
    """The ``/api/v1`` body; ``serviceaccounts/token`` appears as a subresource."""
    entries = [r.discovery_entry() for r in CORE_RESOURCES]
    entries.insert(
        3,
        {
            "name": "serviceaccounts/token",
            "singularName": "",
            "namespaced": True,
            "group": "authentication.k8s.io",
            "version": "v1",
            "kind": "TokenRequest",
            "verbs": ["create"],
        },
    )
    return {"kind": "APIResourceList", "groupVersion": "v1", "resources": entries}


def api_groups() -> Obj:
    """The ``/apis`` body (``APIGroupList``)."""
    groups = []
    for gv in GROUP_RESOURCES:
        name, _, version = gv.partition("/")
        ref = {"groupVersion": gv, "version": version}
        groups.append({"name": name, "versions": [ref], "preferredVersion": ref})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(group: str) -> Obj | None:
    """The ``/apis/<group>`` body (``APIGroup``), or None."""
    for gv in GROUP_RESOURCES:
        name, _, version = gv.partition("/")
        if name == group:
            ref = {"groupVersion": gv, "version": version}
            return {
                "kind": "APIGroup",
                "apiVersion": "v1",
                "name": name,
                "versions": [ref],
                "preferredVersion": ref,
            }
    return None


def group_resources(group_version: str) -> Obj | None:
    """The ``/apis/<group>/<version>`` body, or None."""
    if group_version not in GROUP_RESOURCES:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [r.discovery_entry() for r in GROUP_RESOURCES[group_version]],
    }


# --- tables for kubectl get ------------------------------------------------------------


def human_age(seconds: float) -> str:
    """kubectl's short duration: ``45s``, ``5m``, ``3h``, ``2d``."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 2 * 86400:
        h, m = divmod(s // 60, 60)
        return f"{h}h{m}m" if m and h < 8 else f"{h}h"
    return f"{s // 86400}d"


def _age(obj: Obj, now: float) -> str:
    from datetime import datetime

    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    created = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    return human_age(now - created)


def _columns(resource: str) -> list[tuple[str, str]]:
    return {
        "namespaces": [("Name", "name"), ("Status", ""), ("Age", "")],
        "serviceaccounts": [("Name", "name"), ("Secrets", ""), ("Age", "")],
        "pods": [("Name", "name"), ("Ready", ""), ("Status", ""), ("Restarts", ""), ("Age", "")],
        "mutatingwebhookconfigurations": [("Name", "name"), ("Webhooks", ""), ("Age", "")],
        "events": [
            ("Last Seen", ""),
            ("Type", ""),
            ("Reason", ""),
            ("Object", ""),
            ("Message", ""),
        ],
    }.get(resource, [("Name", "name"), ("Age", "")])


def _cells(resource: str, obj: Obj, now: float) -> list[Any]:
    name = obj["metadata"].get("name", "")
    age = _age(obj, now)
    if resource == "namespaces":
        return [name, (obj.get("status") or {}).get("phase", ""), age]
    if resource == "serviceaccounts":
        return [name, len(obj.get("secrets") or []), age]
    if resource == "pods":
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        total = len(spec.get("containers") or [])
        ready = sum(1 for c in status.get("containerStatuses") or [] if c.get("ready"))
        restarts = sum(int(c.get("restartCount", 0)) for c in status.get("containerStatuses") or [])
        return [name, f"{ready}/{total}", status.get("phase", "Pending"), restarts, age]
    if resource == "mutatingwebhookconfigurations":
        return [name, len(obj.get("webhooks") or []), age]
    return [name, age]


def table(resource: str, items: list[Obj], resource_version: str, now: float) -> Obj:
    """A ``meta.k8s.io/v1`` ``Table`` of ``items`` with the real server's columns."""
    cols = []
    for title, fmt in _columns(resource):
        cols.append(
            {
                "name": title,
                "type": "integer" if title in ("Restarts",) else "string",
                "format": fmt,
                "description": title,
                "priority": 0,
            }
        )
    rows = []
    for obj in items:
        meta = dict(obj.get("metadata") or {})
        rows.append(
            {
                "cells": _cells(resource, obj, now),
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": cols,
        "rows": rows,
    }


# --- a minimal OpenAPI v3 ----------------------------------------------------------------
# kubectl apply downloads OpenAPI v3 to learn whether the server validates fields itself
# (the ``fieldValidation`` query parameter on PATCH operations). Declaring it lets kubectl
# leave validation to the server instead of needing full schemas; the lab's server
# accepts the parameter and does not enforce it (unknown fields are kept, not refused).


def _openapi_gvs() -> dict[str, tuple[Resource, ...]]:
    return {"api/v1": CORE_RESOURCES, **{f"apis/{gv}": res for gv, res in GROUP_RESOURCES.items()}}


def openapi_v3_root() -> Obj:
    """The ``/openapi/v3`` index: one entry per group/version."""
    return {
        "paths": {
            gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash=irsa-lab"} for gv in _openapi_gvs()
        }
    }


def openapi_v3_document(gv_path: str) -> Obj | None:
    """The ``/openapi/v3/<gv>`` document: PATCH operations that accept ``fieldValidation``."""
    resources = _openapi_gvs().get(gv_path)
    if resources is None:
        return None
    paths: Obj = {}
    for res in resources:
        if "patch" not in res.verbs:
            continue
        base = (
            f"/{gv_path}/namespaces/{{namespace}}/{res.name}"
            if res.namespaced
            else (f"/{gv_path}/{res.name}")
        )
        gvk = {"group": res.group, "version": res.version, "kind": res.kind}
        param = {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}
        paths[base + "/{name}"] = {
            "patch": {
                "operationId": f"patch{res.kind}",
                "parameters": [param],
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBERNETES_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }
