"""The Kubernetes API server stand-in: the operations real clients reach over REST.

docs/reference/kubernetes.md §6.1. :class:`ApiServer` holds the request logic (create a
namespace, run the pod pipeline, answer a TokenRequest or a TokenReview, authenticate a
bearer token) over the in-memory :class:`~irsa_lab.kube.store.Store`. Around it, one
module per seam:

- :mod:`irsa_lab.kube.routes`: the aiohttp app, which authenticates, authorizes and
  routes (:meth:`ApiServer.make_app`);
- :mod:`irsa_lab.kube.wire`: bodies in, JSON and ``Status`` out, merge patch, warnings;
  :mod:`irsa_lab.kube.protobuf` reads and writes Kubernetes protobuf bodies;
- :mod:`irsa_lab.kube.token_request`, :mod:`irsa_lab.kube.token_review` and
  :mod:`irsa_lab.kube.authn`: the ``authentication.k8s.io`` operations and the
  ServiceAccount token authenticator behind them.

Python-side hooks for the rest of the stack: ``on_pod_created`` / ``on_pod_deleted``
(the kubelet subscribes), :meth:`ApiServer.set_pod_status`,
:meth:`ApiServer.token_request`, and ``admission_log`` (the last webhook exchanges,
for stage 1 of the notebooks).
"""

from __future__ import annotations

import copy
import hmac
import inspect
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import web
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
from .authn import Authenticated, NotRecognised, authenticate_service_account_token, intersect
from .discovery import Resource
from .exec_ws import EmbeddedExec
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
from .routes import make_app
from .status import ApiError, bad_request, forbidden, invalid, not_found
from .store import Store, copy_json
from .token_request import answer_token_request
from .token_review import review_token
from .tokens import TokenIssuer
from .wire import API_CACHE_CONTROL, SYSTEM_META, merge_patch, ordered

__all__ = [
    "ADMIN_USER",
    "API_CACHE_CONTROL",
    "SYSTEM_NAMESPACES",
    "UNDELETABLE_NAMESPACES",
    "ApiServer",
    "PodHook",
]

Obj = dict[str, Any]
PodHook = Callable[[Obj], None | Awaitable[None]]

