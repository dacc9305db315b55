"""What the API server does to a pod before storing it, as pure functions over dicts.

docs/reference/kubernetes.md §1.4 and §3.1. The steps, in the server's order:

1. :func:`check_shape` stands in for JSON decoding into Go structs: a field of the
   wrong JSON type is a 400 ``... cannot be handled as a Pod``;
2. :func:`apply_pod_defaults`: the v1 defaulting functions (``restartPolicy``,
   ``dnsPolicy``, projected ``defaultMode: 420``, ``expirationSeconds: 3600`` ...);
3. :func:`service_account_admission`: the ``ServiceAccount`` admission plugin, which
   runs before any webhook and adds the ``kube-api-access-xxxxx`` volume;
4. (webhooks, in ``admission.py``);
5. :func:`validate_pod`: validation of the final object, so a webhook that injects a
   300-second token projection makes the create fail with 422.

Name validation for the other kinds lives here too (:func:`validate_name`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..constants import (
    KUBE_API_ACCESS_PREFIX,
    SA_MOUNT_PATH,
    SA_TOKEN_DEFAULT_EXPIRATION_S,
    SA_TOKEN_MAX_EXPIRATION_S,
    SA_TOKEN_MIN_EXPIRATION_S,
)
from .status import (
    ApiError,
    StatusCause,
    duplicate,
    forbidden,
    invalid,
    required,
    value_invalid,
)

__all__ = [
    "DEFAULT_MODE",
    "DEPRECATED_NODE_LABELS",
    "KUBE_API_ACCESS_EXPIRATION_S",
    "NAMESPACE_SHAPE",
    "POD_SHAPE",
    "SECCOMP_CONTAINER_ANNOTATION_PREFIX",
    "SECCOMP_POD_ANNOTATION",
    "SERVICE_ACCOUNT_SHAPE",
    "Obj",
    "apply_pod_defaults",
    "check_shape",
    "default_tolerations",
    "kube_api_access_volume",
    "pod_warnings",
    "priority_admission",
    "service_account_admission",
    "validate_name",
    "validate_pod",
]

Obj = dict[str, Any]

# The ServiceAccount admission plugin's token lifetime: one hour plus 7 s, the value
# that lets the token issuer recognise these volumes and extend them (§1.3).
KUBE_API_ACCESS_EXPIRATION_S = 3607
DEFAULT_MODE = 420  # 0644, what API defaulting puts on projected/configMap/secret volumes

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    r"used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


# --- decoding: the JSON types Go would accept ------------------------------------------

# A tiny schema language: "str", "int", "bool", "any", "map" (string -> string),
# a dict (an object with those fields; others pass through), a one-item list (array of).
_STR, _INT, _BOOL, _ANY, _MAP = "str", "int", "bool", "any", "map"
_META: dict[str, Any] = {
    "name": _STR,
    "generateName": _STR,
    "namespace": _STR,
    "uid": _STR,
    "resourceVersion": _STR,
    "labels": _MAP,
    "annotations": _MAP,
    "finalizers": [_STR],
    "ownerReferences": [{"apiVersion": _STR, "kind": _STR, "name": _STR, "uid": _STR}],
}
_KEY_TO_PATH = {"key": _STR, "path": _STR, "mode": _INT}
_PROJECTION = {
    "serviceAccountToken": {"audience": _STR, "expirationSeconds": _INT, "path": _STR},
    "configMap": {"name": _STR, "items": [_KEY_TO_PATH], "optional": _BOOL},
    "secret": {"name": _STR, "items": [_KEY_TO_PATH], "optional": _BOOL},
    "downwardAPI": {"items": [{"path": _STR, "fieldRef": {"apiVersion": _STR, "fieldPath": _STR}}]},
}
_VOLUME = {
    "name": _STR,
    "projected": {"defaultMode": _INT, "sources": [_PROJECTION]},
    "configMap": {"name": _STR, "defaultMode": _INT, "items": [_KEY_TO_PATH]},
    "secret": {"secretName": _STR, "defaultMode": _INT, "items": [_KEY_TO_PATH]},
    "emptyDir": {"medium": _STR},
    "hostPath": {"path": _STR, "type": _STR},
}
_CONTAINER = {
    "name": _STR,
    "image": _STR,
    "command": [_STR],
    "args": [_STR],
    "workingDir": _STR,
    "imagePullPolicy": _STR,
    "terminationMessagePath": _STR,
    "terminationMessagePolicy": _STR,
    "env": [{"name": _STR, "value": _STR, "valueFrom": {}}],
    "volumeMounts": [{"name": _STR, "mountPath": _STR, "readOnly": _BOOL, "subPath": _STR}],
    "ports": [{"name": _STR, "containerPort": _INT, "protocol": _STR}],
    "resources": {},
    "securityContext": {},
}
_POD = {
    "apiVersion": _STR,
    "kind": _STR,
    "metadata": _META,
    "spec": {
        "containers": [_CONTAINER],
        "initContainers": [_CONTAINER],
        "volumes": [_VOLUME],
        "serviceAccountName": _STR,
        "serviceAccount": _STR,
        "automountServiceAccountToken": _BOOL,
        "nodeName": _STR,
        "restartPolicy": _STR,
        "dnsPolicy": _STR,
        "schedulerName": _STR,
        "terminationGracePeriodSeconds": _INT,
        "securityContext": {
            "fsGroup": _INT,
            "runAsUser": _INT,
            "runAsGroup": _INT,
            "runAsNonRoot": _BOOL,
        },
        "nodeSelector": _MAP,
        "tolerations": [
            {
                "key": _STR,
                "operator": _STR,
                "effect": _STR,
                "value": _STR,
                "tolerationSeconds": _INT,
            }
        ],
        "imagePullSecrets": [{"name": _STR}],
        "enableServiceLinks": _BOOL,
        "priority": _INT,
        "preemptionPolicy": _STR,
    },
    "status": {},
}
SERVICE_ACCOUNT_SHAPE: dict[str, Any] = {
    "apiVersion": _STR,
    "kind": _STR,
    "metadata": _META,
    "automountServiceAccountToken": _BOOL,
    "secrets": [{"name": _STR}],
    "imagePullSecrets": [{"name": _STR}],
}
NAMESPACE_SHAPE: dict[str, Any] = {
    "apiVersion": _STR,
    "kind": _STR,
    "metadata": _META,
    "spec": {"finalizers": [_STR]},
    "status": {"phase": _STR},
}
POD_SHAPE = _POD

_GO = {_STR: "string", _INT: "int64", _BOOL: "bool", _MAP: "map[string]string"}


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return f"number {v}" if isinstance(v, float) else "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _check(value: Any, schema: Any, path: str, kind: str) -> None:
    def fail(want: str) -> ApiError:
        return ApiError(
            400,
            "BadRequest",
            f'{kind} in version "v1" cannot be handled as a {kind}: json: cannot '
            f"unmarshal {_json_type(value)} into Go struct field {kind}.{path} "
            f"of type {want}",
        )

    if value is None or schema == _ANY:
        return
    if schema == _STR:
        if not isinstance(value, str):
            raise fail("string")
    elif schema == _INT:
        # Go rejects 1.5 and true for an int field; 2.0 is a float in JSON but fine in Go.
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (isinstance(value, float) and not value.is_integer())
        ):
            raise fail("int64")
        if abs(value) >= 2**63:
            raise fail("int64")
    elif schema == _BOOL:
        if not isinstance(value, bool):
            raise fail("bool")
    elif schema == _MAP:
        if not isinstance(value, dict):
            raise fail("map[string]string")
        for key, item in value.items():
            if item is not None and not isinstance(item, str):
                _check(item, _STR, f"{path}[{key}]", kind)
    elif isinstance(schema, list):
        if not isinstance(value, list):
            raise fail(
                "[]" + _GO.get(schema[0], "object") if isinstance(schema[0], str) else "[]object"
            )
        for item in value:
            _check(item, schema[0], path, kind)
    elif isinstance(schema, dict):
        if not isinstance(value, dict):
            raise fail("object")
        for key, sub in schema.items():
            if key in value:
                _check(value[key], sub, f"{path}.{key}" if path else key, kind)


def _drop_nulls(value: Any) -> Any:
    # Go decodes a JSON null as the zero value, i.e. as if the field were absent.
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def check_shape(obj: Any, kind: str, schema: dict[str, Any]) -> Obj:
    """Decode-time checks: a JSON object whose known fields have the right JSON types.

    Returns the object with nulls dropped and whole-number floats made ints; raises a
    400 ``ApiError`` worded as the real server's decode failure.
    """
    if not isinstance(obj, dict):
        raise ApiError(
            400,
            "BadRequest",
            f'{kind} in version "v1" cannot be handled as a {kind}: json: cannot '
            f"unmarshal {_json_type(obj)} into Go value of type struct",
        )
    # One pass: nulls dropped and whole-number floats made ints (``_check`` accepts 2.0
    # and 2 alike for an int field, and words a wrong type the same for both).
    obj = _decoded(obj)
    _check(obj, schema, "", kind)
    return obj


def _decoded(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        return {k: _decoded(v) for k, v in value.items() if v is not None}
    if kind is list:
        return [_decoded(v) for v in value]
    if kind is float and value.is_integer():
        return int(value)
    if kind in (str, int, bool):
        return value
    return _ints(_drop_nulls(value))


def _ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


# --- defaults -------------------------------------------------------------------------


def _pull_policy(image: str) -> str:
    # Defaulting: Always for ":latest" or an untagged image, IfNotPresent otherwise.
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    return "Always" if tag in ("", "latest") else "IfNotPresent"


def apply_pod_defaults(pod: Obj) -> Obj:
    """Apply the v1 API defaults to a decoded pod, in place; returns it."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            c.setdefault("resources", {})
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("imagePullPolicy", _pull_policy(c.get("image", "")))
            for port in c.get("ports") or []:
                port.setdefault("protocol", "TCP")
    for vol in spec.get("volumes") or []:
        _default_volume(vol)
    pod.setdefault("status", {})
    return pod


