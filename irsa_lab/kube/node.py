"""The kubelet stand-in on a real API server: the Node, its Lease, its pods.

On the ``k8s`` backend the kubelet stand-in (:class:`~irsa_lab.kube.kubelet.Kubelet`)
works against the real kube-apiserver as a kubelet does, authenticated as
``system:node:<name>`` in ``system:nodes`` (so the Node authorizer and the
NodeRestriction admission plugin judge it):

- it registers its Node, reports it Ready and renews its Lease in
  ``kube-node-lease`` every 10 s, so the node lifecycle controller keeps it Ready;
- it watches the pods the scheduler bound to it (``spec.nodeName``), writes their
  projected token volumes through TokenRequest, and reports their status;
- when a pod is deleted gracefully it confirms the deletion (grace period 0), as a
  kubelet does once the containers have stopped; without that the pod would stay
  Terminating.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from ..clock import Clock, rfc3339
from ..constants import NODE_NAME
from ..trace import Trace
from .kubelet import Kubelet
from .kubelet_server import KubeletServer
from .rest import KubeApiError, KubeRest

__all__ = ["LEASE_DURATION_S", "NodeAgent", "node_object"]

LEASE_DURATION_S = 40  # the kubelet's default nodeLeaseDurationSeconds
LEASE_RENEW_S = 10.0  # a quarter of it, as the kubelet renews


def node_object(
    name: str, version: str, ip: str = "127.0.0.1", kubelet_port: int = 0
) -> dict[str, Any]:
    """The Node as a kubelet registers it (labels, capacity, addresses, kubelet port, info)."""
    capacity = {"cpu": "2", "memory": "8Gi", "pods": "110", "ephemeral-storage": "20Gi"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "kubernetes.io/hostname": name,
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/os": "linux",
            },
        },
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [
                {"type": "InternalIP", "address": ip},
                {"type": "Hostname", "address": name},
            ],
            # Where the API server dials the kubelet API (kubectl exec, logs).
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "nodeInfo": {
                "kubeletVersion": version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "irsa-lab://0",
                "kernelVersion": "",
                "osImage": "irsa-lab kubelet stand-in",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


@dataclass(eq=False, repr=False)
class NodeAgent:
    """Runs a :class:`Kubelet` against a real API server, on its own threads."""

    rest: KubeRest
    kubelet: Kubelet
    _: KW_ONLY
    clock: Clock
    trace: Trace
    version: str
    node_name: str = NODE_NAME
    renew_interval: float = 1.0
    errors: list[str] = field(default_factory=list, init=False)
    _stop: threading.Event = field(default_factory=threading.Event, init=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _watch_conn: list[http.client.HTTPSConnection] = field(default_factory=list, init=False)
    _synced: dict[str, str] = field(default_factory=dict, init=False)  # uid -> resourceVersion
    api: KubeletServer | None = field(default=None, init=False)

    def _get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.rest.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
        except KubeApiError as err:
            if err.status == 404:
                return None
            raise

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> NodeAgent:
        # The kubelet API (exec over SPDY) listens before the Node advertises its port.
        self.api = KubeletServer(
            state_dir=self.kubelet.root.parent,
            ca_pem=self.kubelet.ca_pem,
            get_pod=self._get_pod,
            node_name=self.node_name,
        )
        self.api.start()
        self.register()
        for target, name in (
            (self._watch_pods, "pods"),
            (self._heartbeat, "lease"),
            (self._renew_tokens, "tokens"),
        ):
            t = threading.Thread(target=target, name=f"irsa-lab-kubelet-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for conn in self._watch_conn:
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        if self.api is not None:
            self.api.stop()
            self.api = None

    # -- the Node and its Lease ----------------------------------------------------------
    def register(self) -> None:
        """Create the Node (or take over an existing one) and report it Ready."""
        node = node_object(
            self.node_name, self.version, kubelet_port=self.api.port if self.api else 0
        )
        status = node.pop("status")
        self.rest.apply_if_absent("/api/v1/nodes", node)
        self._post_status(status)
        self._renew_lease()

    def _post_status(self, status: dict[str, Any]) -> None:
        now = rfc3339(time.time())
        conditions = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID"),
            ("Ready", "True", "KubeletReady"),
        ]
        status = dict(status)
        status["conditions"] = [
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": "kubelet stand-in is posting ready status"
                if kind == "Ready"
                else f"kubelet has {reason[len('KubeletHas') :]}",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
            for kind, value, reason in conditions
        ]
        self.rest.merge_patch(f"/api/v1/nodes/{self.node_name}/status", {"status": status})

    def _renew_lease(self) -> None:
        path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
        now = rfc3339(time.time()).replace("Z", ".000000Z")
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": LEASE_DURATION_S,
            "renewTime": now,
        }
        try:
            self.rest.merge_patch(f"{path}/{self.node_name}", {"spec": spec})
        except KubeApiError as err:
            if err.status != 404:
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                "spec": spec,
            }
            self.rest.apply_if_absent(path, lease)

    def _heartbeat(self) -> None:
        while not self._stop.wait(LEASE_RENEW_S):
            try:
                self._renew_lease()
            except (KubeApiError, OSError) as err:
                self.errors.append(f"lease: {err}")

    # -- pods ------------------------------------------------------------------------------
    def _watch_pods(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        rv = ""
        while not self._stop.is_set():
            try:
                if not rv:
                    listed = self.rest.get("/api/v1/pods", fieldSelector=selector)
                    rv = listed["metadata"]["resourceVersion"]
                    live = {p["metadata"]["uid"] for p in listed.get("items") or []}
                    for uid in set(self._synced) - live:
                        self._synced.pop(uid, None)
                    for pod in listed.get("items") or []:
                        self._handle("ADDED", pod)
                for event in self.rest.watch(
                    "/api/v1/pods",
                    resource_version=rv,
                    holder=self._watch_conn,
                    fieldSelector=selector,
                ):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        rv = ""  # 410 Gone: list again
                        break
                    rv = obj.get("metadata", {}).get("resourceVersion", rv)
                    if kind != "BOOKMARK":
                        self._handle(str(kind), obj)
            except (KubeApiError, OSError, ValueError, http.client.HTTPException) as err:
                if self._stop.is_set():
                    return
                self.errors.append(f"watch: {err}")
                rv = ""
                self._stop.wait(0.5)

    def _handle(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        uid = meta.get("uid", "")
        if kind == "DELETED":
            self._synced.pop(uid, None)
            self.kubelet.forget_pod(pod)
            return
        if meta.get("deletionTimestamp"):
            # The containers "stop" at once; confirm so the API server removes the pod.
            self.kubelet.forget_pod(pod)
            try:
                self.rest.delete(
                    f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                    {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
                )
            except KubeApiError as err:
                if err.status not in (404, 409):
                    self.errors.append(f"confirm deletion: {err}")
            return
        if uid in self._synced:
            return
        self._synced[uid] = meta.get("resourceVersion", "")
        self.kubelet.sync_pod(pod)

    def _renew_tokens(self) -> None:
        while not self._stop.wait(self.renew_interval):
            try:
                self.kubelet.tick()
            except Exception as err:  # keep renewing whatever one pod does
                self.errors.append(f"renew: {err}")

    # -- what the Kubelet calls --------------------------------------------------------------
    def request_token(self, namespace: str, sa_name: str, body: dict[str, Any]) -> dict[str, Any]:
        """TokenRequest against the real API server, as the node (the Kubelet records it)."""
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa_name}/token"
        return self.rest.create(path, body)

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        """Report a pod's status (pods/status), as the node."""
        try:
            self.rest.merge_patch(
                f"/api/v1/namespaces/{namespace}/pods/{name}/status", {"status": status}
            )
        except KubeApiError as err:
            if err.status != 404:  # a pod deleted meanwhile needs no status
                raise
