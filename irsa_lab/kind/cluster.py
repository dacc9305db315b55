"""Start and stop the kind backend: a real cluster, the real webhook, the AWS stand-ins.

:func:`kind_up` runs, in order, and stops at the first step that fails with a
:class:`KindError` that names the command that fixes it:

1. the blocking doctor checks (docker engine, kind, kubectl, cgroup v2) and a free
   ``127.0.0.1:6443``, before anything is written or created; a stale
   ``endpoints.json`` (its ports closed) is removed, a live one stops the start;
2. the signing key pair, the kind config and the webhook's certificate, in ``<state>/kind``;
3. ``kind create cluster``, writing ``<state>/kubeconfig``; when the cluster already
   exists (a ``kind up`` stopped by Ctrl-C, a reboot) it is **resumed** instead: its
   node container started, its kubeconfig exported again, every later step rerun;
4. ``kubectl apply`` of the anonymous discovery binding, the default scenario's
   ServiceAccount and the webhook;
5. a wait until a probe pod, created as a server-side dry run, **comes back mutated**:
   the webhook's ``failurePolicy`` is ``Ignore``, so an Available Deployment whose
   informer has not synced yet still lets pods through unmutated;
6. a check that the API server publishes the lab's key anonymously at the discovery URL;
7. where pods reach the host (:mod:`irsa_lab.kind.network`), then the AWS stand-ins
   trusting the cluster's issuer (``irsa_lab.stack.start_aws_for_issuer``), also
   listening there, and their CA in the ConfigMap ``default/irsa-lab-ca``;
8. EKS Pod Identity (:mod:`irsa_lab.kind.pod_identity`): a DNAT rule in the node that
   sends pods' ``169.254.170.23:80`` to the agent's pod-side listener, and the webhook's
   identities file written into the node from the associations, then on every change;
9. ``<state>/endpoints.json`` (0600) with ``"backend": "kind"``, the pod-side URLs and
   ``oidc_ca_bundle`` (the cluster CA the issuer's discovery URL chains to).

Every wait retries a failed ``kubectl`` call until its deadline; the sum of the step
timeouts is :data:`UP_DEADLINE_S`, which ``irsa-lab kind up --detach`` waits for.
``endpoints.json`` is written last and removed when the AWS stand-ins stop, so it
never points at closed ports.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from ..constants import (
    KIND_API_SERVER_ADDRESS,
    KIND_API_SERVER_PORT,
    KIND_API_SERVER_URL,
    KIND_CLUSTER_NAME,
    KIND_DISCOVERY_URL,
    KIND_ISSUER,
    KIND_WEBHOOK_NAMESPACE,
    KIND_WEBHOOK_SERVICE,
)
from ..doctor import Check
from ..pki import LabCA, write_secret
from .checks import blocking, kind_checks
from .config import AUDIT_LOG_FILE, kind_config_text, validate_kind_config
from .keys import ensure_keys
from .manifests import (
    discovery_rbac,
    issue_serving_cert,
    probe_pod,
    scenario_manifests,
    to_yaml,
    webhook_dns_names,
    webhook_manifests,
    why_not_mutated,
)
from .network import PodNetwork, ca_configmap, pod_network
from .pod_identity import NODE_CONFIG_FILE, NodeConfigSync, node_container, route_agent

__all__ = [
    "APPLY_TIMEOUT_S",
    "BACKEND",
    "CREATE_TIMEOUT_S",
    "DISCOVERY_TIMEOUT_S",
    "DOCKER_TIMEOUT_S",
    "EMBEDDED_INSTEAD",
    "FETCH_TIMEOUT_S",
    "FetchJson",
    "KindError",
    "KindLab",
    "MUTATION_TIMEOUT_S",
    "PROBE_TIMEOUT_S",
    "ROLLOUT_TIMEOUT_S",
    "Runner",
    "StartAws",
    "UP_DEADLINE_S",
    "cluster_ca_pem",
    "endpoints_alive",
    "failed_prerequisites",
    "fetch_json_anonymously",
    "kind_down",
    "kind_endpoints",
    "kind_up",
    "remove_stale_endpoints",
    "step_timeouts",
    "write_endpoints",
]

BACKEND = "kind"
DOCKER_TIMEOUT_S = 30  # each of `kind get clusters`, `docker info`, `docker network inspect`
CREATE_TIMEOUT_S = 600
APPLY_TIMEOUT_S = 120
ROLLOUT_TIMEOUT_S = 300
MUTATION_TIMEOUT_S = 120
PROBE_TIMEOUT_S = 60  # one server-side dry run
DISCOVERY_TIMEOUT_S = 60
FETCH_TIMEOUT_S = 10  # one anonymous GET of discovery or the JWKS
AWS_START_S = 30  # the stand-ins start in well under a second; a slow machine's margin
EMBEDDED_INSTEAD = "The embedded backend needs none of this: `irsa-lab up`."


class KindError(Exception):
    """Raised when the kind backend cannot start or stop; the message names the fix."""


StartAws = Callable[..., object]
FetchJson = Callable[[str, bytes], dict[str, Any]]


@dataclass
class Runner:
    """Runs docker, kind and kubectl with a timeout; a failure names the command."""

    env: Mapping[str, str] | None = None

    def run(
        self, argv: Sequence[str], *, timeout: float, input: str | None = None, fix: str = ""
    ) -> str:
        """The command's stdout; :class:`KindError` with its stderr and ``fix`` otherwise."""
        shown = " ".join(argv)
        hint = f"\n  fix: {fix}" if fix else ""
        try:
            p = subprocess.run(
                list(argv),
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                env=dict(self.env) if self.env is not None else None,
            )
        except FileNotFoundError as err:
            raise KindError(f"`{shown}`: {argv[0]} is not on PATH{hint}") from err
        except subprocess.TimeoutExpired as err:
            raise KindError(f"`{shown}` did not finish within {timeout:g} s{hint}") from err
        if p.returncode != 0:
            tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-15:])
            raise KindError(f"`{shown}` failed (exit {p.returncode}):\n{tail}{hint}")
        return p.stdout