def _default_volume(vol: Obj) -> None:
    if "projected" in vol and isinstance(vol["projected"], dict):
        proj = vol["projected"]
        proj.setdefault("defaultMode", DEFAULT_MODE)
        for src in proj.get("sources") or []:
            sat = src.get("serviceAccountToken")
            if isinstance(sat, dict):
                sat.setdefault("expirationSeconds", SA_TOKEN_DEFAULT_EXPIRATION_S)
            for item in (src.get("downwardAPI") or {}).get("items") or []:
                ref = item.get("fieldRef")
                if isinstance(ref, dict):
                    ref.setdefault("apiVersion", "v1")
    for key in ("configMap", "secret"):
        if isinstance(vol.get(key), dict):
            vol[key].setdefault("defaultMode", DEFAULT_MODE)
    if isinstance(vol.get("emptyDir"), dict):
        pass


def default_tolerations(pod: Obj) -> None:
    """The DefaultTolerationSeconds admission plugin: tolerate not-ready/unreachable for 300 s."""
    tolerations = pod["spec"].setdefault("tolerations", [])
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(
            t.get("key") == key and t.get("effect") in ("NoExecute", None, "") for t in tolerations
        ):
            tolerations.append(
                {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            )


def priority_admission(pod: Obj) -> None:
    """The Priority admission plugin with no PriorityClass: priority 0."""
    pod["spec"].setdefault("priority", 0)
    pod["spec"].setdefault("preemptionPolicy", "PreemptLowerPriority")


# --- warnings -------------------------------------------------------------------------

# Node labels the real server warns about in a pod's nodeSelector, with its advice.
DEPRECATED_NODE_LABELS: dict[str, str] = {
    "beta.kubernetes.io/arch": 'deprecated since v1.14; use "kubernetes.io/arch" instead',
    "beta.kubernetes.io/os": 'deprecated since v1.14; use "kubernetes.io/os" instead',
    "failure-domain.beta.kubernetes.io/region": (
        'deprecated since v1.17; use "topology.kubernetes.io/region" instead'
    ),
    "failure-domain.beta.kubernetes.io/zone": (
        'deprecated since v1.17; use "topology.kubernetes.io/zone" instead'
    ),
    "beta.kubernetes.io/instance-type": (
        'deprecated since v1.17; use "node.kubernetes.io/instance-type" instead'
    ),
}
SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
SECCOMP_CONTAINER_ANNOTATION_PREFIX = "container.seccomp.security.alpha.kubernetes.io/"
_SECCOMP_ADVICE = 'non-functional in v1.27+; use the "seccompProfile" field instead'


def pod_warnings(pod: Obj) -> list[str]:
    """The ``Warning`` texts the real server adds when it stores ``pod`` (a subset).

    Why: learners copy old manifests, and kubectl prints these warnings; the lab
    should print them too. In the real server's order: deprecated nodeSelector labels,
    then the pod's seccomp annotation, then each container's (existing containers
    only). The webhooks' own warnings come before these (they run first).
    """
    spec = pod.get("spec") or {}
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    out = [
        f"spec.nodeSelector[{key}]: {DEPRECATED_NODE_LABELS[key]}"
        for key in spec.get("nodeSelector") or {}
        if key in DEPRECATED_NODE_LABELS
    ]
    if SECCOMP_POD_ANNOTATION in annotations:
        out.append(f"metadata.annotations[{SECCOMP_POD_ANNOTATION}]: {_SECCOMP_ADVICE}")
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            key = SECCOMP_CONTAINER_ANNOTATION_PREFIX + str(c.get("name", ""))
            if key in annotations:
                out.append(f"metadata.annotations[{key}]: {_SECCOMP_ADVICE}")
    return out


# --- the ServiceAccount admission plugin -------------------------------------------


def kube_api_access_volume(suffix: str) -> Obj:
    """The volume the ServiceAccount plugin adds: token (3607 s), root CA, namespace."""
    return {
        "name": KUBE_API_ACCESS_PREFIX + suffix,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "expirationSeconds": KUBE_API_ACCESS_EXPIRATION_S,
                        "path": "token",
                    }
                },
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
            "defaultMode": DEFAULT_MODE,
        },
    }


