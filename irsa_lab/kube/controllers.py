"""The lab's kube-controller-manager: Deployments, ReplicaSets, garbage collection.

A small, level-triggered stand-in for the controllers a cluster runs, on the stack's
event loop (:meth:`Controllers.run`). Each pass:

- the **deployment controller** gives every Deployment a ReplicaSet for its current
  pod template (named ``<deployment>-<pod-template-hash>``, owned by the Deployment,
  revision annotations as upstream), scales it up, and scales the old ones down once
  the new one's pods are available: a rolling update with room for every new pod at
  once (what ``maxSurge: 25%`` gives a one-replica Deployment). ``kubectl rollout
  restart`` changes the template (an annotation), so it rolls new pods, which the
  pod identity webhook mutates with the ServiceAccount's current annotation. It keeps
  ``status`` (replicas, conditions, observedGeneration) so ``kubectl rollout status``
  finishes, and posts ``ScalingReplicaSet`` events;
- the **replicaset controller** creates and deletes pods to match ``spec.replicas``,
  through the API server's pod pipeline (admission and webhooks), posting
  ``SuccessfulCreate``, ``SuccessfulDelete`` and, when admission refuses a pod,
  ``FailedCreate`` (retried with a growing delay, as the real controller's queue does);
- the **namespace controller** empties a Terminating namespace, then deletes it;
- the **garbage collector** deletes ReplicaSets and pods whose controlling owner is
  gone (``kubectl delete deployment`` with the default background propagation).

:meth:`Controllers.scheduled` stands in for the scheduler's ``Scheduled`` event: the
API stand-in binds each new pod to the lab's node, and this hook reports it as the
scheduler does.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import TYPE_CHECKING, Any

from ..clock import Clock, rfc3339
from ..ids import Ids
from .events import EventRecorder, involved_object
from .status import ApiError
from .store import labels_match
from .workloads import selector_requirements

if TYPE_CHECKING:
    from .apiserver import ApiServer

__all__ = [
    "HASH_LABEL",
    "REVISION_ANNOTATION",
    "Controllers",
    "pod_template_hash",
]

Obj = dict[str, Any]
HASH_LABEL = "pod-template-hash"
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
DESIRED_ANNOTATION = "deployment.kubernetes.io/desired-replicas"
MAX_ANNOTATION = "deployment.kubernetes.io/max-replicas"
# rand.SafeEncodeString's alphabet: no vowels, no look-alikes.
_SAFE = "bcdfghjklmnpqrstvwxz2456789"
_MAX_BACKOFF_S = 60.0


def pod_template_hash(template: Obj, collision_count: int = 0) -> str:
    """The ``pod-template-hash`` of a template: FNV-32a, safe-encoded, as upstream does
    (over the template's JSON here, not Go's printed struct, so values differ)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += collision_count.to_bytes(4, "little")
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return "".join(_SAFE[ord(c) % len(_SAFE)] for c in str(h))


