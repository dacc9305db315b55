"""The MutatingWebhookConfiguration, as the API server stores and applies it
(docs/reference/kubernetes.md §3.2, §3.3).

What a create stores: :func:`default_webhook_configuration` fills the
``admissionregistration.k8s.io/v1`` defaults (so a GET shows them),
:data:`WEBHOOK_CONFIGURATION_SHAPE` is the field types the decoder accepts, and
:func:`validate_webhook_configuration` refuses, with a 422 ``Invalid``, what the real
server refuses (the lab's subset). Which webhooks a pod CREATE reaches:
:func:`rule_matches`, :func:`~irsa_lab.kube.label_selectors.selector_matches` and
:func:`matching_webhooks`, in calling order. Pure functions over dicts.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .admission_review import KNOWN_REVIEW_VERSIONS, Obj
from .label_selectors import selector_matches
from .pod_rules import validate_name
from .status import (
    StatusCause,
    invalid,
    required,
    value_invalid,
    value_not_supported,
)

__all__ = [
    "GROUP",
    "KIND",
    "WEBHOOK_CONFIGURATION_SHAPE",
    "default_webhook_configuration",
    "matching_webhooks",
    "rule_matches",
    "selector_matches",
    "validate_webhook_configuration",
]

GROUP = "admissionregistration.k8s.io"
KIND = "MutatingWebhookConfiguration"


# --- defaults and validation (§3.2) --------------------------------------------------------


def default_webhook_configuration(obj: Obj) -> Obj:
    """Apply the admissionregistration/v1 defaults in place, so a GET shows them."""
    for hook in obj.get("webhooks") or []:
        if not isinstance(hook, dict):
            continue
        hook.setdefault("failurePolicy", "Fail")
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("namespaceSelector", {})
        hook.setdefault("objectSelector", {})
        hook.setdefault("timeoutSeconds", 10)
        hook.setdefault("reinvocationPolicy", "Never")
        for rule in hook.get("rules") or []:
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")
        svc = (hook.get("clientConfig") or {}).get("service")
        if isinstance(svc, dict):
            svc.setdefault("port", 443)
    return obj


_SELECTOR_SHAPE = {
    "matchLabels": "map",
    "matchExpressions": [{"key": "str", "operator": "str", "values": ["str"]}],
}
WEBHOOK_CONFIGURATION_SHAPE: dict[str, Any] = {
    "apiVersion": "str",
    "kind": "str",
    "metadata": {
        "name": "str",
        "generateName": "str",
        "labels": "map",
        "annotations": "map",
        "resourceVersion": "str",
        "uid": "str",
    },
    "webhooks": [
        {
            "name": "str",
            "failurePolicy": "str",
            "matchPolicy": "str",
            "sideEffects": "str",
            "timeoutSeconds": "int",
            "reinvocationPolicy": "str",
            "admissionReviewVersions": ["str"],
            "clientConfig": {
                "url": "str",
                "caBundle": "str",
                "service": {"namespace": "str", "name": "str", "path": "str", "port": "int"},
            },
            "rules": [
                {
                    "operations": ["str"],
                    "apiGroups": ["str"],
                    "apiVersions": ["str"],
                    "resources": ["str"],
                    "scope": "str",
                }
            ],
            "namespaceSelector": _SELECTOR_SHAPE,
            "objectSelector": _SELECTOR_SHAPE,
        }
    ],
}


def _validate_selector(sel: Obj, f: str) -> list[StatusCause]:
    causes: list[StatusCause] = []
    for i, expr in enumerate(sel.get("matchExpressions") or []):
        ef = f"{f}.matchExpressions[{i}]"
        op = expr.get("operator")
        if not expr.get("key"):
            causes.append(required(f"{ef}.key"))
        if op in ("In", "NotIn"):
            if not expr.get("values"):
                causes.append(required(f"{ef}.values"))
        elif op in ("Exists", "DoesNotExist"):
            if expr.get("values"):
                causes.append(
                    {
                        "reason": "FieldValueForbidden",
                        "message": "Forbidden: may not be specified when `operator` is "
                        "'Exists' or 'DoesNotExist'",
                        "field": f"{ef}.values",
                    }
                )
        else:
            causes.append(value_invalid(f"{ef}.operator", op, "not a valid selector operator"))
    return causes


def validate_webhook_configuration(obj: Obj) -> None:
    """Raise a 422 ``Invalid`` for a configuration the real server refuses (the lab's subset)."""
    name = (obj.get("metadata") or {}).get("name") or ""
    causes = validate_name(name)
    seen: set[str] = set()
    for i, hook in enumerate(obj.get("webhooks") or []):
        f = f"webhooks[{i}]"
        hname = hook.get("name") or ""
        if not hname:
            causes.append(required(f"{f}.name"))
        elif hname in seen:
            causes.append(
                {
                    "reason": "FieldValueDuplicate",
                    "message": f'Duplicate value: "{hname}"',
                    "field": f"{f}.name",
                }
            )
        elif len(hname.split(".")) < 3 or validate_name(hname):
            causes.append(
                value_invalid(
                    f"{f}.name",
                    hname,
                    "should be a domain with at least three segments separated by dots",
                )
            )
        seen.add(hname)
        versions = hook.get("admissionReviewVersions")
        if not versions:
            causes.append(required(f"{f}.admissionReviewVersions"))
        elif not any(v in KNOWN_REVIEW_VERSIONS for v in versions):
            causes.append(
                value_invalid(
                    f"{f}.admissionReviewVersions",
                    versions,
                    "must include at least one of v1, v1beta1",
                )
            )
        side = hook.get("sideEffects")
        if side is None:
            causes.append(value_not_supported(f"{f}.sideEffects", "", ["None", "NoneOnDryRun"]))
        elif side not in ("None", "NoneOnDryRun"):
            causes.append(value_not_supported(f"{f}.sideEffects", side, ["None", "NoneOnDryRun"]))
        for key, allowed in (
            ("failurePolicy", ["Fail", "Ignore"]),
            ("matchPolicy", ["Equivalent", "Exact"]),
            ("reinvocationPolicy", ["IfNeeded", "Never"]),
        ):
            if hook.get(key) not in allowed:
                causes.append(value_not_supported(f"{f}.{key}", hook.get(key), allowed))
        timeout = hook.get("timeoutSeconds")
        if not isinstance(timeout, int) or not 1 <= timeout <= 30:
            causes.append(
                value_invalid(
                    f"{f}.timeoutSeconds",
                    timeout,
                    "the timeout value must be between 1 and 30 seconds",
                )
            )
        causes.extend(_validate_client_config(hook.get("clientConfig"), f"{f}.clientConfig"))
        for j, rule in enumerate(hook.get("rules") or []):
            rf = f"{f}.rules[{j}]"
            for key in ("operations", "apiGroups", "apiVersions", "resources"):
                if not rule.get(key):
                    causes.append(required(f"{rf}.{key}"))
            for op in rule.get("operations") or []:
                if op not in ("*", "CREATE", "UPDATE", "DELETE", "CONNECT"):
                    causes.append(
                        value_not_supported(
                            f"{rf}.operations", op, ["*", "CONNECT", "CREATE", "DELETE", "UPDATE"]
                        )
                    )
            if rule.get("scope") not in ("*", "Cluster", "Namespaced"):
                causes.append(
                    value_not_supported(
                        f"{rf}.scope", rule.get("scope"), ["*", "Cluster", "Namespaced"]
                    )
                )
        for key in ("namespaceSelector", "objectSelector"):
            causes.extend(_validate_selector(hook.get(key) or {}, f"{f}.{key}"))
    if causes:
        raise invalid(KIND, name, causes, GROUP)


def _validate_client_config(cc: Any, f: str) -> list[StatusCause]:
    if not isinstance(cc, dict):
        return [required(f)]
    causes: list[StatusCause] = []
    url, svc = cc.get("url"), cc.get("service")
    if bool(url) == bool(svc):
        causes.append(
            {
                "reason": "FieldValueRequired",
                "message": "Required value: exactly one of url or service is required",
                "field": f,
            }
        )
    if url:
        parts = urlsplit(url)
        if parts.scheme != "https":
            causes.append(value_invalid(f"{f}.url", url, "'https' is the only allowed URL scheme"))
        elif not parts.hostname:
            causes.append(value_invalid(f"{f}.url", url, "host must be specified"))
        if parts.username or parts.password:
            causes.append(
                value_invalid(f"{f}.url", url, "user information is not permitted in the URL")
            )
        if parts.query or parts.fragment:
            causes.append(
                value_invalid(
                    f"{f}.url", url, "query parameters and fragments are not permitted in the URL"
                )
            )
    if isinstance(svc, dict):
        for key in ("name", "namespace"):
            if not svc.get(key):
                causes.append(required(f"{f}.service.{key}"))
        port = svc.get("port", 443)
        if not 1 <= port <= 65535:
            causes.append(
                value_invalid(
                    f"{f}.service.port",
                    port,
                    "port is not valid: must be between 1 and 65535, inclusive",
                )
            )
        path = svc.get("path")
        if path is not None and not str(path).startswith("/"):
            causes.append(value_invalid(f"{f}.service.path", path, "must start with a '/'"))
    bundle = cc.get("caBundle")
    if bundle:
        try:
            base64.b64decode(bundle, validate=True)
        except (binascii.Error, ValueError):
            causes.append(value_invalid(f"{f}.caBundle", "<bytes>", "must be base64"))
    return causes


# --- matching (§3.3) ------------------------------------------------------------------------


def rule_matches(
    rule: Obj, *, operation: str, group: str, version: str, resource: str, namespaced: bool = True
) -> bool:
    """Does one ``rules[]`` entry cover this request (no subresources in the lab)?"""

    def has(values: Sequence[str], value: str) -> bool:
        return "*" in values or value in values

    scope = rule.get("scope", "*")
    if scope == "Cluster" and namespaced or scope == "Namespaced" and not namespaced:
        return False
    resources = rule.get("resources") or []
    return (
        has(rule.get("operations") or [], operation)
        and has(rule.get("apiGroups") or [], group)
        and has(rule.get("apiVersions") or [], version)
        and (has(resources, resource) or "*/*" in resources)
    )


def matching_webhooks(
    configs: Sequence[Obj], *, pod: Obj, namespace_labels: dict[str, str]
) -> list[tuple[str, Obj]]:
    """(configuration name, webhook) pairs a pod CREATE reaches, in calling order."""
    out: list[tuple[str, Obj]] = []
    labels = (pod.get("metadata") or {}).get("labels") or {}
    for cfg in sorted(configs, key=lambda c: c["metadata"]["name"]):
        for hook in cfg.get("webhooks") or []:
            if not any(
                rule_matches(r, operation="CREATE", group="", version="v1", resource="pods")
                for r in hook.get("rules") or []
            ):
                continue
            if not selector_matches(hook.get("namespaceSelector"), namespace_labels):
                continue
            if not selector_matches(hook.get("objectSelector"), labels):
                continue
            out.append((cfg["metadata"]["name"], hook))
    return out