ADMIN_USER: UserInfo = {
    "username": "kubernetes-admin",
    "groups": ["kubeadm:cluster-admins", "system:authenticated"],
}
SYSTEM_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")
UNDELETABLE_NAMESPACES = ("default", "kube-public", "kube-system")
_SHAPES = {
    "namespaces": NAMESPACE_SHAPE,
    "serviceaccounts": SERVICE_ACCOUNT_SHAPE,
    "pods": POD_SHAPE,
    "mutatingwebhookconfigurations": WEBHOOK_CONFIGURATION_SHAPE,
}


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
        self.admission_count = 0  # every record ever appended: a mark for "since"
        self.dispatcher = WebhookDispatcher(
            ids=ids,
            clock=clock,
            trace=trace,
            service_resolver=service_resolver,
            on_record=self._record_admission,
        )
        # The lab's one node: new pods are bound to it, as the scheduler binds them on
        # a cluster, once a kubelet stand-in subscribes to on_pod_created (with no
        # kubelet there is no node, and pods stay unscheduled). None never binds.
        self.node_name = node_name
        self.on_pod_created: list[PodHook] = []
        self.on_pod_deleted: list[PodHook] = []
        # True once a namespace controller finalizes deleted namespaces (see
        # delete_namespace); the embedded lab's controllers set it.
        self.namespace_controller = False
        # Runs `kubectl exec` commands (the embedded lab sets it; None: no node to run on).
        self.pod_exec: EmbeddedExec | None = None
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

    def _record_admission(self, record: AdmissionRecord) -> None:
        self.admission_log.append(record)
        self.admission_count += 1

    def admissions_since(self, mark: int) -> list[AdmissionRecord]:
        """The records appended after :attr:`admission_count` was ``mark`` (those the
        bounded log still holds)."""
        newer = self.admission_count - mark
        return list(self.admission_log)[-newer:] if newer > 0 else []

    @property
    def last_admission(self) -> AdmissionRecord | None:
        """The most recent webhook exchange, or None."""
        return self.admission_log[-1] if self.admission_log else None

    # -- objects -------------------------------------------------------------------
    def _new_meta(self, meta: Obj, namespace: str | None) -> Obj:
        meta = {k: v for k, v in meta.items() if k not in SYSTEM_META}
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
        return ordered(stored, disc.NAMESPACES)

    # -- seeding from Python (the stack, notebooks) --------------------------------------
    def seed_namespace(self, name: str) -> Obj:
        """Create the namespace unless it exists; returns it either way."""
        found = self.store.get("namespaces", "", name)
        if found is not None:
            return ordered(found, disc.NAMESPACES)
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
        return ordered(found, disc.SERVICEACCOUNTS)

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
        return ordered(self._store_new(disc.SERVICEACCOUNTS, obj), disc.SERVICEACCOUNTS)

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
        return ordered(self._store_new(disc.WEBHOOKS, obj), disc.WEBHOOKS)

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
        configs, _ = self.store.view("mutatingwebhookconfigurations")  # read only
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
            return ordered(pod, disc.PODS), warnings
        stored = ordered(self._store_new(disc.PODS, pod), disc.PODS)
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
        return ordered(bound, disc.PODS)

    async def _run_hooks(self, hooks: list[PodHook], pod: Obj) -> None:
        for hook in list(hooks):
            try:
                out = hook(copy_json(pod))
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
            lambda o: o.setdefault("status", {}).update(copy_json(status)),
        )

    async def delete_pod(self, namespace: str, name: str) -> Obj:
        """Delete a pod at once (grace 0: there is no kubelet to wait for)."""
        pod = self.store.delete("pods", namespace, name)
        pod["metadata"]["deletionTimestamp"] = rfc3339(self.clock.now())
        pod["metadata"]["deletionGracePeriodSeconds"] = 0
        await self._run_hooks(self.on_pod_deleted, pod)
        return ordered(pod, disc.PODS)

    async def delete_namespace(self, name: str) -> Obj:
        """Delete a namespace; answers with phase Terminating.

        With :attr:`namespace_controller` set (the embedded lab's controllers), the
        namespace stays Terminating until that controller has emptied it, as on a
        cluster; otherwise it and everything in it go at once.
        """
        if name in UNDELETABLE_NAMESPACES:
            raise forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
        found = self._require_namespace(name)
        if self.namespace_controller:
            if found["metadata"].get("deletionTimestamp"):
                return ordered(found, disc.NAMESPACES)
            now = rfc3339(self.clock.now())

            def terminate(o: Obj) -> None:
                o["metadata"]["deletionTimestamp"] = now
                o["metadata"]["deletionGracePeriodSeconds"] = 0
                o["status"] = {"phase": "Terminating"}

            return ordered(self.store.mutate("namespaces", "", name, terminate), disc.NAMESPACES)
        return await self.finalize_namespace(name)

    async def finalize_namespace(self, name: str) -> Obj:
        """Delete everything in a namespace, then the namespace (the namespace controller's
        work); returns the namespace as deleted."""
        for resource in ("deployments", "replicasets"):
            for obj in self.store.list(resource, name)[0]:
                try:
                    self.store.delete(resource, name, obj["metadata"]["name"], "apps")
                except ApiError:
                    pass  # deleted meanwhile
        for pod in self.store.list("pods", name)[0]:
            try:
                await self.delete_pod(name, pod["metadata"]["name"])
            except ApiError:
                pass  # deleted meanwhile
        for resource in ("serviceaccounts", "events"):
            for obj in self.store.list(resource, name)[0]:
                try:
                    self.store.delete(resource, name, obj["metadata"]["name"])
                except ApiError:
                    pass
        ns = self.store.delete("namespaces", "", name)
        ns["metadata"]["deletionTimestamp"] = rfc3339(self.clock.now())
        ns["status"] = {"phase": "Terminating"}
        return ordered(ns, disc.NAMESPACES)

    # -- authentication.k8s.io ---------------------------------------------------------
    def token_request(self, namespace: str, sa_name: str, body: Obj) -> Obj:
        """Answer a TokenRequest for ``namespace/sa_name`` (§1.1); raises ``ApiError``.

        Used by the HTTP handler and by the kubelet stand-in; returns the full
        ``TokenRequest`` with ``spec`` echoed and ``status.token`` set.
        """
        return answer_token_request(
            self.store, self.issuer, self.clock, self.trace, namespace, sa_name, body
        )

    def authenticate(self, token: str, audiences: Sequence[str] | None = None) -> Authenticated:
        """Who ``token`` is, for ``audiences`` (None: the API audiences), as the server's
        bearer-token authenticators say; raises :class:`~irsa_lab.kube.authn.AuthenticationError`.

        The admin's token stands in for a static token: it is good for the API
        audiences only. Any other token must be a ServiceAccount token of the issuer.
        """
        if hmac.compare_digest(token.encode(), self.token.encode()):
            implicit = list(self.issuer.api_audiences)
            matched = intersect(implicit, list(audiences) if audiences else implicit)
            if implicit and not matched:
                raise NotRecognised()
            return Authenticated(copy.deepcopy(ADMIN_USER), matched)
        return authenticate_service_account_token(
            token,
            issuer=self.issuer,
            lookup=self.store.get,
            now=self.clock.now(),
            audiences=audiences,
        )

    def token_review(self, body: Any) -> Obj:
        """Answer a TokenReview: who ``spec.token`` is, for ``spec.audiences``."""
        return review_token(body, self.authenticate)

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
        meta = {k: v for k, v in meta.items() if k not in SYSTEM_META or k == "resourceVersion"}
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
        return ordered(self.store.update(res.name, new, expect), res)

    def patch(self, res: Resource, namespace: str, name: str, content_type: str, patch: Any) -> Obj:
        """PATCH with a JSON patch, a merge patch, or a strategic merge patch (as merge)."""
        old = self.store.require(res.name, namespace, name, res.group)
        base = ordered(old, res)
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
        return ordered(self.store.update(res.name, new, expect), res)

    # -- the HTTP layer ----------------------------------------------------------------
    def make_app(self) -> web.Application:
        """The aiohttp application (:mod:`irsa_lab.kube.routes`)."""
        return make_app(self)