def _rolling_value(spec: Obj, key: str, replicas: int, *, round_up: bool) -> int:
    """``maxSurge`` (rounded up) or ``maxUnavailable`` (rounded down) as a pod count."""
    strategy = spec.get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0
    value = (strategy.get("rollingUpdate") or {}).get(key, "25%")
    if isinstance(value, int):
        return value
    text = str(value).rstrip("%")
    try:
        percent = int(text)
    except ValueError:
        return 0
    scaled = percent * replicas
    return -(-scaled // 100) if round_up else scaled // 100


def _controller_uid(obj: Obj, kind: str) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind:
            return str(ref.get("uid"))
    return None


def _owner_ref(owner: Obj, kind: str) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _pod_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    labels = (t.get("metadata") or {}).get("labels") or {}
    labels.pop(HASH_LABEL, None)
    return t


class Controllers:
    """The deployment and replicaset controllers and the garbage collector (module doc)."""

    def __init__(self, api: ApiServer, *, clock: Clock, ids: Ids, node_name: str) -> None:
        self.api = api
        self.store = api.store
        self.clock = clock
        self.node_name = node_name
        self.ids = ids
        api.namespace_controller = True
        self.deployments = EventRecorder(api.store, clock, ids, "deployment-controller")
        self.replicasets = EventRecorder(api.store, clock, ids, "replicaset-controller")
        self.scheduler = EventRecorder(
            api.store, clock, ids, "default-scheduler", host="irsa-lab", new_api=True
        )
        # ReplicaSet uid -> (loop time before which no create is tried, next delay).
        self._backoff: dict[str, tuple[float, float]] = {}
        # ReplicaSet uid -> why its last pod create failed (its ReplicaFailure condition).
        self._failures: dict[str, str] = {}

    # -- the scheduler's event -------------------------------------------------------
    def scheduled(self, pod: Obj) -> None:
        """A pod-created hook: the ``Scheduled`` event of a pod bound to a node."""
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            return
        meta = pod["metadata"]
        self.scheduler.record(
            involved_object(pod, "Pod", "v1"),
            "Normal",
            "Scheduled",
            f"Successfully assigned {meta['namespace']}/{meta['name']} to {node}",
            action="Binding",
        )

    # -- the loop ----------------------------------------------------------------------
    async def run(self, interval: float = 0.2) -> None:
        """Reconcile every ``interval`` seconds until cancelled."""
        while True:
            try:
                await self.reconcile()
            except Exception as exc:  # noqa: BLE001 - a bug must not stop the controllers
                self.api.trace.record(
                    "controller-manager", "apiserver", "reconcile", "error", error=repr(exc)
                )
            await asyncio.sleep(interval)

    async def reconcile(self) -> None:
        """One pass of every controller."""
        await self._finalize_namespaces()
        await self._collect_garbage()
        for d in self.store.list("deployments")[0]:
            self._sync_deployment(d)
        for rs in self.store.list("replicasets")[0]:
            await self._sync_replicaset(rs)
        for d in self.store.list("deployments")[0]:
            self._deployment_status(d)

    # -- the namespace controller ----------------------------------------------------------
    async def _finalize_namespaces(self) -> None:
        for ns in self.store.list("namespaces")[0]:
            if ns["metadata"].get("deletionTimestamp"):
                try:
                    await self.api.finalize_namespace(ns["metadata"]["name"])
                except ApiError:
                    pass  # gone meanwhile

    # -- garbage collection ------------------------------------------------------------
    async def _collect_garbage(self) -> None:
        deployments = {d["metadata"]["uid"] for d in self.store.list("deployments")[0]}
        for rs in self.store.list("replicasets")[0]:
            owner = _controller_uid(rs, "Deployment")
            if owner is not None and owner not in deployments:
                meta = rs["metadata"]
                try:
                    self.store.delete("replicasets", meta["namespace"], meta["name"], "apps")
                except ApiError:
                    pass
        replicasets = {rs["metadata"]["uid"] for rs in self.store.list("replicasets")[0]}

        def orphaned(pod: Obj) -> bool:
            owner = _controller_uid(pod, "ReplicaSet")
            return owner is not None and owner not in replicasets

        for pod in self.store.select("pods", orphaned):
            try:
                await self.api.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])
            except ApiError:
                pass

    # -- the deployment controller -------------------------------------------------------
    def _owned_replicasets(self, d: Obj) -> list[Obj]:
        ns, uid = d["metadata"]["namespace"], d["metadata"]["uid"]
        return [
            rs
            for rs in self.store.list("replicasets", ns)[0]
            if _controller_uid(rs, "Deployment") == uid
        ]

    def _sync_deployment(self, d: Obj) -> None:
        meta = d["metadata"]
        ns = meta["namespace"]
        spec = d.get("spec") or {}
        want = int(spec.get("replicas", 1))
        if spec.get("paused"):
            return  # kubectl rollout pause: template changes wait for resume
        template = _without_hash(spec.get("template") or {})
        owned = self._owned_replicasets(d)
        new_rs = next(
            (
                rs
                for rs in owned
                if _without_hash((rs.get("spec") or {}).get("template") or {}) == template
            ),
            None,
        )
        revisions = [
            int((rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "0") or 0)
            for rs in owned
        ]
        top = max(revisions, default=0)
        old = [
            rs
            for rs in owned
            if new_rs is None or rs["metadata"]["uid"] != new_rs["metadata"]["uid"]
        ]
        surge = _rolling_value(spec, "maxSurge", want, round_up=True)
        if new_rs is None:
            new_rs = self._create_replicaset(d, template, top + 1, want, surge)
            if new_rs is None:
                return
        else:
            rev = int((new_rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, 0))
            if rev < top:  # a rollback: the old template becomes the newest revision
                new_rs = self._annotate_rs(new_rs, top + 1, want, surge)
            current = int((new_rs.get("spec") or {}).get("replicas", 0))
            if current != want:
                self._scale(d, new_rs, want)
        rev_text = (new_rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "1")
        if (meta.get("annotations") or {}).get(REVISION_ANNOTATION) != rev_text:
            try:
                self.store.mutate(
                    "deployments",
                    ns,
                    meta["name"],
                    lambda o: (
                        o["metadata"]
                        .setdefault("annotations", {})
                        .__setitem__(REVISION_ANNOTATION, rev_text)
                    ),
                )
            except ApiError:
                return  # deleted meanwhile: the garbage collector takes the rest
        # Old ReplicaSets go to zero once the new one's pods are all available.
        available = int((new_rs.get("status") or {}).get("availableReplicas", 0))
        if available >= want:
            for rs in old:
                if int((rs.get("spec") or {}).get("replicas", 0)) > 0:
                    self._scale(d, rs, 0)
        # Beyond revisionHistoryLimit, the oldest empty ReplicaSets are deleted.
        empty = [
            rs
            for rs in old
            if not (rs.get("spec") or {}).get("replicas")
            and not (rs.get("status") or {}).get("replicas")
        ]
        empty.sort(
            key=lambda rs: int(
                (rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "0") or 0
            )
        )
        limit = int(spec.get("revisionHistoryLimit", 10))
        for rs in empty[: max(0, len(empty) - limit)]:
            try:
                self.store.delete("replicasets", ns, rs["metadata"]["name"], "apps")
            except ApiError:
                pass

    def _create_replicaset(
        self, d: Obj, template: Obj, revision: int, want: int, surge: int
    ) -> Obj | None:
        meta = d["metadata"]
        spec = d.get("spec") or {}
        count = int((d.get("status") or {}).get("collisionCount", 0))
        tmpl_hash = pod_template_hash(template, count)
        tmpl = copy.deepcopy(template)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = tmpl_hash
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = tmpl_hash
        labels = dict(tmpl["metadata"]["labels"])
        name = f"{meta['name']}-{tmpl_hash}"
        rs: Obj = {
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": {
                    DESIRED_ANNOTATION: str(want),
                    MAX_ANNOTATION: str(want + surge),
                    REVISION_ANNOTATION: str(revision),
                },
                "ownerReferences": [_owner_ref(d, "Deployment")],
                "uid": self.ids.uuid4(),
                "creationTimestamp": rfc3339(self.clock.now()),
                "generation": 1,
            },
            "spec": {"replicas": want, "selector": selector, "template": tmpl},
            "status": {"replicas": 0},
        }
        if spec.get("minReadySeconds"):
            rs["spec"]["minReadySeconds"] = spec["minReadySeconds"]
        try:
            created = self.store.create("replicasets", rs, "apps")
        except ApiError:
            return None  # a name collision: the real controller bumps collisionCount
        if want > 0:
            self.deployments.record(
                involved_object(d, "Deployment", "apps/v1"),
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {name} from 0 to {want}",
            )
        return created

    def _annotate_rs(self, rs: Obj, revision: int, want: int, surge: int) -> Obj:
        def change(o: Obj) -> None:
            ann = o["metadata"].setdefault("annotations", {})
            ann[REVISION_ANNOTATION] = str(revision)
            ann[DESIRED_ANNOTATION] = str(want)
            ann[MAX_ANNOTATION] = str(want + surge)

        return self.store.mutate(
            "replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"], change
        )

    def _scale(self, d: Obj, rs: Obj, to: int) -> None:
        before = int((rs.get("spec") or {}).get("replicas", 0))

        def change(o: Obj) -> None:
            o["spec"]["replicas"] = to
            o["metadata"]["generation"] = int(o["metadata"].get("generation", 1)) + 1
            ann = o["metadata"].setdefault("annotations", {})
            ann[DESIRED_ANNOTATION] = str((d.get("spec") or {}).get("replicas", 1))

        try:
            self.store.mutate(
                "replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"], change
            )
        except ApiError:
            return
        way = "up" if to > before else "down"
        self.deployments.record(
            involved_object(d, "Deployment", "apps/v1"),
            "Normal",
            "ScalingReplicaSet",
            f"Scaled {way} replica set {rs['metadata']['name']} from {before} to {to}",
        )

    def _deployment_status(self, d: Obj) -> None:
        meta = d["metadata"]
        spec = d.get("spec") or {}
        want = int(spec.get("replicas", 1))
        owned = self._owned_replicasets(d)
        template = _without_hash(spec.get("template") or {})
        new_rs = next(
            (
                rs
                for rs in owned
                if _without_hash((rs.get("spec") or {}).get("template") or {}) == template
            ),
            None,
        )

        def total(key: str, pool: list[Obj]) -> int:
            return sum(int((rs.get("status") or {}).get(key, 0)) for rs in pool)

        available = total("availableReplicas", owned)
        status: Obj = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": total("replicas", owned),
            "updatedReplicas": total("replicas", [new_rs] if new_rs else []),
            "readyReplicas": total("readyReplicas", owned),
            "availableReplicas": available,
        }
        if want - available > 0:
            status["unavailableReplicas"] = want - available
        status["terminatingReplicas"] = 0
        for key in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
            if not status[key]:
                del status[key]
        old_status = d.get("status") or {}
        now = rfc3339(self.clock.now())
        old_conds = {c.get("type"): c for c in old_status.get("conditions") or []}
        max_unavailable = _rolling_value(spec, "maxUnavailable", want, round_up=False)
        avail_ok = available >= want - max_unavailable
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        complete = (
            new_rs is not None
            and status.get("updatedReplicas", 0) == want
            and status.get("replicas", 0) == want
            and available >= want
        )
        paused = bool(spec.get("paused"))
        if paused:
            progressing = ("DeploymentPaused", "Deployment is paused")
        elif complete:
            progressing = (
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        elif "Progressing" not in old_conds:
            progressing = ("NewReplicaSetCreated", f'Created new replica set "{rs_name}"')
        elif (
            not any(
                status.get(k, 0) != old_status.get(k, 0)
                for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
            )
            and old_conds["Progressing"].get("reason") != "NewReplicaSetAvailable"
            and f'"{rs_name}"' in old_conds["Progressing"].get("message", "")
        ):
            # No progress since the last pass: the condition stays as it was.
            progressing = (old_conds["Progressing"]["reason"], old_conds["Progressing"]["message"])
        else:
            progressing = ("ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
        wanted = {
            "Available": (
                "True" if avail_ok else "False",
                "MinimumReplicasAvailable" if avail_ok else "MinimumReplicasUnavailable",
                "Deployment has minimum availability."
                if avail_ok
                else "Deployment does not have minimum availability.",
            ),
            "Progressing": ("Unknown" if paused else "True", *progressing),
        }
        conditions = []
        for kind, (flag, reason, message) in wanted.items():
            old = old_conds.get(kind)
            if old and (old.get("status"), old.get("reason"), old.get("message")) == (
                flag,
                reason,
                message,
            ):
                conditions.append(old)
                continue
            transition = old["lastTransitionTime"] if old and old.get("status") == flag else now
            conditions.append(
                {
                    "type": kind,
                    "status": flag,
                    "lastUpdateTime": now,
                    "lastTransitionTime": transition,
                    "reason": reason,
                    "message": message,
                }
            )
        failure = next(
            (
                c
                for c in ((new_rs or {}).get("status") or {}).get("conditions") or []
                if c.get("type") == "ReplicaFailure"
            ),
            None,
        )
        if failure is not None:
            old = old_conds.get("ReplicaFailure")
            conditions.append(
                old
                if old and old.get("message") == failure["message"]
                else {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "lastUpdateTime": now,
                    "lastTransitionTime": failure["lastTransitionTime"],
                    "reason": "FailedCreate",
                    "message": failure["message"],
                }
            )
        status["conditions"] = conditions
        if old_status.get("collisionCount"):
            status["collisionCount"] = old_status["collisionCount"]
        if status != old_status:
            try:
                self.store.mutate(
                    "deployments",
                    meta["namespace"],
                    meta["name"],
                    lambda o: o.__setitem__("status", status),
                )
            except ApiError:
                pass

    # -- the replicaset controller ---------------------------------------------------
    async def _sync_replicaset(self, rs: Obj) -> None:
        meta = rs["metadata"]
        ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
        spec = rs.get("spec") or {}
        want = int(spec.get("replicas", 1))
        pods = self.store.select(
            "pods",
            lambda p: (
                _controller_uid(p, "ReplicaSet") == uid
                and not p["metadata"].get("deletionTimestamp")
            ),
            ns,
        )
        ref = involved_object(rs, "ReplicaSet", "apps/v1")
        loop = asyncio.get_running_loop()
        if len(pods) < want:
            not_before, delay = self._backoff.get(uid, (0.0, 1.0))
            if loop.time() >= not_before:
                for _ in range(want - len(pods)):
                    try:
                        pod, _warnings = await self.api.create_pod(ns, self._pod_for(rs))
                    except ApiError as err:
                        self.replicasets.record(
                            ref, "Warning", "FailedCreate", f"Error creating: {err.message}"
                        )
                        self._backoff[uid] = (loop.time() + delay, min(delay * 2, _MAX_BACKOFF_S))
                        self._failures[uid] = err.message
                        break
                    self._backoff.pop(uid, None)
                    self._failures.pop(uid, None)
                    pods.append(pod)
                    self.replicasets.record(
                        ref, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}"
                    )
        elif len(pods) > want:
            # Pods that are not ready go first, then the newest.
            newest = sorted(
                pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True
            )
            doomed = sorted(newest, key=_pod_ready)[: len(pods) - want]
            for pod in doomed:
                try:
                    await self.api.delete_pod(ns, pod["metadata"]["name"])
                except ApiError:
                    continue
                pods = [p for p in pods if p["metadata"]["uid"] != pod["metadata"]["uid"]]
                self.replicasets.record(
                    ref, "Normal", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}"
                )
        # Status from the pods as stored now (the kubelet may have reported since).
        current = self.store.select("pods", lambda p: _controller_uid(p, "ReplicaSet") == uid, ns)
        reqs = selector_requirements(
            {"matchLabels": (spec.get("template") or {}).get("metadata", {}).get("labels") or {}}
        )
        ready = sum(1 for p in current if _pod_ready(p))
        status: Obj = {
            "replicas": len(current),
            "fullyLabeledReplicas": sum(
                1 for p in current if labels_match(reqs, p["metadata"].get("labels") or {})
            ),
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": meta.get("generation", 1),
            "terminatingReplicas": 0,
        }
        for key in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
            if not status[key]:
                del status[key]
        if uid in self._failures:
            old = next(
                (
                    c
                    for c in (rs.get("status") or {}).get("conditions") or []
                    if c.get("type") == "ReplicaFailure"
                ),
                None,
            )
            status["conditions"] = [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "lastTransitionTime": old["lastTransitionTime"]
                    if old
                    else rfc3339(self.clock.now()),
                    "reason": "FailedCreate",
                    "message": self._failures[uid],
                }
            ]
        if status != (rs.get("status") or {}):
            try:
                self.store.mutate(
                    "replicasets", ns, name, lambda o: o.__setitem__("status", status)
                )
            except ApiError:
                pass

    def _pod_for(self, rs: Obj) -> Obj:
        template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
        tmeta = template.get("metadata") or {}
        meta: Obj = {
            "generateName": rs["metadata"]["name"] + "-",
            "labels": tmeta.get("labels") or {},
            "ownerReferences": [_owner_ref(rs, "ReplicaSet")],
        }
        if tmeta.get("annotations"):
            meta["annotations"] = tmeta["annotations"]
        return {"metadata": meta, "spec": template.get("spec") or {}}
