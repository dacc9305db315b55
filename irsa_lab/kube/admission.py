"""Mutating admission webhooks, the API server's side (docs/reference/kubernetes.md §3).

Pure parts: :func:`default_webhook_configuration` and
:func:`validate_webhook_configuration` (what a create of a
MutatingWebhookConfiguration stores), :func:`selector_matches` and
:func:`rule_matches` (which webhooks a request reaches), :func:`admission_review`
(the request body, §3.5), :func:`check_response` and :func:`apply_patch` (§3.6).

The edge: :class:`WebhookDispatcher` POSTs the AdmissionReview over HTTPS with
aiohttp, trusting only the webhook's ``caBundle``, within ``timeoutSeconds``, and
turns every outcome into what the real server does (§3.7): a call failure under
``failurePolicy: Ignore`` lets the pod through unmutated, under ``Fail`` it is a 500
``Internal error occurred: failed calling webhook ...``; a denial is the webhook's
own status; a patch that decodes but does not apply is a 500 whatever the policy.
Every exchange is kept as an :class:`AdmissionRecord` for the notebooks.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict
from urllib.parse import urlsplit

import aiohttp
import jsonpatch
import jsonpointer

from ..clock import Clock
from ..ids import Ids
from ..trace import Trace
from .pod_rules import POD_SHAPE, apply_pod_defaults, check_shape, validate_name
from .status import (
    ApiError,
    StatusCause,
    internal_error,
    invalid,
    required,
    value_invalid,
    value_not_supported,
)

Obj = dict[str, Any]
GROUP = "admissionregistration.k8s.io"
KIND = "MutatingWebhookConfiguration"
KNOWN_REVIEW_VERSIONS = ("v1", "v1beta1")


# --- wire types -------------------------------------------------------------------------


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
    """``AdmissionReview.request`` for a CREATE (§3.5)."""

    uid: str
    kind: GroupVersionKind
    resource: GroupVersionResource
    requestKind: GroupVersionKind
    requestResource: GroupVersionResource
    name: str
    namespace: str
    operation: str
    userInfo: UserInfo
    object: Obj
    oldObject: Obj | None
    dryRun: bool
    options: Obj


class AdmissionResponse(TypedDict, total=False):
    """``AdmissionReview.response`` (§3.6)."""

    uid: str
    allowed: bool
    status: Obj
    patch: str
    patchType: str
    warnings: list[str]
    auditAnnotations: dict[str, str]


class AdmissionReview(TypedDict, total=False):
    """The envelope both ways."""

    apiVersion: str
    kind: str
    request: AdmissionRequest
    response: AdmissionResponse


# --- configuration defaults and validation (§3.2) ----------------------------------------


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


def selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A structured LabelSelector (matchLabels + matchExpressions) against labels; ``{}`` matches all."""
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


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


# --- the exchange (§3.5, §3.6) -----------------------------------------------------------


def admission_review(
    uid: str, pod: Obj, namespace: str, user: UserInfo, version: str = "v1"
) -> AdmissionReview:
    """The AdmissionReview for a pod CREATE; ``name`` is omitted when generateName is used."""
    obj = copy.deepcopy(pod)
    meta = obj.setdefault("metadata", {})
    meta["namespace"] = namespace
    # On CREATE the object has no uid yet and a null creationTimestamp.
    meta.pop("uid", None)
    meta["creationTimestamp"] = None
    obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        **{k: v for k, v in obj.items() if k not in ("apiVersion", "kind")},
    }
    pod_gvk: GroupVersionKind = {"group": "", "version": "v1", "kind": "Pod"}
    pod_gvr: GroupVersionResource = {"group": "", "version": "v1", "resource": "pods"}
    request: AdmissionRequest = {
        "uid": uid,
        "kind": pod_gvk,
        "resource": pod_gvr,
        "requestKind": dict(pod_gvk),  # type: ignore[typeddict-item]
        "requestResource": dict(pod_gvr),  # type: ignore[typeddict-item]
    }
    if meta.get("name"):
        request["name"] = meta["name"]
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
    return {
        "apiVersion": f"admission.k8s.io/{version}",
        "kind": "AdmissionReview",
        "request": request,
    }


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
        if body.get("apiVersion") != "admission.k8s.io/v1" or body.get("kind") != (
            "AdmissionReview"
        ):
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
        if ptype is not None and ptype != "JSONPatch":
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
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CallError(f"failed to call webhook: illegal base64 data: {exc}") from None
    try:
        ops = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
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
        patched = jsonpatch.JsonPatch(ops).apply(obj)
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


# --- the dispatcher -----------------------------------------------------------------------


Outcome = Literal["patched", "allowed", "denied", "ignored", "failed", "patch-error"]


