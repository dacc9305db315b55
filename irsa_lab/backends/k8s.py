"""The ``k8s`` backend: the real control plane, without Docker.

It runs, on loopback, the programs ``make k8s-bin`` builds from pinned sources:

- etcd;
- kube-apiserver, with the flags kubeadm gives it plus the ``extraArgs`` of
  ``kind-config.yaml`` (rendered by :mod:`irsa_lab.kind.config`, so both share one
  source): ``Node,RBAC`` authorization, the EKS-shaped issuer, the lab's signing
  keys, the JWKS URI, the API audiences and a ``Request``-level audit log;
- kube-controller-manager (ServiceAccount, token, namespace, ReplicaSet,
  Deployment, garbage collector, root CA publisher and node lifecycle
  controllers) and kube-scheduler, so each namespace gets its ``default``
  ServiceAccount and pods are bound to the node, as in a cluster;
- the upstream pod identity webhook, with the flags and the
  MutatingWebhookConfiguration of the kind manifests (:mod:`irsa_lab.kind.manifests`),
  reached through ``clientConfig.url`` on loopback (no kube-proxy routes a Service);
- the project's kubelet stand-in as the node (:mod:`irsa_lab.kube.node`), and the
  AWS stand-ins, whose STS fetches discovery and JWKS from the real API server.

Every deviation from a kubeadm/kind cluster is listed in ``docs/fidelity.md``.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import constants as C
from ..admin import TOKEN_FILE as ADMIN_TOKEN_FILE
from ..admin import serve_admin
from ..clock import SystemClock
from ..control import StackControl
from ..httpd import ServerLoop
from ..httpd import free_port as _free_port  # one name, the seam a test patches
from ..ids import Ids
from ..kind import config as kind_config
from ..kind import manifests as kind_manifests
from ..kind.keys import ensure_keys, write_keys
from ..kube.events import RestEventRecorder
from ..kube.kubeconfig import write_kubeconfig
from ..kube.kubelet import Kubelet
from ..kube.node import NodeAgent
from ..kube.rest import KubeApiError, KubeRest
from ..kube.tokens import eks_issuer
from ..pki import LOOPBACK, LabCA, ServerCert, SigningKey, write_secret
from ..stack import StartsOnce, WithAwsSide
from ..trace import Trace, facts_path
from ..webhook.container_credentials import CONFIG_LOADED_LINES, ConfigFileSync, config_path
from . import binaries
from .procs import PIDS_FILE, log_tail

__all__ = ["CONTROLLERS", "DEVIATIONS", "K8sError", "K8sLab"]

# The controllers the lab needs (kube-controller-manager --controllers).
CONTROLLERS = (
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "namespace-controller",
    "replicaset-controller",
    "deployment-controller",
    "garbage-collector-controller",
    "root-ca-certificate-publisher-controller",
    "node-lifecycle-controller",
)
# Where this backend runs the programs differently from kind-config.yaml's cluster:
# (what, here, on kind/kubeadm, why acceptable). docs/fidelity.md lists them.
DEVIATIONS: list[tuple[str, str, str, str]] = [
    (
        "webhook address",
        "MutatingWebhookConfiguration `clientConfig.url: https://127.0.0.1:<port>/mutate`",
        "`clientConfig.service` pod-identity-webhook/pod-identity-webhook:443",
        "no kube-proxy runs to route a Service; the configuration is otherwise the same renderer's",
    ),
    (
        "webhook process",
        "the same binary and flags, run on the host with its ServiceAccount's token in a kubeconfig",
        "a Deployment's pod with the projected in-cluster token",
        "the same identity and RBAC (the kind manifests'); only how the token reaches it differs",
    ),
    (
        "webhook Pod Identity mode",
        "two more flags: `--watch-container-credentials-config=<state dir>/pod-identity/"
        "identities.json`, which the lab rewrites from the EKS associations, and "
        "`--container-credentials-full-uri=` the Pod Identity agent on loopback",
        "neither flag (the kind manifests leave Pod Identity mode off); on EKS the control "
        "plane feeds the same file and the agent listens on 169.254.170.23",
        "the upstream binary's own mechanism (docs/reference/pod-identity.md §5); only the "
        "agent's address differs, as botocore allows loopback",
    ),
    (
        "etcd",
        "plain HTTP on loopback, `--unsafe-no-fsync`, a fresh data dir per start",
        "TLS with client certificates, fsync on",
        "nothing leaves loopback and the store is thrown away; start-up is faster",
    ),
    (
        "kubelet",
        "the lab's kubelet stand-in as node "
        f"`{C.NODE_NAME}`: writes projected tokens through TokenRequest, runs no containers",
        "the real kubelet and containerd",
        "the IRSA chain needs the token files, not a container runtime; commands run through "
        "`irsa-lab exec`",
    ),
    (
        "controllers",
        "kube-controller-manager with " + ", ".join(CONTROLLERS) + "; no leader election",
        "every default controller, leader election on",
        "the others (endpoints, jobs, volumes, ...) play no part in IRSA; one instance needs no "
        "election",
    ),
    (
        "front proxy and CoreDNS",
        "not configured",
        "requestheader flags, kube-proxy, CoreDNS",
        "no aggregated API, Service or DNS lookup is part of the chain",
    ),
]
WEBHOOK_PROGRAM = "amazon-eks-pod-identity-webhook"
SERVICE_CIDR = "10.96.0.0/16"  # kubeadm's default serviceSubnet
START_TIMEOUT_S = 90.0


class K8sError(RuntimeError):
    """A start-up problem, in one line that names the fix."""


def _die_with_parent() -> None:
    """In the child before exec: be killed if the lab process dies (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def tail(self, n: int = 15) -> str:
        """The last ``n`` lines of the program's log, for an error message."""
        return log_tail(self.log, n)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; returns once the process is gone."""
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def _collection(manifest: dict[str, Any]) -> str:
    """The REST collection a manifest is created in."""
    kind = manifest["kind"]
    ns = (manifest.get("metadata") or {}).get("namespace")
    group_version = manifest["apiVersion"]
    plural = {
        "Namespace": "namespaces",
        "ServiceAccount": "serviceaccounts",
        "ClusterRole": "clusterroles",
        "ClusterRoleBinding": "clusterrolebindings",
        "MutatingWebhookConfiguration": "mutatingwebhookconfigurations",
        "Pod": "pods",
    }[kind]
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{root}/namespaces/{ns}/{plural}" if ns else f"{root}/{plural}"


class K8sLab(StartsOnce, WithAwsSide):
    """The real control plane plus the lab's node and AWS stand-ins (module doc)."""

    backend = "k8s"

    def __init__(
        self,
        *,
        state_dir: Path,
        seed: int | None = None,
        renew_interval: float = 1.0,
        progress: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.dir = self.state_dir / "k8s"
        self.seed = seed
        self.ids = Ids(seed)
        self.clock = SystemClock()  # a real API server signs with the wall clock
        self.trace = Trace(self.clock)
        self.renew_interval = renew_interval
        self.progress = progress
        self.loop = ServerLoop("irsa-lab-k8s")
        self.procs: list[_Proc] = []
        self.timings: dict[str, float] = {}
        self._lock = threading.Lock()
        self.node: NodeAgent | None = None
        self._config_loads_at_write = 0  # see wait_for_pod_identity_config

    # -- lifecycle (start, stop and the with-statement: StartsOnce) ------------------------
    def _teardown(self) -> None:
        if self.node is not None:
            self.node.stop()
            self.node = None
        # In reverse start order, each after the one before has gone: a client that
        # outlives its server keeps retrying and would wait for the kill.
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        self.loop.stop()
        (self.dir / PIDS_FILE).unlink(missing_ok=True)
        shutil.rmtree(self.dir / "etcd", ignore_errors=True)
        (self.state_dir / "endpoints.json").unlink(missing_ok=True)
        (self.state_dir / ADMIN_TOKEN_FILE).unlink(missing_ok=True)

    # -- start-up -------------------------------------------------------------------------
    def _mark(self, what: str, since: float) -> None:
        self.timings[what] = time.monotonic() - since

    def _start(self) -> None:
        t0 = time.monotonic()
        found = {name: binaries.find(name) for name in binaries.PROGRAMS if name != "kubectl"}
        absent = [name for name, f in found.items() if f is None]
        if absent:
            raise K8sError(
                f"{', '.join(absent)} not found in {binaries.bin_root()}: build the pinned "
                f"programs with `{binaries.GET_COMMAND}` (needs Go), or set KUBEBUILDER_ASSETS "
                "for kube-apiserver and etcd"
            )
        self.bin = {name: f.path for name, f in found.items() if f is not None}
        if (self.dir / "etcd").exists():
            raise K8sError(
                f"an etcd data dir is left behind in {self.dir / 'etcd'} by a lab that did not "
                f"stop cleanly: `irsa-lab down --state-dir {self.state_dir}` removes it"
            )
        for sub in ("pki", "logs", "audit", "kubeconfigs"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.trace.watch(facts_path(self.state_dir))
        self.loop.start()
        self._pki()
        self.progress("starting etcd")
        self._start_etcd()
        self._mark("etcd", t0)
        self.progress("starting kube-apiserver")
        self._start_apiserver()
        self._mark("kube-apiserver", t0)
        self.progress("starting kube-controller-manager, kube-scheduler and the node")
        self._start_controllers()
        self._seed_cluster()
        self._start_node()
        # The AWS side first: the webhook's --container-credentials-full-uri is the
        # Pod Identity agent's URL, and its watched file follows the associations.
        self.progress("starting the AWS stand-ins")
        self._start_aws()
        self.progress("starting the pod identity webhook")
        self._start_webhook()
        self._mark("webhook", t0)
        self._wait_ready()
        self._mark("ready", t0)
        self._write_endpoints()

    def _pki(self) -> None:
        pki = self.dir / "pki"
        self.ca = LabCA.create("irsa-lab k8s CA")
        self.ca_path = self.state_dir / "ca.crt"
        self.ca_path.write_bytes(self.ca.cert_pem)
        write_secret(pki / "ca.key", self.ca.key_pem)
        (pki / "ca.crt").write_bytes(self.ca.cert_pem)
        hosts = (
            LOOPBACK,
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.96.0.1",
        )
        self._write_pair("apiserver", self.ca.issue(hosts))
        self._write_pair("webhook", self.ca.issue())
        # Client identities as kubeadm makes them.
        self.admin = self.ca.issue_client("kubernetes-admin", ("system:masters",))
        self._write_pair(
            "apiserver-kubelet-client",
            self.ca.issue_client("kube-apiserver-kubelet-client", ("kubeadm:cluster-admins",)),
        )
        self.node_cert = self.ca.issue_client(f"system:node:{C.NODE_NAME}", ("system:nodes",))
        self._write_pair("kubelet", self.node_cert)
        # The service-account key pair: one file layout with kind (irsa_lab.kind.keys).
        keys_dir = self.dir / "keys"
        if self.seed is not None:
            self.keys = write_keys(keys_dir, SigningKey.demo())
        else:
            self.keys = ensure_keys(keys_dir)
        ensure_keys(keys_dir)  # the audit policy beside the keys, as on kind
        self.issuer_url = eks_issuer(self.ids, C.REGION)

    def _write_pair(self, name: str, pair: ServerCert) -> None:
        pki = self.dir / "pki"
        (pki / f"{name}.crt").write_bytes(pair.cert_pem)
        write_secret(pki / f"{name}.key", pair.key_pem)

    def _client_ssl(self, name: str) -> ssl.SSLContext:
        ctx = self.ca.client_context()
        pki = self.dir / "pki"
        ctx.load_cert_chain(pki / f"{name}.crt", pki / f"{name}.key")
        return ctx

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> _Proc:
        log = self.dir / "logs" / f"{name}.log"
        with open(log, "wb") as fh:
            popen = subprocess.Popen(
                [str(self.bin[name]), *args],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads fork here
                # Ctrl-C in a terminal reaches the lab only, which stops them in order.
                start_new_session=True,
            )
        proc = _Proc(name, popen, log)
        self.procs.append(proc)
        self._write_pids()
        return proc

    def _write_pids(self) -> None:
        """The programs' pids, for `irsa-lab down` to stop what a crashed lab left."""
        pids = {p.name: p.popen.pid for p in self.procs}
        (self.dir / PIDS_FILE).write_text(json.dumps(pids) + "\n")

    def _until(
        self, what: str, ready: Callable[[], bool], proc: _Proc | None, timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.popen.poll() is not None:
                tail = proc.tail()
                if "address already in use" in tail:
                    taken = re.search(r"(127\.0\.0\.1:\d+)[^\n]*address already in use", tail)
                    where = taken.group(1) if taken else "its port"
                    raise K8sError(
                        f"{proc.name} could not listen on {where}: the port is in use; "
                        f"start again (a new port is chosen) or stop what holds it "
                        f"(`ss -ltnp` shows it); log: {proc.log}"
                    )
                raise K8sError(
                    f"{proc.name} exited with code {proc.popen.returncode} while {what}; "
                    f"its log is {proc.log}:\n{tail}"
                )
            try:
                if ready():
                    return
            except (OSError, KubeApiError, ValueError):
                pass
            time.sleep(0.05)
        where = f"; its log is {proc.log}" if proc is not None else ""
        raise K8sError(f"timed out after {timeout:.0f} s {what}{where}")

    def _start_etcd(self) -> None:
        client, peer = _free_port(), _free_port()
        self.etcd_url = f"http://{LOOPBACK}:{client}"
        peer_url = f"http://{LOOPBACK}:{peer}"
        proc = self._spawn(
            "etcd",
            [
                "--name=irsa-lab",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=irsa-lab={peer_url}",
                # A throw-away store on loopback: durability is not needed, speed is.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            import urllib.request

            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=1) as resp:  # noqa: S310
                return bool(json.loads(resp.read()).get("health") == "true")

        self._until("waiting for etcd", healthy, proc, 30)

    def api_server_flags(self) -> list[str]:
        """kubeadm's kube-apiserver flags for this version, then kind-config.yaml's extraArgs."""
        pki = self.dir / "pki"
        port = self.api_port
        extra = kind_config.cluster_configuration_patch(
            issuer=self.issuer_url, jwks_uri=f"https://{LOOPBACK}:{port}/openid/v1/jwks"
        )["apiServer"]["extraArgs"]
        # Paths in the node become paths in the state folder.
        host_paths = {
            kind_config.SIGNING_KEY_PATH: str(self.keys.signing_key_file),
            kind_config.PUBLIC_KEY_PATH: str(self.keys.public_key_file),
            kind_config.AUDIT_POLICY_PATH: str(self.keys.folder / kind_config.AUDIT_POLICY_FILE),
            f"{kind_config.AUDIT_LOG_DIR}/{kind_config.AUDIT_LOG_FILE}": str(self.audit_log),
        }
        flags = {
            "advertise-address": LOOPBACK,
            "allow-privileged": "true",
            "authorization-mode": "Node,RBAC",
            "client-ca-file": str(pki / "ca.crt"),
            "enable-admission-plugins": "NodeRestriction",
            "enable-bootstrap-token-auth": "true",
            "etcd-servers": self.etcd_url,
            "kubelet-client-certificate": str(pki / "apiserver-kubelet-client.crt"),
            "kubelet-client-key": str(pki / "apiserver-kubelet-client.key"),
            "kubelet-preferred-address-types": "InternalIP,ExternalIP,Hostname",
            "bind-address": LOOPBACK,
            "secure-port": str(port),
            "service-cluster-ip-range": SERVICE_CIDR,
            "tls-cert-file": str(pki / "apiserver.crt"),
            "tls-private-key-file": str(pki / "apiserver.key"),
        }
        flags.update({k: host_paths.get(v, v) for k, v in extra.items()})
        return [f"--{k}={v}" for k, v in flags.items()]

    def _start_apiserver(self) -> None:
        self.api_port = _free_port()
        self.api_url = f"https://{LOOPBACK}:{self.api_port}"
        self.audit_log = self.dir / "audit" / kind_config.AUDIT_LOG_FILE
        proc = self._spawn("kube-apiserver", self.api_server_flags())
        self.rest = KubeRest(self.api_url, self._client_ssl_admin(), user_agent="irsa-lab/admin")

        def ready() -> bool:
            self.rest.request("GET", "/readyz", timeout=2)
            return True

        self._until("waiting for kube-apiserver /readyz", ready, proc, START_TIMEOUT_S)
        self.kubeconfig = write_kubeconfig(
            self.state_dir / "kubeconfig",
            self.api_url,
            self.ca.cert_pem,
            client_cert_pem=self.admin.cert_pem,
            client_key_pem=self.admin.key_pem,
        )

    def _client_ssl_admin(self) -> ssl.SSLContext:
        self._write_pair("admin", self.admin)
        return self._client_ssl("admin")

    def _component_kubeconfig(self, name: str, user: str, groups: tuple[str, ...] = ()) -> Path:
        pair = self.ca.issue_client(user, groups)
        return write_kubeconfig(
            self.dir / "kubeconfigs" / f"{name}.conf",
            self.api_url,
            self.ca.cert_pem,
            client_cert_pem=pair.cert_pem,
            client_key_pem=pair.key_pem,
        )

    def _start_controllers(self) -> None:
        pki = self.dir / "pki"
        kcm = self._component_kubeconfig("controller-manager", "system:kube-controller-manager")
        extra_kcm = kind_config.cluster_configuration_patch()["controllerManager"]["extraArgs"]
        kcm_flags = {
            "authentication-kubeconfig": str(kcm),
            "authorization-kubeconfig": str(kcm),
            "kubeconfig": str(kcm),
            "bind-address": LOOPBACK,
            "secure-port": str(_free_port()),
            "client-ca-file": str(pki / "ca.crt"),
            "cluster-name": C.CLUSTER_NAME,
            "controllers": ",".join(CONTROLLERS),
            "leader-elect": "false",
            "root-ca-file": str(pki / "ca.crt"),
            "use-service-account-credentials": "true",
        }
        kcm_flags.update(
            {
                k: str(self.keys.signing_key_file) if v == kind_config.SIGNING_KEY_PATH else v
                for k, v in extra_kcm.items()
            }
        )
        self._spawn("kube-controller-manager", [f"--{k}={v}" for k, v in kcm_flags.items()])
        sched = self._component_kubeconfig("scheduler", "system:kube-scheduler")
        self._spawn(
            "kube-scheduler",
            [
                f"--authentication-kubeconfig={sched}",
                f"--authorization-kubeconfig={sched}",
                f"--kubeconfig={sched}",
                f"--bind-address={LOOPBACK}",
                f"--secure-port={_free_port()}",
                "--leader-elect=false",
            ],
        )

    def _apply(self, manifests: list[dict[str, Any]]) -> None:
        for m in manifests:
            self.rest.apply_if_absent(_collection(m), m)

    def _seed_cluster(self) -> None:
        webhook_side = [
            m
            for m in kind_manifests.webhook_manifests(ca=self.ca, serving=ServerCert(b"", b""))
            if m["kind"] in ("Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding")
        ]
        self._apply([*kind_manifests.discovery_rbac(), *webhook_side])

    def _start_node(self) -> None:
        rest = KubeRest(self.api_url, self._client_ssl("kubelet"), user_agent="kubelet/irsa-lab")
        kubelet = Kubelet(
            root=self.state_dir / "kubelet",
            request_token=lambda ns, sa, body: agent.request_token(ns, sa, body),
            ca_pem=self.ca.cert_pem,
            clock=self.clock,
            ids=self.ids,
            trace=self.trace,
            set_status=lambda ns, name, st: agent.set_status(ns, name, st),
            events=RestEventRecorder(rest, self.clock, self.ids, "kubelet", host=C.NODE_NAME),
        )
        agent = NodeAgent(
            rest,
            kubelet,
            clock=self.clock,
            trace=self.trace,
            version=binaries.KUBERNETES_VERSION,
            renew_interval=self.renew_interval,
        )
        self.kubelet = kubelet
        self.node = agent.start()

    def _start_webhook(self) -> None:
        ns, name = C.KIND_WEBHOOK_NAMESPACE, C.KIND_WEBHOOK_SERVICE
        # The webhook's own identity, as in the kind Deployment: its ServiceAccount's
        # token (the RBAC of the kind manifests lets it read ServiceAccounts only).
        resp = self.rest.create(
            f"/api/v1/namespaces/{ns}/serviceaccounts/{name}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": 7 * 86400},
            },
        )
        kubeconfig = write_kubeconfig(
            self.dir / "kubeconfigs" / "webhook.conf",
            self.api_url,
            self.ca.cert_pem,
            resp["status"]["token"],
        )
        pki = self.dir / "pki"
        self.webhook_port = _free_port()
        self.webhook_url = f"https://{LOOPBACK}:{self.webhook_port}"
        args = [a for a in kind_manifests.webhook_args(region=C.REGION)[1:]]
        local = {
            "--port": str(self.webhook_port),
            "--tls-cert": str(pki / "webhook.crt"),
            "--tls-key": str(pki / "webhook.key"),
        }
        args = [
            f"{a.split('=', 1)[0]}={local[a.split('=', 1)[0]]}"
            if a.split("=", 1)[0] in local
            else a
            for a in args
        ]
        args += [f"--kubeconfig={kubeconfig}", f"--metrics-port={_free_port()}"]
        # Pod Identity mode, as EKS feeds it: a file of the associations' identities
        # (docs/reference/pod-identity.md §5.1-§5.3), written before the webhook starts
        # (it loads the file at start and cannot start without the folder).
        self.pod_identity_config = ConfigFileSync(
            self.aws.associations,
            config_path(self.state_dir),
            before_write=self._pod_identity_config_writing,
        ).start()
        # The EKS API answers a change once the binary has reloaded the file.
        self.aws.associations.settle = self.wait_for_pod_identity_config
        args += [
            f"--watch-container-credentials-config={self.pod_identity_config.path}",
            f"--container-credentials-full-uri={self.aws.urls['pod-identity-agent']}",
        ]
        self._webhook_args = args
        self._spawn_webhook()
        self._apply(
            [
                kind_manifests.mutating_webhook_configuration(
                    ca_pem=self.ca.cert_pem, url=f"{self.webhook_url}{C.WEBHOOK_MUTATE_PATH}"
                ),
                *kind_manifests.scenario_manifests(),
            ]
        )

    def _spawn_webhook(self) -> None:
        """Run the webhook binary with its flags and wait until it answers /healthz."""
        proc = self._spawn(WEBHOOK_PROGRAM, self._webhook_args)
        ctx = self.ca.client_context()

        def healthy() -> bool:
            import urllib.request

            url = f"{self.webhook_url}{C.WEBHOOK_HEALTHZ_PATH}"
            with urllib.request.urlopen(url, timeout=1, context=ctx) as resp:  # noqa: S310
                return bool(resp.status == 200)

        self._until("waiting for the pod identity webhook", healthy, proc, 30)
        # A fresh log: the load at start-up is the one to wait for.
        self._config_loads_at_write = 0

    def _config_loads(self) -> int:
        """How many times the running webhook has logged loading the watched file."""
        proc = self._webhook_proc()
        if proc is None:
            return 0
        try:
            text = proc.log.read_text(errors="replace")
        except OSError:
            return 0
        return sum(text.count(line) for line in CONFIG_LOADED_LINES)

    def _pod_identity_config_writing(self) -> None:
        # Counted just before the file is replaced: the binary's reload follows the
        # rename within milliseconds, often before the writer's next line (§5.3). A
        # load logged after this count read this file, or, if the previous write's
        # reload was still under way at this very moment, that one; its own event then
        # brings another load a few milliseconds later.
        self._config_loads_at_write = self._config_loads()

    def wait_for_pod_identity_config(self, timeout: float = 10.0) -> None:
        """Return once the upstream webhook has reloaded the file the last change wrote.

        The binary reloads asynchronously, through fsnotify, within milliseconds of the
        write; it exposes no loaded set, so this watches its log for a new load line
        (docs/reference/pod-identity.md §5.3). K8sError after ``timeout`` seconds.
        """
        proc = self._webhook_proc()
        if proc is None or proc.popen.poll() is not None:
            return  # a stopped webhook loads the current file when it starts again
        target = self._config_loads_at_write
        self._until(
            "waiting for the webhook to load the Pod Identity config file",
            lambda: self._config_loads() > target,
            proc,
            timeout,
        )

    # -- breaking the chain on purpose (the same calls as the embedded lab's) ---------------
    def _webhook_proc(self) -> _Proc | None:
        return next((p for p in self.procs if p.name == WEBHOOK_PROGRAM), None)

    @property
    def webhook_running(self) -> bool:
        proc = self._webhook_proc()
        return proc is not None and proc.popen.poll() is None

    def stop_webhook(self) -> None:
        """Stop the upstream webhook process (its failurePolicy then decides)."""
        proc = self._webhook_proc()
        if proc is None:
            return
        proc.stop()
        self.procs.remove(proc)
        self._write_pids()

    def start_webhook(self) -> str:
        """Run the webhook again on the same port, with the same flags; returns its URL."""
        if not self.webhook_running:
            stale = self._webhook_proc()
            if stale is not None:
                self.procs.remove(stale)
            self._spawn_webhook()
        return self.webhook_url

    @property
    def signing_key(self) -> SigningKey:
        """The cluster's ServiceAccount signing key (the file the API server was given)."""
        return self.keys.key

    def _start_aws(self) -> None:
        self.start_aws_side(
            tls=self.ca.issue().server_context(),
            # The discovery document of a real API server is at its root, whatever the
            # issuer's path: the whole issuer URL maps to it.
            resolve={self.issuer_url: self.api_url},
            wall_clock=self.clock,
        )

    def _wait_ready(self) -> None:
        """The namespace's ``default`` ServiceAccount exists and the webhook mutates."""
        self._until(
            "waiting for the ServiceAccount controller to create default/default",
            lambda: bool(self.rest.get("/api/v1/namespaces/default/serviceaccounts/default")),
            next(p for p in self.procs if p.name == "kube-controller-manager"),
            START_TIMEOUT_S,
        )
        probe = kind_manifests.probe_pod()

        def mutated() -> bool:
            pod = self.rest.create(f"/api/v1/namespaces/{C.NAMESPACE}/pods", probe, dryRun="All")
            return kind_manifests.why_not_mutated(pod) is None

        webhook = next(p for p in self.procs if p.name == WEBHOOK_PROGRAM)
        self._until("waiting for the webhook to mutate a probe pod", mutated, webhook, 30)

    def _write_endpoints(self) -> None:
        kubectl = binaries.find("kubectl")
        self.endpoints = self.aws.endpoints(
            apiserver=self.api_url,
            webhook=self.webhook_url,
            oidc=self.api_url,
            ca_bundle=str(self.ca_path),
            kubeconfig=str(self.kubeconfig),
            extra={
                "backend": "k8s",
                "admin": serve_admin(
                    self.loop,
                    StackControl(self),
                    self.state_dir,
                    tls=self.ca.issue().server_context(),
                ),
                "kubelet_root": str(self.state_dir / "kubelet"),
                "audit_log": str(self.audit_log),
                "kubernetes_version": binaries.KUBERNETES_VERSION,
                "kubectl": str(kubectl.path) if kubectl else "",
            },
        )
        self.endpoints.write(self.state_dir)

    # -- for people -------------------------------------------------------------------------
    def summary(self) -> str:
        ep = self.endpoints
        from ..stack import default_state_dir

        sd = (
            ""
            if self.state_dir == default_state_dir().resolve()
            else f" --state-dir {self.state_dir}"
        )
        return "\n".join(
            [
                f"irsa-lab: k8s backend ready in {self.state_dir} "
                f"({self.timings.get('ready', 0):.1f} s)",
                f"  kube-apiserver {binaries.KUBERNETES_VERSION}  {ep.apiserver}   "
                f"(kubeconfig: {ep.kubeconfig})",
                f"  etcd {binaries.ETCD_VERSION}, kube-controller-manager, kube-scheduler; "
                f"node {C.NODE_NAME} (kubelet stand-in)",
                f"  pod identity webhook {binaries.WEBHOOK_VERSION}  {ep.webhook}",
                f"  OIDC issuer     {ep.issuer}  -> served by the API server at {ep.oidc}",
                f"  STS {ep.sts}   IAM {ep.iam}   S3 {ep.s3}",
                f"  IMDS {ep.imds} (node)  {ep.imds_pod} (seen from a pod)",
                f"  audit log {self.audit_log}",
                f"  `irsa-lab env{sd}` prints the settings for kubectl, boto3 and the aws CLI",
            ]
        )


def main() -> int:  # pragma: no cover - a manual smoke run
    import tempfile

    with tempfile.TemporaryDirectory() as d, K8sLab(state_dir=Path(d), progress=print) as lab:
        print(lab.summary())
        print({k: round(v, 2) for k, v in lab.timings.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
