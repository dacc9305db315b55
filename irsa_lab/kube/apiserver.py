"""The Kubernetes API server stand-in: the REST surface real clients talk to.

docs/reference/kubernetes.md §6.1. :class:`ApiServer` holds the pure request logic (create a
namespace, run the pod pipeline, answer a TokenRequest) over the in-memory
:class:`~irsa_lab.kube.store.Store`; :meth:`ApiServer.make_app` wraps it in one thin
aiohttp handler that routes by path, checks the bearer token, reads bodies and turns
every :class:`~irsa_lab.kube.status.ApiError` into a ``Status`` in one place.

Python-side hooks for the rest of the stack: ``on_pod_created`` / ``on_pod_deleted``
(the kubelet subscribes), :meth:`ApiServer.set_pod_status`,
:meth:`ApiServer.token_request`, and ``admission_log`` (the last webhook exchanges,
for stage 1 of the notebooks).
"""

from __future__ import annotations

import asyncio
import copy
import hmac
import inspect
import json
import time
import unicodedata
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import yaml
from aiohttp import web

from ..clock import Clock, rfc3339
from ..constants import NODE_NAME
from ..httpd import Served, ServerLoop
from ..ids import Ids
from ..pki import LabCA
from ..trace import Trace
from . import discovery as disc
from .admission import (
    WEBHOOK_CONFIGURATION_SHAPE,
    AdmissionRecord,
    PatchError,
    UserInfo,
    WebhookDispatcher,
    apply_patch,
    default_webhook_configuration,
    validate_webhook_configuration,
)
from .discovery import Resource
from .pod_rules import (
    NAMESPACE_SHAPE,
    POD_SHAPE,
    SERVICE_ACCOUNT_SHAPE,
    apply_pod_defaults,
    check_shape,
    default_tolerations,
    pod_warnings,
    priority_admission,
    service_account_admission,
    validate_name,
    validate_pod,
)
from .status import (
    ApiError,
    bad_request,
    conflict,
    forbidden,
    internal_error,
    invalid,
    method_not_allowed,
    not_found,
    path_not_found,
    success_status,
    unauthorized,
    unsupported_media_type,
    value_invalid,
)
from .store import (
    Store,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from .tokens import TokenIssuer

Obj = dict[str, Any]
PodHook = Callable[[Obj], None | Awaitable[None]]

ADMIN_USER: UserInfo = {
    "username": "kubernetes-admin",
    "groups": ["kubeadm:cluster-admins", "system:authenticated"],
}
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
UNDELETABLE_NAMESPACES = ("default", "kube-public", "kube-system")
AUTHENTICATION_GROUP = "authentication.k8s.io"
MAX_BODY = 3 * 1024 * 1024  # the real server's limit for a request body
DEFAULT_WATCH_TIMEOUT_S = 1800
# What the real server sends on every API response (the discovery documents, which
# are meant to be cached, say "public, max-age=3600" instead).
API_CACHE_CONTROL = "no-cache, private"
_PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/livez",
        "/readyz",
        "/version",
        "/version/",
        "/.well-known/openid-configuration",
        "/.well-known/openid-configuration/",
        "/openid/v1/jwks",
        "/openid/v1/jwks/",
    }
)
_JSON_TYPES = ("application/json", "")
_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_SHAPES = {
    "namespaces": NAMESPACE_SHAPE,
    "serviceaccounts": SERVICE_ACCOUNT_SHAPE,
    "pods": POD_SHAPE,
    "mutatingwebhookconfigurations": WEBHOOK_CONFIGURATION_SHAPE,
}
_TOKEN_REQUEST_SHAPE: dict[str, Any] = {
    "apiVersion": "str",
    "kind": "str",
    "metadata": {"name": "str", "namespace": "str", "uid": "str"},
    "spec": {
        "audiences": ["str"],
        "expirationSeconds": "int",
        "boundObjectRef": {"kind": "str", "apiVersion": "str", "name": "str", "uid": "str"},
    },
}
_SYSTEM_META = (
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "managedFields",
    "selfLink",
)


def _warning_value(text: str) -> str:
    """One ``Warning: 299 - "..."`` value: quotes and backslashes escaped, and control
    characters (a webhook may send any) turned into spaces so the header stays one line."""
    text = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


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


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, i