def step_timeouts() -> dict[str, float]:
    """The longest each step of :func:`kind_up` may take, in seconds.

    A wait (:func:`_until`) may overrun its deadline by the attempt it started just
    before the deadline, so a wait counts its deadline plus one attempt's timeout.
    """
    return {
        "kind get clusters": DOCKER_TIMEOUT_S,
        "docker start / kind export kubeconfig (resume)": 2 * DOCKER_TIMEOUT_S + 60,
        "kind create cluster": CREATE_TIMEOUT_S,
        "kubectl apply": APPLY_TIMEOUT_S,
        "kubectl rollout status": ROLLOUT_TIMEOUT_S + 30,
        "mutated probe": MUTATION_TIMEOUT_S + PROBE_TIMEOUT_S,
        "issuer discovery": DISCOVERY_TIMEOUT_S + 2 * FETCH_TIMEOUT_S,
        "docker info / network inspect": 2 * DOCKER_TIMEOUT_S,
        "AWS stand-ins": AWS_START_S,
        "kubectl apply (CA ConfigMap)": APPLY_TIMEOUT_S,
        # the agent's DNAT rule, then the identities file (one log read, one write)
        "docker exec (Pod Identity)": 3 * DOCKER_TIMEOUT_S,
    }


# What `irsa-lab kind up --detach` waits for: every step at its longest.
UP_DEADLINE_S = sum(step_timeouts().values())


@dataclass
class KindLab:
    """A running kind backend: what ``endpoints.json`` says, and the AWS stand-ins."""

    state_dir: Path
    endpoints: dict[str, Any]
    aws: object | None = None
    name: str = KIND_CLUSTER_NAME
    steps: list[str] = field(default_factory=list)
    pod_identity: NodeConfigSync | None = None  # the node's identities file, kept in step

    def stop_aws(self) -> None:
        """Stop the AWS stand-ins; the cluster keeps running until :func:`kind_down`.

        ``endpoints.json`` goes first, if it is still the one this lab wrote: it must
        never point at ports that are closed.
        """
        path = self.state_dir / "endpoints.json"
        with contextlib.suppress(OSError, ValueError):
            if self.endpoints and json.loads(path.read_text()) == self.endpoints:
                path.unlink()
        if self.pod_identity is not None:
            self.pod_identity.stop()
            self.pod_identity = None
        stop = getattr(self.aws, "stop", None)
        if callable(stop):
            stop()
        self.aws = None


