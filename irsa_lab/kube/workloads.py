"""Deployments and ReplicaSets (apps/v1) at the API stand-in, and two small reviews.

The API side of workloads: create, replace and patch with the real server's defaults
and checks (a selector is required, must match the template's labels and never
changes), ``metadata.generation`` counting spec changes, and the ``status``
subresource that the controllers (:mod:`irsa_lab.kube.controllers`) write. The
controllers do the work; nothing here creates a pod.

Also here, being answers about a request rather than stored objects:
:func:`self_subject_access_review` (``kubectl auth can-i``) and :func:`pod_logs`
(``kubectl logs``), which says, as a ``Status``, that the lab runs no main command.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

from ..clock import Clock, rfc3339
from ..ids import Ids
from . import discovery as disc
from .admission import UserInfo
from .authz import ADMIN_GROUP, RequestAttributes, authorize
from .discovery import Resource
from .events import event_table_cells
from .pod_rules import apply_pod_defaults, validate_name
from .status import ApiError, StatusCause, bad_request, forbidden, invalid, not_found
from .store import Store, labels_match
from .strategic_merge import strategic_merge_patch
from .wire import SYSTEM_META, merge_patch, ordered

__all__ = [
    "WORKLOADS",
    "create_workload",
    "pod_logs",
    "scale_of",
    "selector_requirements",
    "self_subject_access_review",
    "update_scale",
    "update_workload",
    "workload_table",
    "workload_table_cells",
]

Obj = dict[str, Any]
WORKLOADS = (disc.DEPLOYMENTS, disc.REPLICASETS)


def selector_requirements(selector: Obj) -> list[tuple[str, str, frozenset[str]]]:
    """A ``LabelSelector`` as requirements for :func:`~irsa_lab.kube.store.labels_match`."""
    reqs: list[tuple[str, str, frozenset[str]]] = [
        (k, "=", frozenset([str(v)])) for k, v in (selector.get("matchLabels") or {}).items()
    ]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        reqs.append(
            (
                expr.get("key", ""),
                ops.get(expr.get("operator", ""), "exists"),
                frozenset(expr.get("values") or []),
            )
        )
    return reqs


def _default(res: Resource, obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    if res is disc.DEPLOYMENTS:
        spec.setdefault("strategy", {"type": "RollingUpdate"})
        if spec["strategy"].get("type", "RollingUpdate") == "RollingUpdate":
            spec["strategy"]["type"] = "RollingUpdate"
            rolling = spec["strategy"].setdefault("rollingUpdate", {})
            rolling.setdefault("maxUnavailable", "25%")
            rolling.setdefault("maxSurge", "25%")
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
    template = spec.setdefault("template", {})
    shell = {"spec": template.setdefault("spec", {})}
    apply_pod_defaults(shell)
    # The pod strategy, not the PodSpec defaults, sets enableServiceLinks.
    shell["spec"].pop("enableServiceLinks", None)
    template.setdefault("metadata", {})


def _validate(res: Resource, obj: Obj, old: Obj | None) -> None:
    name = obj["metadata"].get("name") or ""
    causes: list[StatusCause] = list(
        validate_name(name, allow_empty=bool(obj["metadata"].get("generateName")))
    )
    spec = obj.get("spec") or {}
    selector = spec.get("selector")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not isinstance(selector, dict) or not selector:
        causes.append(
            {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.selector"}
        )
    if (
        not isinstance(selector, dict)
        or not selector
        or not labels_match(selector_requirements(selector), labels)
    ):
        # Values print as JSON (v1.36), e.g. Invalid value: {"app":"x"}.
        shown = json.dumps(labels, separators=(",", ":"))
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {shown}: `selector` does not match template `labels`",
                "field": "spec.template.metadata.labels",
            }
        )
    if old is not None and selector != (old.get("spec") or {}).get("selector"):
        shown = json.dumps(selector, separators=(",", ":"))
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {shown}: field is immutable",
                "field": "spec.selector",
            }
        )
    containers = (spec.get("template") or {}).get("spec", {}).get("containers")
    if not containers:
        causes.append(
            {
                "reason": "FieldValueRequired",
                "message": "Required value",
                "field": "spec.template.spec.containers",
            }
        )
    replicas = spec.get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        causes.append(
            {
                "reason": "FieldValueInvalid",
                "message": f"Invalid value: {replicas}: must be greater than or equal to 0",
                "field": "spec.replicas",
            }
        )
    if causes:
        raise invalid(res.kind, name, causes, res.group)


def create_workload(
    store: Store, clock: Clock, ids: Ids, res: Resource, namespace: str, body: Any
) -> Obj:
    """POST a Deployment or ReplicaSet: defaults, validation, generation 1, empty status."""
    if not isinstance(body, dict):
        raise bad_request(f'{res.kind} in version "v1" cannot be handled as a {res.kind}')
    obj = copy.deepcopy(body)
    obj.pop("kind", None)
    obj.pop("apiVersion", None)
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in SYSTEM_META}
    meta["namespace"] = namespace
    obj["metadata"] = meta
    ns = store.get("namespaces", "", namespace)
    if ns is None:
        raise not_found("namespaces", namespace)
    if (ns.get("status") or {}).get("phase") == "Terminating":
        raise forbidden(
            f'{res.name}.{res.group} "{meta.get("name", "")}" is forbidden: unable to create '
            f"new content in namespace {namespace} because it is being terminated"
        )
    _default(res, obj)
    _validate(res, obj, None)
    meta["uid"] = ids.uuid4()
    meta["creationTimestamp"] = rfc3339(clock.now())
    meta["generation"] = 1
    obj["status"] = {}
    if not meta.get("name"):
        prefix = meta["generateName"][:58]
        stored = store.create_named(res.name, obj, lambda: prefix + ids.generate_name_suffix())
    else:
        stored = store.create(res.name, obj, res.group)
    return ordered(stored, res)


def update_workload(
    store: Store,
    res: Resource,
    namespace: str,
    name: str,
    body: Any,
    *,
    content_type: str = "",
    subresource: str = "",
) -> Obj:
    """PUT (``content_type`` "") or PATCH a Deployment/ReplicaSet, or its ``status``."""
    old = store.require(res.name, namespace, name, res.group)
    if content_type:
        if content_type == "application/json-patch+json":
            from .admission import PatchError, apply_patch

            if not isinstance(body, list):
                raise bad_request(
                    "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                )
            try:
                new = apply_patch(ordered(old, res), body)
            except PatchError as exc:
                raise ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an error in our request: {exc}",
                ) from None
        else:
            if not isinstance(body, dict):
                raise bad_request(
                    "json: cannot unmarshal into Go value of type map[string]interface {}"
                )
            if content_type == "application/strategic-merge-patch+json":
                new = strategic_merge_patch(ordered(old, res), body)
            else:
                new = merge_patch(ordered(old, res), body)
    else:
        new = copy.deepcopy(body)
    if not isinstance(new, dict):
        raise bad_request("the object is not a JSON object")
    meta = new.get("metadata") or {}
    if meta.get("name") and meta["name"] != name:
        raise bad_request(
            f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
        )
    expect = meta.get("resourceVersion")
    if content_type and expect == old["metadata"].get("resourceVersion"):
        expect = None
    new.pop("kind", None)
    new.pop("apiVersion", None)
    if subresource == "status":
        # The status subresource changes status only.
        status = new.get("status") or {}
        new = copy.deepcopy(old)
        new["status"] = status
    else:
        kept = {
            k: old["metadata"][k]
            for k in ("name", "namespace", "uid", "creationTimestamp", "generation")
            if k in old["metadata"]
        }
        new["metadata"] = {
            **{k: v for k, v in meta.items() if k not in SYSTEM_META},
            **kept,
        }
        for k in ("deletionTimestamp",):
            if k in old["metadata"]:
                new["metadata"][k] = old["metadata"][k]
        new["status"] = old.get("status", {})
        _default(res, new)
        _validate(res, new, old)
        if new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
    return ordered(store.update(res.name, new, expect), res)


def scale_of(res: Resource, obj: Obj) -> Obj:
    """The ``autoscaling/v1`` ``Scale`` of a Deployment or ReplicaSet (its scale subresource)."""
    meta = obj["metadata"]
    selector = selector_requirements((obj.get("spec") or {}).get("selector") or {})
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
        "status": {
            "replicas": (obj.get("status") or {}).get("replicas", 0),
            "selector": ",".join(f"{k}={next(iter(v))}" for k, op, v in selector if op == "="),
        },
    }


def update_scale(
    store: Store, res: Resource, namespace: str, name: str, body: Any, content_type: str = ""
) -> Obj:
    """PUT or PATCH the scale subresource: only ``spec.replicas`` changes."""
    old = store.require(res.name, namespace, name, res.group)
    scale = scale_of(res, old)
    if content_type:
        if not isinstance(body, dict):
            raise bad_request("the scale patch must be a JSON object")
        scale = merge_patch(scale, body)
    elif isinstance(body, dict):
        scale = body
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise invalid(
            "Scale",
            name,
            [
                {
                    "reason": "FieldValueInvalid",
                    "message": f"Invalid value: {replicas}: must be greater than or equal to 0",
                    "field": "spec.replicas",
                }
            ],
            "autoscaling",
        )
    new = update_workload(
        store,
        res,
        namespace,
        name,
        {"spec": {"replicas": replicas}},
        content_type="application/merge-patch+json",
    )
    return scale_of(res, new)


def workload_table_cells(res: Resource, obj: Obj, age: str) -> list[Any]:
    """``kubectl get`` cells: Deployments NAME READY UP-TO-DATE AVAILABLE AGE, ReplicaSets
    NAME DESIRED CURRENT READY AGE (as the real server's table)."""
    name = obj["metadata"].get("name", "")
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    if res is disc.DEPLOYMENTS:
        return [
            name,
            f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
            status.get("updatedReplicas", 0),
            status.get("availableReplicas", 0),
            age,
        ]
    return [
        name,
        spec.get("replicas", 0),
        status.get("replicas", 0),
        status.get("readyReplicas", 0),
        age,
    ]


# (title, priority): priority 1 columns show with -o wide.
_WIDE = [("Containers", 1), ("Images", 1), ("Selector", 1)]
_COLUMNS: dict[str, list[tuple[str, int]]] = {
    "deployments": [("Name", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0), ("Age", 0)]
    + _WIDE,
    "replicasets": [("Name", 0), ("Desired", 0), ("Current", 0), ("Ready", 0), ("Age", 0)] + _WIDE,
    "events": [
        ("Last Seen", 0),
        ("Type", 0),
        ("Reason", 0),
        ("Object", 0),
        ("Subobject", 1),
        ("Source", 1),
        ("Message", 0),
        ("First Seen", 1),
        ("Count", 1),
        ("Name", 1),
    ],
}
_INTEGER_COLUMNS = ("Up-to-date", "Available", "Desired", "Current", "Ready", "Count")


def _age(stamp: str | None, now: float) -> str:
    if not stamp:
        return "<unknown>"
    then = datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    return disc.human_age(now - then)


def workload_table(res: Resource, items: list[Obj], resource_version: str, now: float) -> Obj:
    """The ``Table`` of Deployments, ReplicaSets or Events, with the real server's columns."""
    doc = disc.table(res.name, items, resource_version, now)
    doc["columnDefinitions"] = [
        {
            "name": title,
            "type": "integer"
            if title in _INTEGER_COLUMNS and not (res is disc.DEPLOYMENTS and title == "Ready")
            else "string",
            "format": "name" if title == "Name" else "",
            "description": title,
            "priority": priority,
        }
        for title, priority in _COLUMNS[res.name]
    ]
    for row, obj in zip(doc["rows"], items, strict=True):
        if res.name == "events":
            series = obj.get("series") or {}
            seen = (
                obj.get("lastTimestamp")
                or series.get("lastObservedTime")
                or obj.get("eventTime")
                or obj.get("deprecatedLastTimestamp")
            )
            first = obj.get("firstTimestamp") or obj.get("eventTime") or seen
            cells = event_table_cells(obj, _age(seen, now))
            ref = obj.get("involvedObject") or obj.get("regarding") or {}
            source = obj.get("source") or obj.get("deprecatedSource") or {}
            who = source.get("component") or obj.get("reportingComponent", "")
            if source.get("host"):
                who += ", " + source["host"]
            count = obj.get("count") or obj.get("deprecatedCount") or 1
            row["cells"] = [
                *cells[:4],
                ref.get("fieldPath", ""),
                who,
                cells[4],
                _age(first, now),
                count,
                obj["metadata"].get("name", ""),
            ]
        else:
            age = _age(obj["metadata"].get("creationTimestamp"), now)
            spec = obj.get("spec") or {}
            containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
            selector = spec.get("selector") or {}
            row["cells"] = [
                *workload_table_cells(res, obj, age),
                ",".join(c.get("name", "") for c in containers),
                ",".join(c.get("image", "") for c in containers),
                ",".join(f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()),
            ]
    return doc


# --- kubectl auth can-i ---------------------------------------------------------------


def self_subject_access_review(user: UserInfo, body: Any) -> Obj:
    """Answer a SelfSubjectAccessReview: may ``user`` do what ``spec`` says?

    The decision is the lab's authorizer (:mod:`irsa_lab.kube.authz`), asked the same
    question a request would ask it. The admin's yes carries RBAC's reason, as the real
    server's (the cluster-admin binding of the kubeadm admins group).
    """
    if not isinstance(body, dict):
        raise bad_request("the body of a SelfSubjectAccessReview must be an object")
    spec = body.get("spec") or {}
    res_attrs = spec.get("resourceAttributes")
    path_attrs = spec.get("nonResourceAttributes")
    if bool(res_attrs) == bool(path_attrs):
        raise invalid(
            "SelfSubjectAccessReview",
            "",
            [
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value: exactly one of nonResourceAttributes or "
                    "resourceAttributes must be specified",
                    "field": "spec.resourceAttributes",
                }
            ],
            "authorization.k8s.io",
        )
    if res_attrs:
        attrs = RequestAttributes(
            verb=res_attrs.get("verb", ""),
            path="",
            group=res_attrs.get("group", ""),
            resource=res_attrs.get("resource", "") or "*",
            subresource=res_attrs.get("subresource", ""),
            namespace=res_attrs.get("namespace", ""),
            name=res_attrs.get("name", ""),
        )
    else:
        paths = path_attrs or {}
        attrs = RequestAttributes(verb=paths.get("verb", ""), path=paths.get("path", ""))
    try:
        authorize(user, attrs)
        allowed = True
    except ApiError:
        allowed = False
    status: Obj = {"allowed": allowed}
    if allowed and ADMIN_GROUP in user.get("groups", []):
        status["reason"] = (
            f'RBAC: allowed by ClusterRoleBinding "{ADMIN_GROUP}" of ClusterRole '
            f'"cluster-admin" to Group "{ADMIN_GROUP}"'
        )
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        # The real answer's metadata is empty: a review is never stored.
        "metadata": {},
        "spec": spec,
        "status": status,
    }


# --- kubectl logs ---------------------------------------------------------------------


def pod_logs(store: Store, namespace: str, name: str, container: str | None) -> ApiError:
    """The answer to ``GET pods/<name>/log``: the lab runs no container's main command.

    A missing pod is the usual 404; a container the pod does not have is the real
    server's 400; otherwise a 400 ``Status`` that says why there is no log, worded as
    the real server's answer for a container that cannot serve one.
    """
    pod = store.require("pods", namespace, name)
    names = [c.get("name", "") for c in (pod.get("spec") or {}).get("containers") or []]
    if container is None:
        if len(names) != 1:
            return bad_request(
                f"a container name must be specified for pod {name}, choose one of: "
                f"[{' '.join(names)}]"
            )
        container = names[0]
    if container not in names:
        return bad_request(f"container {container} is not valid for pod {name}")
    node = (pod.get("spec") or {}).get("nodeName")
    if not node:
        return bad_request(
            f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
        )
    return bad_request(
        f'container "{container}" in pod "{name}" has no logs: irsa-lab does not run a '
        "container's main command (its kubelet stand-in mounts the pod's volumes and "
        f"reports it Running); run commands in it with `kubectl exec {name} -- ...`"
    )