@dataclass
class AdmissionRecord:
    """One webhook exchange as stage 1 shows it: what was sent, received and done."""

    configuration: str
    webhook: str
    round: int
    url: str
    failure_policy: str
    request: AdmissionReview
    response: Obj | None = None
    patch: list[Obj] | None = None
    before: Obj | None = None
    after: Obj | None = None
    outcome: Outcome = "allowed"
    error: str = ""
    duration_ms: float = 0.0
    warnings: list[str] = field(default_factory=list)


@dataclass
class AdmissionResult:
    """The pod after the webhooks, and the records of the exchanges."""

    pod: Obj
    records: list[AdmissionRecord]
    warnings: list[str]
    audit_annotations: dict[str, str]


def _go_dial_error(url: str, exc: BaseException) -> str:
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port or 443}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return f"remote error: tls: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"dial tcp {host}: connect: connection refused"
    return str(exc) or type(exc).__name__


class WebhookDispatcher:
    """Calls the matching mutating webhooks for a pod CREATE, as kube-apiserver does."""

    def __init__(
        self,
        *,
        ids: Ids,
        clock: Clock,
        trace: Trace,
        service_resolver: Callable[[Obj], str] | None = None,
        on_record: Callable[[AdmissionRecord], None] | None = None,
    ) -> None:
        self._on_record = on_record
        self._ids = ids
        self._clock = clock
        self._trace = trace
        self._resolver = service_resolver
        self._session: aiohttp.ClientSession | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def close(self) -> None:
        """Close the HTTP session (call on the loop that used it)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ssl_context(self, ca_bundle: str) -> ssl.SSLContext:
        ctx = self._contexts.get(ca_bundle)
        if ctx is None:
            if ca_bundle:
                try:
                    pem = base64.b64decode(ca_bundle).decode("ascii")
                    ctx = ssl.create_default_context(cadata=pem)
                except (ValueError, ssl.SSLError, UnicodeDecodeError) as exc:
                    raise CallError(
                        f"failed to call webhook: unable to load root certificates: {exc}"
                    ) from None
            else:
                # An empty caBundle means the system trust roots, as on a real server.
                ctx = ssl.create_default_context()
            self._contexts[ca_bundle] = ctx
        return ctx

    def url_for(self, hook: Obj) -> str:
        """The webhook's endpoint: ``clientConfig.url`` as is, or what the resolver says.

        The resolver maps ``clientConfig.service`` (namespace, name, path, port) to the
        full URL to POST to, path included; an unknown service fails like a DNS miss.
        """
        cc = hook.get("clientConfig") or {}
        if cc.get("url"):
            return str(cc["url"])
        svc = cc.get("service") or {}
        host = f"{svc.get('name')}.{svc.get('namespace')}.svc"
        try:
            if self._resolver is None:
                raise LookupError(host)
            return self._resolver(dict(svc))
        except (LookupError, ValueError):
            port, path = svc.get("port", 443), svc.get("path") or ""
            raise CallError(
                f'failed to call webhook: Post "https://{host}:{port}{path}": '
                f"dial tcp: lookup {host}: no such host"
            ) from None

    async def run(
        self,
        pod: Obj,
        *,
        namespace: str,
        namespace_labels: dict[str, str],
        configs: Sequence[Obj],
        user: UserInfo,
    ) -> AdmissionResult:
        """Run round 0 and, when needed, the single reinvocation round (§3.8).

        Raises the ``ApiError`` the real server answers with: the webhook's denial, or
        a 500 for a call failure under ``Fail`` or a patch that does not apply.
        """
        hooks = matching_webhooks(configs, pod=pod, namespace_labels=namespace_labels)
        records: list[AdmissionRecord] = []
        warnings: list[str] = []
        audit: dict[str, str] = {}
        invoked_reinvocable: list[int] = []
        reinvoke = False
        for index, (cfg_name, hook) in enumerate(hooks):
            pod, changed = await self._call(
                pod, cfg_name, hook, 0, index, namespace, user, records, warnings, audit
            )
            if changed:
                # Only webhooks invoked *before* the change are re-run, never new ones.
                reinvoke = reinvoke or bool(invoked_reinvocable)
            if hook.get("reinvocationPolicy") == "IfNeeded":
                invoked_reinvocable.append(index)
        if reinvoke:
            for index in invoked_reinvocable:
                cfg_name, hook = hooks[index]
                pod, _ = await self._call(
                    pod, cfg_name, hook, 1, index, namespace, user, records, warnings, audit
                )
        return AdmissionResult(pod, records, warnings, audit)

    async def _call(
        self,
        pod: Obj,
        cfg_name: str,
        hook: Obj,
        round_: int,
        index: int,
        namespace: str,
        user: UserInfo,
        records: list[AdmissionRecord],
        warnings: list[str],
        audit: dict[str, str],
    ) -> tuple[Obj, bool]:
        name = hook.get("name", "")
        policy = hook.get("failurePolicy", "Fail")
        versions = [
            v for v in hook.get("admissionReviewVersions") or [] if v in KNOWN_REVIEW_VERSIONS
        ]
        uid = self._ids.uuid4()
        review = admission_review(uid, pod, namespace, user, versions[0] if versions else "v1")
        record = AdmissionRecord(
            cfg_name, name, round_, "", policy, review, before=copy.deepcopy(pod)
        )
        records.append(record)
        if self._on_record is not None:
            self._on_record(record)
        started = time.perf_counter()
        try:
            if not versions:
                raise CallError(
                    "webhook does not accept known AdmissionReview versions (v1, v1beta1)"
                )
            record.url = self.url_for(hook)
            body = await self._post(record.url, review, hook)
            record.response = body
            response = check_response(body, uid, versions[0])
            record.warnings = [str(w) for w in response.get("warnings") or []]
            warnings.extend(record.warnings)
            for k, v in (response.get("auditAnnotations") or {}).items():
                audit[f"{name}/{k}"] = str(v)
            if not response["allowed"]:
                record.outcome = "denied"
                raise _denial(name, response.get("status"))
            patched = pod
            changed = False
            if response.get("patch"):
                ops = decode_patch(response["patch"])
                record.patch = ops
                if ops:
                    try:
                        patched = apply_patch(review["request"]["object"], ops)
                        # The server decodes the patched JSON back into a Pod.
                        patched = check_shape(patched, "Pod", POD_SHAPE)
                    except ApiError as exc:
                        raise PatchError(exc.message) from None
                    # The server defaults the decoded object again (e.g. defaultMode 420).
                    apply_pod_defaults(patched)
                    meta = patched.setdefault("metadata", {})
                    meta["creationTimestamp"] = None
                    changed = patched != review["request"]["object"]
                    meta.pop("creationTimestamp", None)
            record.after = copy.deepcopy(patched)
            record.outcome = "patched" if changed else "allowed"
            self._record(record, started, "ok")
            return patched, changed
        except CallError as exc:
            message = f'failed calling webhook "{name}": {exc}'
            record.error = message
            record.after = copy.deepcopy(pod)
            if policy == "Ignore":
                record.outcome = "ignored"
                audit[
                    f"failed-open.mutation.webhook.admission.k8s.io/round_{round_}_index_{index}"
                ] = name
                self._record(record, started, "ignored")
                return pod, False
            record.outcome = "failed"
            self._record(record, started, "InternalError")
            raise internal_error(message) from None
        except PatchError as exc:
            record.outcome = "patch-error"
            record.error = str(exc)
            self._record(record, started, "InternalError")
            raise internal_error(str(exc)) from None
        except ApiError as exc:
            record.error = exc.message
            self._record(record, started, exc.reason or "Forbidden")
            raise

    def _record(self, record: AdmissionRecord, started: float, outcome: str) -> None:
        record.duration_ms = (time.perf_counter() - started) * 1000
        self._trace.record(
            "apiserver",
            "webhook",
            "AdmissionReview",
            outcome,
            duration_ms=record.duration_ms,
            webhook=record.webhook,
            round=record.round,
            result=record.outcome,
            **({"error": record.error} if record.error else {}),
        )

    async def _post(self, url: str, review: AdmissionReview, hook: Obj) -> Any:
        timeout_s = int(hook.get("timeoutSeconds", 10))
        cc = hook.get("clientConfig") or {}
        ctx = self._ssl_context(cc.get("caBundle") or "")
        target = f"{url}?timeout={timeout_s}s"
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64), auto_decompress=True
            )
        data = json.dumps(review, separators=(",", ":")).encode()
        try:
            async with asyncio.timeout(timeout_s):
                async with self._session.post(
                    target,
                    data=data,
                    ssl=ctx,
                    headers={"Content-Type": "application/json", "Accept": "application/json, */*"},
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
        except TimeoutError:
            raise CallError(
                f'failed to call webhook: Post "{target}": context deadline exceeded'
            ) from None
        except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise CallError(
                f'failed to call webhook: Post "{target}": {_go_dial_error(url, exc)}'
            ) from None
        if not 200 <= status < 300:
            text = raw.decode("utf-8", "replace").strip()
            raise CallError(
                f'failed to call webhook: an error on the server ("{text[:200]}") '
                "has prevented the request from succeeding"
            )
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CallError(f"failed to call webhook: {exc}") from None


def _denial(name: str, status: Any) -> ApiError:
    # Status code from the webhook's status, 403 when unset; the message says who denied.
    status = status if isinstance(status, dict) else {}
    denied = f'admission webhook "{name}" denied the request'
    msg, reason = status.get("message"), status.get("reason")
    if isinstance(msg, str) and msg:
        message = f"{denied}: {msg}"
    elif isinstance(reason, str) and reason:
        message = f"{denied}: {reason}"
    else:
        message = f"{denied} without explanation"
    code = status.get("code")
    if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code <= 599:
        code = 403
    return ApiError(
        code,
        reason if isinstance(reason, str) else "",
        message,
        status.get("details") if isinstance(status.get("details"), dict) else None,
    )