def failed_prerequisites(checks: Sequence[Check]) -> str | None:
    """The message ``irsa-lab kind up`` stops with, or None when nothing blocks it."""
    failed = blocking(checks)
    if not failed:
        return None
    lines = ["the kind backend cannot start on this machine:"]
    for c in failed:
        lines += [f"  - {c.name.removeprefix('kind: ')}: {c.detail}", f"    fix: {c.fix}"]
    lines.append(EMBEDDED_INSTEAD)
    return "\n".join(lines)


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def cluster_ca_pem(kubeconfig_text: str, cluster: str) -> bytes:
    """The API server's CA from a kubeconfig (``certificate-authority-data``)."""
    config = yaml.safe_load(kubeconfig_text) or {}
    for entry in config.get("clusters") or []:
        if entry.get("name") == cluster:
            return base64.b64decode(entry["cluster"]["certificate-authority-data"])
    raise KindError(f"the kubeconfig has no cluster named {cluster!r}")


def fetch_json_anonymously(url: str, ca_pem: bytes) -> dict[str, Any]:
    """GET ``url`` with no credentials, trusting only ``ca_pem``, as AWS STS fetches discovery."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    # Accept */*: the JWKS route produces application/jwk-set+json only.
    req = urllib.request.Request(url, headers={"Accept": "*/*"})  # noqa: S310 - https only
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:  # noqa: S310
        return dict(json.loads(resp.read()))


def _start_aws_for_issuer(**kwargs: Any) -> object:
    # Imported when called: the stack imports every stand-in, which the rest of the
    # kind backend (renderers, checks) does not need.
    stack = importlib.import_module("irsa_lab.stack")
    return stack.start_aws_for_issuer(**kwargs)


def _kind_control(handle: object, kubectl: list[str], run: Any, key_file: Path) -> Any:
    """The lab's control of this kind lab (:class:`irsa_lab.kind.control.KindControl`), or
    None for an AWS side that has no loop (a test's stand-in)."""
    side, loop = getattr(handle, "side", None), getattr(handle, "loop", None)
    if side is None or loop is None:
        return None
    from .control import KindControl

    def run_kubectl(args: Sequence[str], timeout: float) -> str:
        return str(run([*kubectl, *args], timeout=timeout))

    return KindControl(side, kubectl=run_kubectl, signing_key_file=key_file)


def _serve_admin(handle: object, state_dir: Path, control: Any) -> str:
    """Serve the admin endpoint (:mod:`irsa_lab.admin`) of this kind lab on the AWS
    side's loop; its URL, or "" without a control (a test's stand-in)."""
    loop = getattr(handle, "loop", None)
    if control is None or loop is None:
        return ""
    from ..admin import serve_admin

    side = getattr(handle, "side", None)
    return serve_admin(loop, control, state_dir, tls=getattr(side, "tls", None))


def _start_pod_identity(
    lab: KindLab, fields: Mapping[str, Any], control: Any, run: Any
) -> NodeConfigSync | None:
    """Route pods' agent traffic through the node and keep its identities file in step
    with the associations (:mod:`irsa_lab.kind.pod_identity`); None for an AWS side with
    no associations (a test's stand-in)."""
    associations = getattr(getattr(lab.aws, "side", None), "associations", None)
    if associations is None:
        return None
    node = node_container(lab.name)
    pod_url = fields.get("pod_identity_agent_pod")
    if pod_url:
        route_agent(run, node=node, pod_url=str(pod_url))
    mark = control.config_waiter.mark if control is not None else None
    sync = NodeConfigSync(associations, run, node=node, before_write=mark).start()
    if control is not None:
        # The EKS API answers a change once the webhook has reloaded the file, as on
        # the k8s backend (docs/fidelity.md, "associations take effect at once").
        associations.settle = control.wait_for_pod_identity_config
    return sync


def _aws_fields(handle: object) -> dict[str, Any]:
    """``endpoints.json`` fields the AWS side provides (sts, iam, s3, imds, ca_bundle, ...).

    Only this start's: an older ``endpoints.json`` is never merged in (its ports and
    keys belong to a process that is gone).
    """
    fields: dict[str, Any] = {}
    source: object = getattr(handle, "endpoints", handle)
    if isinstance(source, Mapping):
        fields.update(source)
    elif callable(getattr(source, "as_dict", None)):
        fields.update(source.as_dict())  # type: ignore[attr-defined]
    return fields


def endpoints_alive(endpoints: Mapping[str, Any], *, timeout: float = 1.0) -> bool:
    """Whether the AWS stand-ins ``endpoints.json`` names still accept connections.

    The STS (else IMDS) port is probed; a file whose ports are closed is stale.
    """
    for key in ("sts", "imds"):
        parts = urlsplit(str(endpoints.get(key) or ""))
        if not (parts.hostname and parts.port):
            continue
        try:
            with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
                return True
        except OSError:
            return False
    return False


def remove_stale_endpoints(state_dir: Path) -> bool:
    """Remove ``endpoints.json`` if nothing answers at its ports; True if it did.

    :class:`KindError` when the file is live: another lab serves from this state dir.
    """
    path = state_dir / "endpoints.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return False
    except ValueError:
        path.unlink()
        return True
    if isinstance(data, dict) and endpoints_alive(data):
        raise KindError(
            f"{path} names stand-ins that are running (backend {data.get('backend')!r})\n"
            "  fix: stop that lab first (`irsa-lab down` or `irsa-lab kind down`), or use "
            "another --state-dir"
        )
    path.unlink()
    return True


def write_endpoints(state_dir: Path, endpoints: Mapping[str, Any]) -> Path:
    """Write ``endpoints.json`` atomically, 0600: it holds the admin's secret key."""
    tmp = state_dir / f"endpoints.json.{os.getpid()}.tmp"
    write_secret(tmp, (json.dumps(dict(endpoints), indent=2) + "\n").encode())
    return tmp.replace(state_dir / "endpoints.json")


def kind_endpoints(
    aws_fields: Mapping[str, Any], *, kubeconfig: Path, kube_ca_file: Path, name: str
) -> dict[str, Any]:
    """``endpoints.json`` for the kind backend: the AWS side's fields plus the cluster's."""
    out = dict(aws_fields)
    out.update(
        backend=BACKEND,
        cluster_name=name,
        apiserver=KIND_API_SERVER_URL,
        # The webhook lives in the cluster; this is the name the API server dials.
        webhook=f"https://{webhook_dns_names()[0]}:443",
        issuer=KIND_ISSUER,
        # The API server stands for the issuer host: it serves discovery at
        # <oidc>/.well-known/openid-configuration as EKS does at <issuer>/...
        oidc=KIND_API_SERVER_URL,
        kubeconfig=str(kubeconfig),
        kube_ca_bundle=str(kube_ca_file),
        # The API server's serving certificate chains to the cluster CA, not to the
        # stand-ins' CA: discovery and the JWKS are verified with this one.
        oidc_ca_bundle=str(kube_ca_file),
    )
    return out


def _until(
    deadline_s: float,
    attempt: Callable[[], str | None],
    *,
    sleep: Callable[[float], None],
    interval: float,
) -> str | None:
    """Call ``attempt`` until it returns None (done) or the time is up; the last reason.

    An attempt that raises :class:`KindError` (a ``kubectl`` call that failed: the API
    server restarting, the webhook's Service without endpoints yet) is retried too;
    its message is the reason if the time runs out.
    """
    end = time.monotonic() + deadline_s
    while True:
        try:
            reason = attempt()
        except KindError as err:
            reason = str(err)
        if reason is None or time.monotonic() >= end:
            return reason
        sleep(interval)


def _webhook_manifests_yaml(kind_dir: Path, *, reuse: bool) -> str:
    """The manifests ``kind up`` applies; a resumed cluster keeps its webhook certificate.

    Saved manifests from before the webhook's Pod Identity mode are made anew (a new
    certificate, applied with the rest).
    """
    saved = kind_dir / "manifests.yaml"
    if reuse and saved.exists() and (kind_dir / "webhook-ca.crt").exists():
        text = saved.read_text()
        if NODE_CONFIG_FILE in text:
            return text
    ca = LabCA.create("irsa-lab webhook CA")
    (kind_dir / "webhook-ca.crt").write_bytes(ca.cert_pem)
    write_secret(kind_dir / "webhook-ca.key", ca.key_pem)
    manifests = [
        *discovery_rbac(),
        *scenario_manifests(),
        *webhook_manifests(ca=ca, serving=issue_serving_cert(ca)),
    ]
    text = to_yaml(manifests)
    write_secret(saved, text.encode())  # holds the TLS key
    return text


def kind_up(
    state_dir: Path,
    *,
    seed: int | None = None,
    name: str = KIND_CLUSTER_NAME,
    runner: Runner | None = None,
    checks: Callable[[], list[Check]] = kind_checks,
    start_aws: StartAws = _start_aws_for_issuer,
    fetch_json: FetchJson = fetch_json_anonymously,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] = lambda _msg: None,
) -> KindLab:
    """Create (or resume) the kind cluster, deploy the webhook, start the AWS stand-ins."""
    problem = failed_prerequisites(checks())
    if problem:
        raise KindError(problem)
    run = (runner or Runner()).run
    state_dir = state_dir.expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_endpoints(state_dir)
    clusters = run(["kind", "get", "clusters"], timeout=DOCKER_TIMEOUT_S).split()
    resume = name in clusters
    if not resume and _port_in_use(KIND_API_SERVER_ADDRESS, KIND_API_SERVER_PORT):
        raise KindError(
            f"{KIND_API_SERVER_ADDRESS}:{KIND_API_SERVER_PORT} is taken; the cluster's API "
            "server needs it (the issuer's discovery URL is fixed)\n"
            f"  fix: stop what listens there (`ss -ltnp 'sport = :{KIND_API_SERVER_PORT}'` shows it)"
        )

    kind_dir = state_dir / "kind"
    kubeconfig = state_dir / "kubeconfig"
    kubectl = ["kubectl", "--kubeconfig", str(kubeconfig)]
    lab = KindLab(state_dir, {}, name=name)

    def step(msg: str) -> None:
        lab.steps.append(msg)
        progress(msg)

    step("writing the signing key pair, kind config and webhook certificate")
    keys = ensure_keys(kind_dir / "keys")
    config_text = kind_config_text(keys_dir=keys.folder, name=name)
    problems = validate_kind_config(yaml.safe_load(config_text))
    if problems:
        raise KindError("the rendered kind config is invalid: " + "; ".join(problems))
    config_file = kind_dir / "kind-config.yaml"
    config_file.write_text(config_text)
    manifests_yaml = _webhook_manifests_yaml(kind_dir, reuse=resume)

    if resume:
        step(f"resuming kind cluster {name!r}: it exists already (a `kind up` stopped early?)")
        run(
            ["docker", "start", f"{name}-control-plane"],
            timeout=60,
            fix=f"`kind delete cluster --name {name}` removes a broken cluster; then `irsa-lab "
            "kind up` creates it again",
        )
        run(
            ["kind", "export", "kubeconfig", "--name", name, "--kubeconfig", str(kubeconfig)],
            timeout=DOCKER_TIMEOUT_S,
        )
    else:
        step(
            f"creating kind cluster {name!r} (a few minutes the first time: it pulls the node "
            "image)"
        )
        run(
            [
                "kind",
                "create",
                "cluster",
                "--config",
                str(config_file),
                "--name",
                name,
                "--kubeconfig",
                str(kubeconfig),
                "--wait",
                "120s",
            ],
            timeout=CREATE_TIMEOUT_S,
            fix=f"`kind export logs --name {name}` collects the node's logs; "
            f"`irsa-lab kind doctor` checks the machine",
        )
    left = (
        "\n(the cluster is still running for inspection; `irsa-lab kind up` resumes it, "
        "`irsa-lab kind down` deletes it)"
    )

    try:
        step("applying the discovery binding, s3-readonly-sa and the pod identity webhook")
        run([*kubectl, "apply", "-f", "-"], input=manifests_yaml, timeout=APPLY_TIMEOUT_S)
        step("waiting for the webhook Deployment")
        ns = ["--namespace", KIND_WEBHOOK_NAMESPACE]
        run(
            [
                *kubectl,
                *ns,
                "rollout",
                "status",
                f"deployment/{KIND_WEBHOOK_SERVICE}",
                f"--timeout={ROLLOUT_TIMEOUT_S}s",
            ],
            timeout=ROLLOUT_TIMEOUT_S + 30,
            fix=f"`kubectl {' '.join(ns)} describe pods` says why (often an image that cannot "
            "be pulled)",
        )

        step("waiting until a probe pod comes back mutated (server-side dry run)")
        probe = to_yaml([probe_pod()])

        def mutated() -> str | None:
            out = run(
                [*kubectl, "create", "--dry-run=server", "-o", "json", "-f", "-"],
                input=probe,
                timeout=PROBE_TIMEOUT_S,
            )
            return why_not_mutated(json.loads(out))

        reason = _until(MUTATION_TIMEOUT_S, mutated, sleep=sleep, interval=2.0)
        if reason is not None:
            raise KindError(
                f"the webhook did not mutate the probe pod within {MUTATION_TIMEOUT_S} s: "
                f"{reason}\n  fix: `kubectl {' '.join(ns)} logs deployment/{KIND_WEBHOOK_SERVICE}`"
            )

        step("checking anonymous issuer discovery at " + KIND_DISCOVERY_URL)
        kube_ca = cluster_ca_pem(kubeconfig.read_text(), f"kind-{name}")
        kube_ca_file = kind_dir / "cluster-ca.crt"
        kube_ca_file.write_bytes(kube_ca)

        def discovery() -> str | None:
            try:
                doc = fetch_json(KIND_DISCOVERY_URL, kube_ca)
                if doc.get("issuer") != KIND_ISSUER:
                    return f"the discovery document names issuer {doc.get('issuer')!r}"
                kids = [k.get("kid") for k in fetch_json(doc["jwks_uri"], kube_ca)["keys"]]
            except (OSError, ValueError, KeyError) as err:
                return f"{type(err).__name__}: {err}"
            if keys.kid in kids:
                return None
            other = " (the cluster was made from another state dir's keys?)" if resume else ""
            return f"the JWKS has kids {kids}, not {keys.kid}{other}"

        reason = _until(DISCOVERY_TIMEOUT_S, discovery, sleep=sleep, interval=1.0)
        if reason is not None:
            raise KindError(
                f"issuer discovery is not served anonymously: {reason}\n"
                f"  fix: `kubectl get --raw /.well-known/openid-configuration` and "
                f"`kubectl get clusterrolebinding oidc-discovery-anonymous -o yaml`"
            )

        step("finding where pods reach the host (docker info, docker network inspect kind)")
        try:
            net: PodNetwork = pod_network(run)
        except ValueError as err:
            raise KindError(f"{err}\n  fix: `docker network inspect kind`") from err
    except KindError as err:
        raise KindError(f"{err}{left}") from err

    step(f"starting the AWS stand-ins for pods at {net.host} ({net.why}), trusting the issuer")
    lab.aws = start_aws(
        state_dir=state_dir,
        issuer=KIND_ISSUER,
        discovery_url=KIND_DISCOVERY_URL,
        ca_pem_for_discovery=kube_ca,
        seed=seed,
        pod_host=net.host,
        pod_bind=net.bind,
    )
    try:
        fields = _aws_fields(lab.aws)
        step("delivering the stand-ins' CA to pods: ConfigMap default/irsa-lab-ca")
        ca_pem = Path(fields["ca_bundle"]).read_bytes()
        run(
            [*kubectl, "apply", "-f", "-"],
            input=to_yaml([ca_configmap(ca_pem)]),
            timeout=APPLY_TIMEOUT_S,
        )
        endpoints = kind_endpoints(
            fields, kubeconfig=kubeconfig, kube_ca_file=kube_ca_file, name=name
        )
        # The node writes the API server's audit log into the state dir (kind-config's
        # extraMounts): the admission record any process reads.
        endpoints["audit_log"] = str(keys.folder.parent / "audit" / AUDIT_LOG_FILE)
        control = _kind_control(lab.aws, kubectl, run, keys.signing_key_file)
        step(
            "Pod Identity: pods' 169.254.170.23 routed to the agent, the webhook's "
            f"identities file at {NODE_CONFIG_FILE} in the node"
        )
        lab.pod_identity = _start_pod_identity(lab, fields, control, run)
        admin = _serve_admin(lab.aws, state_dir, control)
        if admin:
            endpoints["admin"] = admin
        write_endpoints(state_dir, endpoints)
        lab.endpoints = endpoints
    except BaseException as err:
        lab.stop_aws()
        if isinstance(err, KindError):
            raise KindError(f"{err}{left}") from err
        raise
    step("ready")
    return lab


def kind_down(
    state_dir: Path,
    *,
    lab: KindLab | None = None,
    name: str = KIND_CLUSTER_NAME,
    runner: Runner | None = None,
) -> None:
    """Stop the AWS stand-ins of ``lab`` (if given) and delete the kind cluster."""
    if lab is not None:
        lab.stop_aws()
    state_dir = state_dir.expanduser().resolve()
    kubeconfig = state_dir / "kubeconfig"
    (runner or Runner()).run(
        ["kind", "delete", "cluster", "--name", name, "--kubeconfig", str(kubeconfig)],
        timeout=180,
        fix=f"`docker rm -f {name}-control-plane` removes the node container by hand",
    )
    endpoints = state_dir / "endpoints.json"
    if endpoints.exists() and json.loads(endpoints.read_text()).get("backend") == BACKEND:
        endpoints.unlink()