def service_account_admission(
    pod: Obj, namespace: str, lookup: Callable[[str], Obj | None], suffix: Callable[[], str]
) -> Obj:
    """Run the ServiceAccount plugin on a pod CREATE, in place; returns the pod.

    ``lookup(name)`` returns the ServiceAccount or None (403, as the real plugin
    answers); ``suffix()`` gives the 5 random characters of ``kube-api-access-``.
    """
    spec = pod["spec"]
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = name
    # The deprecated alias is kept equal to serviceAccountName in stored pods.
    spec["serviceAccount"] = name
    sa = lookup(name)
    if sa is None:
        raise forbidden(
            f"error looking up service account {namespace}/{name}: "
            f'serviceaccount "{name}" not found'
        )
    if not spec.get("imagePullSecrets") and sa.get("imagePullSecrets"):
        spec["imagePullSecrets"] = [{"name": s.get("name", "")} for s in sa["imagePullSecrets"]]
    # The pod's own setting wins over the ServiceAccount's; both default to true.
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = sa.get("automountServiceAccountToken")
    if automount is False:
        return pod
    containers = [c for g in ("initContainers", "containers") for c in spec.get(g) or []]
    needs = [
        c
        for c in containers
        if not any(m.get("mountPath") == SA_MOUNT_PATH for m in c.get("volumeMounts") or [])
    ]
    if not needs:
        return pod
    volume = kube_api_access_volume(suffix())
    spec.setdefault("volumes", []).append(volume)
    for c in needs:
        c.setdefault("volumeMounts", []).append(
            {"name": volume["name"], "readOnly": True, "mountPath": SA_MOUNT_PATH}
        )
    return pod