def _proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of one protobuf message (varint and length-delimited)."""
    out: list[tuple[int, int | bytes]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
            out.append((num, value))
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > len(buf):
                raise ValueError("truncated field")
            out.append((num, buf[i : i + size]))
            i += size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def decode_token_request_protobuf(raw: bytes) -> Obj:
    """A TokenRequest sent as ``application/vnd.kubernetes.protobuf`` (``kubectl create token``).

    The body is ``k8s\\0`` + a ``runtime.Unknown`` whose ``raw`` is the TokenRequest;
    only the fields the server reads are decoded.
    """
    if not raw.startswith(b"k8s\x00"):
        raise bad_request("the protobuf body does not start with the Kubernetes magic bytes")
    try:
        envelope = dict(_proto_fields(raw[4:]))
        inner = envelope.get(2, b"")
        assert isinstance(inner, bytes)
        body: Obj = {}
        for num, value in _proto_fields(inner):
            if not isinstance(value, bytes):
                continue
            if num == 1:  # ObjectMeta: name=1, namespace=3, uid=5
                fields = {n: v for n, v in _proto_fields(value) if isinstance(v, bytes)}
                meta = {
                    k: fields[n].decode()
                    for n, k in ((1, "name"), (3, "namespace"), (5, "uid"))
                    if n in fields
                }
                body["metadata"] = meta
            elif num == 2:  # TokenRequestSpec: audiences=1, boundObjectRef=3, expiration=4
                spec: Obj = {}
                for n, v in _proto_fields(value):
                    if n == 1 and isinstance(v, bytes):
                        spec.setdefault("audiences", []).append(v.decode())
                    elif n == 4 and isinstance(v, int):
                        spec["expirationSeconds"] = v - (1 << 64) if v >= 1 << 63 else v
                    elif n == 3 and isinstance(v, bytes):
                        ref = {n2: v2 for n2, v2 in _proto_fields(v) if isinstance(v2, bytes)}
                        spec["boundObjectRef"] = {
                            k: ref[n2].decode()
                            for n2, k in ((1, "kind"), (2, "apiVersion"), (3, "name"), (4, "uid"))
                            if n2 in ref
                        }
                body["spec"] = spec
        return body
    except (ValueError, AssertionError, UnicodeDecodeError) as exc:
        raise bad_request(f"unable to decode the protobuf body: {exc}") from None


def _ordered(obj: Obj, res: Resource) -> Obj:
    # Responses lead with kind/apiVersion/metadata, as the real server writes them.
    head = {"kind": res.kind, "apiVersion": res.api_version, "metadata": obj.get("metadata", {})}
    return {**head, **{k: v for k, v in obj.items() if k not in head}}


class ApiServer:
    """The API server stand-in: namespaces, serviceaccounts (+token), pods, webhooks, discovery."""

    def __init__(
        self,
        *,
        issuer: TokenIssuer,
        clock: Clock,
        ids: Ids,
        trace: Trace,
        ca: LabCA,
        service_resolver: Callable[[Obj], str] | None = None,
        token: str | None = None,
        admission_log_size: int = 50,
        node_name: str | None = NODE_NAME,
    ) -> None:
        self.issuer = issuer
        self.clock = clock
        self.ids = ids
        self.trace = trace
        self.ca = ca
        self.token = token or ids.secret_token(40)
        self.store = Store()
        self.admission_log: deque[AdmissionRecord] = deque(maxlen=admission_log_size)
        self.dispatcher = WebhookDispatcher(
            ids=ids,
            clock=clock,
            trace=trace,
            service_resolver=service_resolver,
            on_record=self.admission_log.append,
        )
        # The lab's one node: new pods are bound to it, as the scheduler binds them on
        # a cluster, once a kubelet stand-in subscribes to on_pod_created (with no
        # kubelet there is no node, and pods stay unscheduled). None never binds.
        self.node_name = node_name
        self.on_pod_created: list[PodHook] = []
        self.on_pod_deleted: list[PodHook] = []
        self.url = ""
        for ns in SYSTEM_NAMESPACES:
            self.create_namespace({"metadata": {"name": ns}})

    # -- serving ---------------------------------------------------------------------
    def serve(self, loop: ServerLoop, port: int = 0) -> Served:
        """Serve over HTTPS with a lab-CA certificate on ``loop``; sets :attr:`url`."""
        served = loop.serve(
            "apiserver", self.make_app(), tls=self.ca.issue().server_context(), port=port
        )
        self.url = served.url
        return served

    @property
    def last_admission(self) -> AdmissionRecord | None:
        """The most recent webhook exchange, or None."""
        return self.admission_log[-1] if self.admission_log else None

    # -- objects -------------------------------------------------------------------
    def _new_meta(self, meta: Obj, namespace: str | None) -> Obj:
        meta = {k: v for k, v in meta.items() if k not in _SYSTEM_META}
        if namespace is not None:
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        return meta

    def _stamp(self, obj: Obj) -> None:
        obj["metadata"]["uid"] = self.ids.uuid4()
        obj["metadata"]["creationTimestamp"] = rfc3339(self.clock.now())

    def _store_new(self, res: Resource, obj: Obj) -> Obj:
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            prefix = meta["generateName"]
            # The server trims the prefix so that prefix + 5 chars fits in 63.
            prefix = prefix[: 63 - 5]
            return self.store.create_named(
                res.name, obj, lambda: prefix + self.ids.generate_name_suffix()
            )
        return self.store.create(res.name, obj, res.group)

    def _require_namespace(self, namespace: str) -> Obj:
        ns = self.store.get("namespaces", "", namespace)
        if ns is None:
            raise not_found("namespaces", namespace)
        return ns

    def _check_namespace_active(self, namespace: str, res: Resource, name: str) -> None:
        ns = self._require_namespace(namespace)
        if (ns.get("status") or {}).get("phase") == "Terminating":
            raise forbidden(
                f'{res.name} "{name}" is forbidden: unable to create new content '
                f"in namespace {namespace} because it is being terminated"
            )

    def create_namespace(self, body: Obj) -> Obj:
        """Create a namespace: label, finalizer, phase Active, and its ``default`` SA."""
        obj = check_shape(body, "Namespace", NAMESPACE_SHAPE)
        obj["metadata"] = self._new_meta(obj.get("metadata") or {}, None)
        name = obj["metadata"].get("name") or ""
        causes = validate_name(
            name, label=True, allow_empty=bool(obj["metadata"].get("generateName"))
        )
        if causes:
            raise invalid("Namespace", name, causes)
        self._stamp(obj)
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
        labels = obj["metadata"].setdefault("labels", {})
        stored = self._store_new(disc.NAMESPACES, obj)
        real = stored["metadata"]["name"]
        if labels.get("kubernetes.io/metadata.name") != real:
            # The automatic label names the namespace (generated names included).
            stored = self.store.mutate(
                "namespaces",
                "",
                real,
                lambda o: (
                    o["metadata"]
                    .setdefault("labels", {})
                    .__setitem__("kubernetes.io/metadata.name", real)
                ),
            )
        # The service-account controller creates "default" in every new namespace.
        if self.store.get("serviceaccounts", real, "default") is None:
            sa = {"metadata": {"name": "default", "namespace": real}}
            self._stamp(sa)
            self.store.create("serviceaccounts", sa)
        return _ordered(stored, disc.NAMESPACES)

    # -- seeding from Python (the stack, notebooks) --------------------------------------
    def seed_namespace(self, name: str) -> Obj:
        """Create the namespace unless it exists; returns it either way."""
        found = self.store.get("namespaces", "", name)
        if found is not None:
            return _ordered(found, disc.NAMESPACES)
        return self.create_namespace({"metadata": {"name": name}})

    def seed_service_account(
        self, namespace: str, name: str, *, annotations: dict[str, str] | None = None
    ) -> Obj:
        """Create (or update the annotations of) a ServiceAccount; creates the namespace too."""
        self.seed_namespace(namespace)
        found = self.store.get("serviceaccounts", namespace, name)
        if found is None:
            meta: Obj = {"name": name}
            if annotations:
                meta["annotations"] = dict(annotations)
            return self.create_service_account(namespace, {"metadata": meta})
        if annotations:
            return self.patch(
                disc.SERVICEACCOUNTS,
                namespace,
                name,
                "application/merge-patch+json",
                {"metadata": {"annotations": dict(annotations)}},
            )
        return _ordered(found, disc.SERVICEACCOUNTS)

    def seed_mutating_webhook_configuration(self, body: Obj) -> Obj:
        """Create a MutatingWebhookConfiguration, replacing one of the same name."""
        name = (body.get("metadata") or {}).get("name") or ""
        if name and self.store.get(disc.WEBHOOKS.name, "", name) is not None:
            return self.replace(disc.WEBHOOKS, "", name, copy.deepcopy(body))
        return self.create_webhook_configuration(copy.deepcopy(body))

    def create_service_account(self, namespace: str, body: Obj) -> Obj:
        """Create a ServiceAccount; annotations are stored verbatim."""
        obj = check_shape(body, "ServiceAccount", SERVICE_ACCOUNT_SHAPE)
        obj["metadata"] = self._new_meta(obj.get("metadata") or {}, namespace)
        name = obj["metadata"].get("name") or ""
        causes = validate_name(name, allow_empty=bool(obj["metadata"].get("generateName")))
        if causes:
            raise invalid("ServiceAccount", name, causes)
        self._check_namespace_active(namespace, disc.SERVICEACCOUNTS, name)
        self._stamp(obj)
        return _ordered(self._store_new(disc.SERVICEACCOUNTS, obj), disc.SERVICEACCOUNTS)

    def create_webhook_configuration(self, body: Obj) -> Obj:
        """Create a MutatingWebhookConfiguration with the v1 defaults applied."""
        obj = check_shape(body, disc.WEBHOOKS.kind, WEBHOOK_CONFIGURATION_SHAPE)
        obj["metadata"] = self._new_meta(obj.get("metadata") or {}, None)
        default_webhook_configuration(obj)
        obj.setdefault("webhooks", [])
        if not obj["metadata"].get("name") and obj["metadata"].get("generateName"):
            obj["metadata"]["name"] = "placeholder"
            validate_webhook_configuration(obj)
            del obj["metadata"]["name"]
        else:
            validate_webhook_configuration(obj)
        self._stamp(obj)
        obj["metadata"]["generation"] = 1
        return _ordered(self._store_new(disc.WEBHOOKS, obj), disc.WEBHOOKS)

    async def create_pod(
        self, namespace: str, body: Obj, *, dry_run: bool = False
    ) -> tuple[Obj, list[str]]:
        """The pod create pipeline of §6.1; returns the stored pod and webhook warnings."""
        started = time.perf_counter()
        pod = check_shape(body, "Pod", POD_SHAPE)
        meta = self._new_meta(pod.get("metadata") or {}, namespace)
        pod["metadata"] = meta
        name = meta.get("name") or ""
        self._check_namespace_active(namespace, disc.PODS, name)
        apply_pod_defaults(pod)
        pod.pop("status", None)
        pod["status"] = {}
        # In-tree mutating admission plugins, in the server's order.
        service_account_admission(
            pod,
            namespace,
            lambda sa: self.store.get("serviceaccounts", namespace, sa),
            lambda: self.ids.generate_name_suffix(),
        )
        priority_admission(pod)
        default_tolerations(pod)
        ns_obj = self._require_namespace(namespace)
        configs, _ = self.store.list("mutatingwebhookconfigurations")
        result = await self.dispatcher.run(
            pod,
            namespace=namespace,
            namespace_labels=(ns_obj["metadata"].get("labels") or {}),
            configs=configs,
            user=ADMIN_USER,
        )
        pod = result.pod
        # Webhooks cannot move the pod or give it identity fields.
        pod["metadata"] = self._new_meta(pod.get("metadata") or {}, namespace)
        pod.pop("apiVersion", None)
        pod.pop("kind", None)
        validate_pod(pod)
        # The strategy's warnings come after the webhooks' (they run in BeforeCreate).
        warnings = [*result.warnings, *pod_warnings(pod)]
        pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        self._stamp(pod)
        pod["metadata"]["generation"] = 1  # as the real server (v1.36) gives every pod
        if dry_run:
            pod["metadata"].setdefault(
                "name",
                (pod["metadata"].get("generateName") or "") + self.ids.generate_name_suffix(),
            )
            return _ordered(pod, disc.PODS), warnings
        stored = _ordered(self._store_new(disc.PODS, pod), disc.PODS)
        # The create answer is the pod as stored; the binding is a later write.
        bound = self._bind(stored)
        self.trace.record(
            "learner",
            "apiserver",
            "CreatePod",
            "ok",
            duration_ms=(time.perf_counter() - started) * 1000,
            namespace=namespace,
            pod=stored["metadata"]["name"],
            webhooks=len(result.records),
        )
        await self._run_hooks(self.on_pod_created, bound)
        return stored, warnings

    def _bind(self, pod: Obj) -> Obj:
        """Stand in for the scheduler: bind a new pod to :attr:`node_name` (one write,
        a MODIFIED event, as the real binding is), so ``spec.nodeName`` is set and the
        pod's tokens carry the ``node`` claim. Returns the pod as bound."""
        spec = pod.get("spec") or {}
        if self.node_name is None or not self.on_pod_created or spec.get("nodeName"):
            return pod
        meta = pod["metadata"]
        node = self.node_name
        try:
            bound = self.store.mutate(
                "pods",
                meta["namespace"],
                meta["name"],
                lambda o: o.setdefault("spec", {}).__setitem__("nodeName", node),
            )
        except ApiError:
            return pod  # deleted meanwhile
        return _ordered(bound, disc.PODS)

    async def _run_hooks(self, hooks: list[PodHook], pod: Obj) -> None:
        for hook in list(hooks):
            try:
                out = hook(copy.deepcopy(pod))
                if inspect.isawaitable(out):
                    await out
            except Exception as exc:  # noqa: BLE001 - a broken subscriber must not fail the API call
                self.trace.record(
                    "apiserver",
                    "kubelet",
                    "PodHook",
                    "error",
                    pod=pod["metadata"]["name"],
                    error=repr(exc),
                )

    def set_pod_status(self, namespace: str, name: str, status: Obj) -> None:
        """Shallow-merge ``status`` into the pod's status (emits a MODIFIED watch event)."""
        self.store.mutate(
            "pods",
            namespace,
            name,
            lambda o: o.setdefault("status", {}).update(copy.deepcopy(status)),
        )

    async def delete_pod(self, namespace: str, name: str) -> Obj:
        """Delete a pod at once (grace 0: there is no kubelet to wait for)."""
        pod = self.store.delete("pods", namespace, name)
        pod["metadata"]["deletionTimestamp"] = rfc3339(self.clock.now())
        pod["metadata"]["deletionGracePeriodSeconds"] = 0
        await self._run_hooks(self.on_pod_deleted, pod)
        return _ordered(pod, disc.PODS)

    async def delete_namespace(self, name: str) -> Obj:
        """Delete a namespace and everything in it at once; answers with phase Terminating."""
        if name in UNDELETABLE_NAMESPACES:
            raise forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        self._require_namespace(name)
        for pod in self.store.list("pods", name)[0]:
            try:
                await self.delete_pod(name, pod["metadata"]["name"])
            except ApiError:
                pass  # deleted meanwhile
        for sa in self.store.list("serviceaccounts", name)[0]:
            try:
                self.store.delete("serviceaccounts", name, sa["metadata"]["name"])
            except ApiError:
                pass
        ns = self.store.delete("namespaces", "", name)
        ns["metadata"]["deletionTimestamp"] = rfc3339(self.clock.now())
        ns["status"] = {"phase": "Terminating"}
        return _ordered(ns, disc.NAMESPACES)

    # -- TokenRequest (§1.1) ----------------------------------------------------------
    def token_request(self, namespace: str, sa_name: str, body: Obj) -> Obj:
        """Answer a TokenRequest for ``namespace/sa_name``; raises ``ApiError``.

        Used by the HTTP handler and by the kubelet stand-in; returns the full
        ``TokenRequest`` with ``spec`` echoed and ``status.token`` set.
        """
        started = time.perf_counter()
        req = check_shape(body if body is not None else {}, "TokenRequest", _TOKEN_REQUEST_SHAPE)
        if not namespace:
            raise bad_request("namespace is required")
        meta = req.get("metadata") or {}
        spec = req.get("spec") or {}
        causes = []
        if meta.get("name") and meta["name"] != sa_name:
            causes.append(
                value_invalid(
                    "metadata.name",
                    meta["name"],
                    "must match the service account name if specified",
                )
            )
        if meta.get("namespace") and meta["namespace"] != namespace:
            causes.append(
                value_invalid(
                    "metadata.namespace",
                    meta["namespace"],
                    "must match the service account namespace if specified",
                )
            )
        if causes:
            # The real server has already named the request after the ServiceAccount
            # in the URL, so the message quotes that name, not the mismatched one.
            raise invalid("TokenRequest", sa_name, causes, AUTHENTICATION_GROUP)
        sa = self.store.get("serviceaccounts", namespace, sa_name)
        if sa is None:
            raise not_found("serviceaccounts", sa_name)
        sa_uid = sa["metadata"]["uid"]
        if meta.get("uid") and meta["uid"] != sa_uid:
            raise conflict(
                "serviceaccounts",
                sa_name,
                f"the UID in the token request ({meta['uid']}) does not match the "
                f"UID of the service account ({sa_uid})",
            )
        audiences = list(spec.get("audiences") or self.issuer.api_audiences)
        expiration = int(spec.get("expirationSeconds") or 3600)
        from .tokens import validate_expiration

        if validate_expiration(expiration) is not None:
            why = (
                "may not specify a duration less than 10 minutes"
                if expiration < 600
                else "may not specify a duration larger than 2^32 seconds"
            )
            raise invalid(
                "TokenRequest",
                "",
                [value_invalid("spec.expirationSeconds", expiration, why)],
                AUTHENTICATION_GROUP,
            )
        ref = spec.get("boundObjectRef")
        pod_ref: tuple[str, str] | None = None
        node_ref: tuple[str, str] | None = None
        if ref:
            group = (
                (ref.get("apiVersion") or "").rpartition("/")[0]
                if "/" in (ref.get("apiVersion") or "")
                else ""
            )
            kind = ref.get("kind") or ""
            ref_name = ref.get("name") or ""
            if group == "" and kind == "Pod":
                pod = self.store.get("pods", namespace, ref_name)
                if pod is None:
                    raise not_found("pods", ref_name)
                if (pod.get("spec") or {}).get("serviceAccountName") != sa_name:
                    raise bad_request(
                        f'cannot bind token for serviceaccount "{sa_name}" to '
                        "pod running with different serviceaccount name."
                    )
                uid = pod["metadata"]["uid"]
                if ref.get("uid") and ref["uid"] != uid:
                    # This conflict names the object by its Kind ("Pod"), not by
                    # its resource, as the real server's message does.
                    raise conflict(
                        "Pod",
                        ref_name,
                        f"the UID in the bound object reference ({ref['uid']}) does "
                        f"not match the UID in record. The object might have been "
                        "deleted and then recreated",
                    )
                pod_ref = (ref_name, uid)
                node_name = (pod.get("spec") or {}).get("nodeName")
                if node_name:
                    # No Node objects in the lab: only the name is embedded, as when the
                    # real server cannot find the Node.
                    node_ref = (node_name, "")
            elif group == "" and kind == "Secret":
                raise not_found("secrets", ref_name)
            elif group == "" and kind == "Node":
                raise not_found("nodes", ref_name)
            else:
                raise bad_request(
                    f"cannot bind token to object of type {ref.get('apiVersion', '')}, Kind={kind}"
                )
        issued = self.issuer.issue(
            namespace=namespace,
            service_account=(sa_name, sa_uid),
            audiences=audiences,
            expiration_seconds=expiration,
            pod=pod_ref,
            node=node_ref,
        )
        now = self.clock.now()
        # boundObjectRef is a pointer without omitempty in the Go type: an unbound
        # request is echoed with "boundObjectRef": null.
        out_spec: Obj = {
            "audiences": audiences,
            "expirationSeconds": expiration,
            "boundObjectRef": dict(ref) if ref else None,
        }
        self.trace.record(
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
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": sa_name,
                "namespace": namespace,
                "uid": sa_uid,
                "creationTimestamp": rfc3339(now),
            },
            "spec": out_spec,
            # status.expirationTimestamp follows spec.expirationSeconds, never the
            # extended JWT exp (§1.1 step 9).
            "status": {
                "token": issued.token,
                "expirationTimestamp": rfc3339(int(now) + expiration),
            },
        }

    # -- replace / patch --------------------------------------------------------------
    def _finish_update(self, res: Resource, old: Obj, new: Obj) -> Obj:
        """Keep identity fields, default and validate ``new`` as a replacement of ``old``."""
        new = check_shape(new, res.kind, _SHAPES[res.name])
        meta = new.get("metadata") or {}
        if meta.get("name") and meta["name"] != old["metadata"]["name"]:
            raise bad_request(
                f"the name of the object ({meta['name']}) does not match the name "
                f"on the URL ({old['metadata']['name']})"
            )
        kept = {
            k: old["metadata"][k]
            for k in ("name", "namespace", "uid", "creationTimestamp", "generation")
            if k in old["metadata"]
        }
        meta = {k: v for k, v in meta.items() if k not in _SYSTEM_META or k == "resourceVersion"}
        meta.update(kept)
        new["metadata"] = meta
        if res is disc.NAMESPACES:
            new["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = old[
                "metadata"
            ]["name"]
            new["spec"] = old.get("spec", {})
            new["status"] = old.get("status", {})
        elif res is disc.WEBHOOKS:
            default_webhook_configuration(new)
            new.setdefault("webhooks", [])
            validate_webhook_configuration(new)
        elif res is disc.PODS:
            apply_pod_defaults(new)
            new["status"] = old.get("status", {})
            if new.get("spec") != old.get("spec"):
                raise invalid(
                    "Pod",
                    old["metadata"]["name"],
                    [
                        {
                            "reason": "FieldValueForbidden",
                            "message": "Forbidden: pod updates may not change fields other than "
                            "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                            "`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
                            "additions to existing tolerations),"
                            "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 "
                            "if it was previously negative)",
                            "field": "spec",
                        }
                    ],
                )
        new.pop("apiVersion", None)
        new.pop("kind", None)
        # generation counts changes of what the object asks for, not of its metadata.
        watched = {"pods": "spec", "mutatingwebhookconfigurations": "webhooks"}.get(res.name)
        if watched and "generation" in meta and new.get(watched) != old.get(watched):
            meta["generation"] = int(meta["generation"]) + 1
        return new

    def replace(self, res: Resource, namespace: str, name: str, body: Any) -> Obj:
        """PUT: replace an object (409 on a stale resourceVersion)."""
        old = self.store.require(res.name, namespace, name, res.group)
        new = self._finish_update(res, old, body)
        expect = new["metadata"].pop("resourceVersion", None)
        return _ordered(self.store.update(res.name, new, expect), res)

    def patch(self, res: Resource, namespace: str, name: str, content_type: str, patch: Any) -> Obj:
        """PATCH with a JSON patch, a merge patch, or a strategic merge patch (as merge)."""
        old = self.store.require(res.name, namespace, name, res.group)
        base = _ordered(old, res)
        if content_type == "application/json-patch+json":
            if not isinstance(patch, list):
                raise bad_request(
                    "json: cannot unmarshal object into Go value of type jsonpatch.Patch"
                )
            try:
                new = apply_patch(base, patch)
            except PatchError as exc:
                raise ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an error in our request: {exc}",
                ) from None
        else:
            if not isinstance(patch, dict):
                raise bad_request(
                    "json: cannot unmarshal into Go value of type map[string]interface {}"
                )
            new = merge_patch(base, patch)
        if not isinstance(new, dict):
            raise bad_request("the patched object is not a JSON object")
        new = self._finish_update(res, old, new)
        expect = new["metadata"].pop("resourceVersion", None)
        if expect == old["metadata"].get("resourceVersion"):
            expect = None
        return _ordered(self.store.update(res.name, new, expect), res)

    # -- the HTTP layer ----------------------------------------------------------------
    def make_app(self) -> web.Application:
        """The aiohttp application: one handler routes everything."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._handle)

        async def close_session(_: web.Application) -> None:
            await self.dispatcher.close()

        async def end_watches(_: web.Application) -> None:
            # Runs before the runner waits for open requests: long-running watches
            # end at once instead of holding the shutdown until its timeout.
            self.store.close_watches()

        app.on_shutdown.append(end_watches)
        app.on_cleanup.append(close_session)
        return app

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            if request.path not in _PUBLIC_PATHS and not self._authenticated(request):
                raise unauthorized()
            return await self._route(request)
        except ApiError as err:
            return self._status_response(err)
        except web.HTTPRequestEntityTooLarge:
            return self._status_response(
                ApiError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
            )
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place a bug becomes a Status
            self.trace.record(
                "learner",
                "apiserver",
                request.method + " " + request.path,
                "InternalError",
                error=repr(exc),
            )
            return self._status_response(internal_error(repr(exc)))

    def _authenticated(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode()
        )

    @staticmethod
    def _status_response(err: ApiError) -> web.Response:
        # Compact, as every JSON body the real server writes.
        resp = web.Response(
            body=json.dumps(err.status(), separators=(",", ":")).encode(),
            status=err.code,
            content_type="application/json",
            headers={"Cache-Control": API_CACHE_CONTROL},
        )
        for k, v in err.headers.items():
            resp.headers[k] = v
        return resp

    @staticmethod
    def _json(
        obj: Any,
        status: int = 200,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        return web.Response(
            body=json.dumps(obj, separators=(",", ":")).encode(),
            status=status,
            content_type=content_type,
            headers={"Cache-Control": API_CACHE_CONTROL, **(headers or {})},
        )

    async def _body(self, request: web.Request, patch: bool = False, protobuf: bool = False) -> Any:
        ctype = request.content_type if request.headers.get("Content-Type") else ""
        raw = await request.read()
        if protobuf and ctype == "application/vnd.kubernetes.protobuf":
            return decode_token_request_protobuf(raw)
        if patch:
            if ctype not in _PATCH_TYPES:
                raise unsupported_media_type(
                    "application/json-patch+json, "
                    "application/merge-patch+json, "
                    "application/apply-patch+yaml"
                )
        elif ctype not in _JSON_TYPES + ("application/yaml", "*/*"):
            raise unsupported_media_type(
                "application/json, application/yaml, application/vnd.kubernetes.protobuf"
            )
        if not raw.strip():
            if patch:
                raise bad_request("empty patch")
            raise bad_request("the request body is empty")
        try:
            if ctype == "application/yaml":
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None

    @staticmethod
    def _check_kind(body: Any, res: Resource) -> None:
        # A body may omit kind/apiVersion (the Python client does); a wrong one is refused.
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

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        method = request.method
        if path in ("/healthz", "/livez", "/readyz"):
            if method != "GET":
                raise method_not_allowed()
            return web.Response(text="ok", content_type="text/plain")
        if path.rstrip("/") == "/.well-known/openid-configuration":
            return self._json(
                self.issuer.discovery_document(), headers={"Cache-Control": "public, max-age=3600"}
            )
        if path.rstrip("/") == "/openid/v1/jwks":
            return self._json(
                self.issuer.jwks(),
                content_type="application/jwk-set+json",
                headers={"Cache-Control": "public, max-age=3600"},
            )
        parts = [p for p in path.split("/") if p]
        if method == "GET":
            static = self._discovery(parts, request)
            if static is not None:
                return self._json(static)
        if parts[:2] == ["api", "v1"]:
            return await self._resource_route(request, parts[2:], "")
        if len(parts) >= 3 and parts[0] == "apis":
            return await self._resource_route(request, parts[3:], f"{parts[1]}/{parts[2]}")
        raise path_not_found()

    def _discovery(self, parts: list[str], request: web.Request) -> Obj | None:
        if parts == ["version"]:
            return disc.version_info()
        if parts[:2] == ["openapi", "v3"]:
            doc = (
                disc.openapi_v3_root()
                if len(parts) == 2
                else disc.openapi_v3_document("/".join(parts[2:]))
            )
            if doc is None:
                raise path_not_found()
            return doc
        if parts == ["api"]:
            return disc.api_versions(request.host)
        if parts == ["api", "v1"]:
            return disc.core_resources()
        if parts == ["apis"]:
            return disc.api_groups()
        if len(parts) == 2 and parts[0] == "apis":
            found = disc.api_group(parts[1])
            if found is None:
                raise path_not_found()
            return found
        if len(parts) == 3 and parts[0] == "apis":
            found = disc.group_resources(f"{parts[1]}/{parts[2]}")
            if found is None:
                raise path_not_found()
            return found
        return None

    def _resource(self, group_version: str, name: str) -> Resource:
        pool = (
            disc.CORE_RESOURCES
            if not group_version
            else disc.GROUP_RESOURCES.get(group_version, ())
        )
        for res in pool:
            if res.name == name:
                return res
        raise path_not_found()

    async def _resource_route(
        self, request: web.Request, rest: list[str], group_version: str
    ) -> web.StreamResponse:
        # rest: [res] | [res, name] | [namespaces, ns, res] | [namespaces, ns, res, name, sub]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise path_not_found()
        res = self._resource(group_version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if len(rest) > 3 or (namespace is not None and not res.namespaced):
            raise path_not_found()
        method = request.method
        if sub is not None:
            if res is disc.SERVICEACCOUNTS and sub == "token" and namespace:
                if method != "POST":
                    raise method_not_allowed()
                body = await self._body(request, protobuf=True)
                if isinstance(body, dict) and body.get("kind") not in (None, "", "TokenRequest"):
                    raise bad_request(
                        f'{body.get("kind")} in version "v1" cannot be handled as a TokenRequest'
                    )
                return self._json(self.token_request(namespace, name or "", body), 201)
            raise path_not_found()
        if name is None:
            if method == "GET":
                return await self._list(request, res, namespace)
            if method == "POST":
                if res.namespaced and namespace is None:
                    raise method_not_allowed()
                return await self._create(request, res, namespace)
            raise method_not_allowed()
        ns = namespace or ""
        if res.namespaced and namespace is None:
            raise path_not_found()
        if method == "GET":
            if res in (disc.EVENTS, disc.EVENTS_V1):
                raise not_found("events", name, res.group)
            return self._json(_ordered(self.store.require(res.name, ns, name, res.group), res))
        if method == "DELETE":
            return self._json(await self._delete(res, ns, name))
        if res in (disc.EVENTS, disc.EVENTS_V1):
            raise method_not_allowed()
        if method == "PUT":
            body = await self._body(request)
            self._check_kind(body, res)
            return self._json(self.replace(res, ns, name, body))
        if method == "PATCH":
            ctype = request.content_type if request.headers.get("Content-Type") else ""
            if ctype == "application/apply-patch+yaml":
                raise unsupported_media_type(
                    "application/json-patch+json, "
                    "application/merge-patch+json, "
                    "application/strategic-merge-patch+json"
                )
            body = await self._body(request, patch=True)
            return self._json(self.patch(res, ns, name, ctype, body))
        raise method_not_allowed()

    async def _create(
        self, request: web.Request, res: Resource, namespace: str | None
    ) -> web.Response:
        body = await self._body(request, protobuf=res is disc.SELF_SUBJECT_REVIEWS)
        self._check_kind(body, res)
        if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
            body_ns = body["metadata"].get("namespace")
            if res.namespaced and body_ns and body_ns != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request"
                )
        if res is disc.NAMESPACES:
            return self._json(self.create_namespace(body), 201)
        if res is disc.SERVICEACCOUNTS:
            return self._json(self.create_service_account(namespace or "", body), 201)
        if res is disc.WEBHOOKS:
            return self._json(self.create_webhook_configuration(body), 201)
        if res is disc.SELF_SUBJECT_REVIEWS:
            # kubectl auth whoami: who the bearer token is (the body carries nothing).
            return self._json(
                {
                    "kind": res.kind,
                    "apiVersion": res.api_version,
                    "metadata": {"creationTimestamp": rfc3339(self.clock.now())},
                    "status": {"userInfo": dict(ADMIN_USER)},
                },
                201,
            )
        if res is disc.PODS:
            dry = request.query.get("dryRun") == "All"
            pod, warnings = await self.create_pod(namespace or "", body, dry_run=dry)
            headers = {}
            if warnings:
                headers["Warning"] = ", ".join(_warning_value(w) for w in warnings)
            return self._json(pod, 201, headers=headers)
        raise method_not_allowed()

    async def _delete(self, res: Resource, ns: str, name: str) -> Obj:
        if res is disc.PODS:
            return await self.delete_pod(ns, name)
        if res is disc.NAMESPACES:
            return await self.delete_namespace(name)
        if res in (disc.EVENTS, disc.EVENTS_V1):
            raise method_not_allowed()
        obj = self.store.delete(res.name, ns, name, res.group)
        if res is disc.WEBHOOKS:
            return success_status(
                {"name": name, "group": res.group, "kind": res.name, "uid": obj["metadata"]["uid"]}
            )
        return _ordered(obj, res)

    async def _list(
        self, request: web.Request, res: Resource, namespace: str | None
    ) -> web.StreamResponse:
        q = request.query
        labels = parse_label_selector(q.get("labelSelector", ""))
        fields = parse_field_selector(q.get("fieldSelector", ""))

        def accept(obj: Obj) -> bool:
            return labels_match(labels, (obj.get("metadata") or {}).get("labels") or {}) and (
                fields_match(fields, obj)
            )

        if q.get("watch", "").lower() in ("true", "1"):
            return await self._watch(request, res, namespace, accept)
        if res in (disc.EVENTS, disc.EVENTS_V1):
            items: list[Obj] = []
            rv = self.store.resource_version
        else:
            items, rv = self.store.list(res.name, namespace)
            items = [_ordered(o, res) for o in items if accept(o)]
        if "as=Table" in request.headers.get("Accept", ""):
            return self._json(
                disc.table(res.name, items, str(rv), self.clock.now()),
                content_type="application/json",
            )
        for item in items:
            # Items of a list carry no kind/apiVersion on the real server.
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return self._json(
            {
                "kind": res.list_kind,
                "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            }
        )

    async def _watch(
        self,
        request: web.Request,
        res: Resource,
        namespace: str | None,
        accept: Callable[[Obj], bool],
    ) -> web.StreamResponse:
        q = request.query
        try:
            timeout = float(q.get("timeoutSeconds", DEFAULT_WATCH_TIMEOUT_S))
            since_text = q.get("resourceVersion", "")
            since = int(since_text) if since_text not in ("", "0") else None
        except ValueError:
            raise bad_request("invalid timeoutSeconds or resourceVersion") from None
        # A streaming list (sendInitialEvents=true, resourceVersionMatch=NotOlderThan, as
        # client-go's informers send by default): the current state as ADDED events,
        # then the initial-events-end BOOKMARK, then changes.
        initial_events = q.get("sendInitialEvents", "").lower() == "true"
        if initial_events:
            since = None
        expired: ApiError | None = None
        watch = None
        if res not in (disc.EVENTS, disc.EVENTS_V1):
            try:
                watch = self.store.watch(
                    res.name, namespace, accept, since, initial_events_end=initial_events
                )
            except ApiError as err:
                expired = err
        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": "application/json", "Cache-Control": API_CACHE_CONTROL},
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if expired is not None:
            # A watch from a compacted resourceVersion gets one ERROR event with a 410
            # Status, so clients re-list.
            await resp.write(
                (json.dumps({"type": "ERROR", "object": expired.status()}) + "\n").encode()
            )
            await resp.write_eof()
            return resp
        deadline = asyncio.get_running_loop().time() + max(0.0, timeout)
        try:
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                if watch is None:
                    await asyncio.sleep(remaining)
                    break
                event = await watch.next(remaining)
                if event is None:
                    break
                line = (
                    json.dumps(
                        {"type": event.type, "object": _ordered(event.object, res)},
                        separators=(",", ":"),
                    )
                    + "\n"
                )
                await resp.write(line.encode())
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            if watch is not None:
                watch.close()
        try:
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        return resp