# --- validation -------------------------------------------------------------------------


def validate_name(
    name: Any, *, label: bool = False, field: str = "metadata.name", allow_empty: bool = False
) -> list[StatusCause]:
    """Causes for an invalid object name (DNS-1123 subdomain, or label for namespaces)."""
    if not name:
        if allow_empty:
            return []
        return [
            {
                "reason": "FieldValueRequired",
                "message": "Required value: name or generateName is required",
                "field": field,
            }
        ]
    if not isinstance(name, str):
        return [value_invalid(field, name, "must be a string")]
    limit, pattern, msg = (
        (63, _DNS1123_LABEL, _LABEL_MSG) if label else (253, _DNS1123_SUBDOMAIN, _SUBDOMAIN_MSG)
    )
    causes: list[StatusCause] = []
    if len(name) > limit:
        causes.append(value_invalid(field, name, f"must be no more than {limit} characters"))
    if not pattern.match(name):
        causes.append(value_invalid(field, name, msg))
    return causes


def _validate_projection(vol: Obj, field: str) -> list[StatusCause]:
    causes: list[StatusCause] = []
    for j, src in enumerate((vol.get("projected") or {}).get("sources") or []):
        sat = src.get("serviceAccountToken") if isinstance(src, dict) else None
        if not isinstance(sat, dict):
            continue
        f = f"{field}.projected.sources[{j}].serviceAccountToken"
        exp = sat.get("expirationSeconds", SA_TOKEN_DEFAULT_EXPIRATION_S)
        if exp < SA_TOKEN_MIN_EXPIRATION_S:
            causes.append(
                value_invalid(
                    f"{f}.expirationSeconds", exp, "may not specify a duration less than 10 minutes"
                )
            )
        elif exp > SA_TOKEN_MAX_EXPIRATION_S:
            causes.append(
                value_invalid(
                    f"{f}.expirationSeconds",
                    exp,
                    "may not specify a duration larger than 2^32 seconds",
                )
            )
        path = sat.get("path")
        if not path:
            causes.append(required(f"{f}.path"))
        elif path.startswith("/") or ".." in path.split("/"):
            causes.append(value_invalid(f"{f}.path", path, "must be a relative path without '..'"))
    return causes


def _unique_name(item: Obj, f: str, seen: set[str]) -> list[StatusCause]:
    """The causes against ``item``'s name: required, a DNS label, unique among ``seen``.

    A valid new name is added to ``seen``.
    """
    name = item.get("name")
    if not name:
        return [required(f"{f}.name")]
    if name in seen:
        return [duplicate(f"{f}.name", name)]
    seen.add(name)
    return validate_name(name, label=True, field=f"{f}.name")


def validate_pod(pod: Obj) -> None:
    """Raise a 422 ``Invalid`` for a pod the real server would refuse (the subset in §6.1)."""
    meta = pod.get("metadata") or {}
    name = meta.get("name") or ""
    causes = validate_name(name, allow_empty=bool(meta.get("generateName")))
    spec = pod.get("spec") or {}
    volumes = spec.get("volumes") or []
    vol_names: set[str] = set()
    for i, vol in enumerate(volumes):
        f = f"spec.volumes[{i}]"
        causes.extend(_unique_name(vol, f, vol_names))
        causes.extend(_validate_projection(vol, f))
    containers = spec.get("containers") or []
    if not containers:
        causes.append(required("spec.containers"))
    seen: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            f = f"spec.{group}[{i}]"
            causes.extend(_unique_name(c, f, seen))
            if not c.get("image"):
                causes.append(required(f"{f}.image"))
            env_names: set[str] = set()
            for k, e in enumerate(c.get("env") or []):
                if not e.get("name"):
                    causes.append(required(f"{f}.env[{k}].name"))
                env_names.add(e.get("name", ""))
            paths: set[str] = set()
            for k, m in enumerate(c.get("volumeMounts") or []):
                mf = f"{f}.volumeMounts[{k}]"
                if not m.get("name"):
                    causes.append(required(f"{mf}.name"))
                elif m["name"] not in vol_names:
                    causes.append(
                        {
                            "reason": "FieldValueNotFound",
                            "message": f'Not found: "{m["name"]}"',
                            "field": f"{mf}.name",
                        }
                    )
                mp = m.get("mountPath")
                if not mp:
                    causes.append(required(f"{mf}.mountPath"))
                elif mp in paths:
                    causes.append(value_invalid(f"{mf}.mountPath", mp, "must be unique"))
                else:
                    paths.add(mp)
    if spec.get("restartPolicy") not in ("Always", "OnFailure", "Never"):
        from .status import value_not_supported

        causes.append(
            value_not_supported(
                "spec.restartPolicy", spec.get("restartPolicy"), ["Always", "OnFailure", "Never"]
            )
        )
    if causes:
        raise invalid("Pod", name, causes)
