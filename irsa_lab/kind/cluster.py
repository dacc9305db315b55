"""Start and stop the kind backend: a real cluster, the real webhook, the AWS stand-ins.

:func:`kind_up` runs, in order, and stops at the first step that fails with a
:class:`KindError` that names the command that fixes it:

1. the blocking doctor checks (docker engine, kind, kubectl, cgroup v2) and a free
   ``127.0.0.1:6443``, before anything is written or created;
2. the signing key pair, the kind config and the webhook's certificate, in ``<state>/kind``;
3. ``kind create cluster``, writing ``<state>/kubeconfig``;
4. ``kubectl apply`` of the anonymous discovery binding, the default scenario's
   ServiceAccount and the webhook;
5. a wait until a probe pod, created as a server-side dry run, **comes back mutated**:
   the webhook's ``failurePolicy`` is ``Ignore``, so an Available Deployment whose
   informer has not synced yet still lets pods through unmutated;
6. a check that the API server publishes the lab's key anonymously at the discovery URL;
7. the AWS stand-ins trusting the cluster's issuer (``irsa_lab.stack.start_aws_for_issuer``);
8. ``<state>/endpoints.json`` with ``"backend": "kind"``.
"""

from __future__ import annotations

import base64
import importlib
import json
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from .config import kind_config_text, validate_kind_config
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

__all__ = [
    "BACKEND",
    "CREATE_TIMEOUT_S",
    "DISCOVERY_TIMEOUT_S",
    "EMBEDDED_INSTEAD",
    "FetchJson",
    "KindError",
    "KindLab",
    "MUTATION_TIMEOUT_S",
    "ROLLOUT_TIMEOUT_S",
    "Runner",
    "StartAws",
    "cluster_ca_pem",
    "failed_prerequisites",
    "fetch_json_anonymously",
    "kind_down",
    "kind_endpoints",
    "kind_up",
]

BACKEND = "kind"
CREATE_TIMEOUT_S = 600
ROLLOUT_TIMEOUT_S = 300
MUTATION_TIMEOUT_S = 120
DISCOVERY_TIMEOUT_S = 60
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


@dataclass
class KindLab:
    """A running kind backend: what ``endpoints.json`` says, and the AWS stand-ins."""

    state_dir: Path
    endpoints: dict[str, Any]
    aws: object | None = None
    name: str = KIND_CLUSTER_NAME
    steps: list[str] = field(default_factory=list)

    def stop_aws(self) -> None:
        """Stop the AWS stand-ins; the cluster keeps running until :func:`kind_down`."""
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


def _aws_fields(handle: object, state_dir: Path) -> dict[str, Any]:
    """``endpoints.json`` fields the AWS side provides (sts, iam, s3, imds, ca_bundle, ...)."""
    fields: dict[str, Any] = {}
    existing = state_dir / "endpoints.json"
    if existing.exists():
        fields.update(json.loads(existing.read_text()))
    source: object = getattr(handle, "endpoints", handle)
    if isinstance(source, Mapping):
        fields.update(source)
    elif callable(getattr(source, "as_dict", None)):
        fields.update(source.as_dict())  # type: ignore[attr-defined]
    return fields


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
    )
    return out


def _until(
    deadline_s: float,
    attempt: Callable[[], str | None],
    *,
    sleep: Callable[[float], None],
    interval: float,
) -> str | None:
    """Call ``attempt`` until it returns None (done) or the time is up; the last reason."""
    end = time.monotonic() + deadline_s
    while True:
        reason = attempt()
        if reason is None or time.monotonic() >= end:
            return reason
        sleep(interval)


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
    """Create the kind cluster, deploy the webhook, start the AWS stand-ins (module doc)."""
    problem = failed_prerequisites(checks())
    if problem:
        raise KindError(problem)
    run = (runner or Runner()).run
    clusters = run(["kind", "get", "clusters"], timeout=30).split()
    if name in clusters:
        raise KindError(
            f"a kind cluster named {name!r} already exists\n"
            f"  fix: `irsa-lab kind down` (or `kind delete cluster --name {name}`)"
        )
    if _port_in_use(KIND_API_SERVER_ADDRESS, KIND_API_SERVER_PORT):
        raise KindError(
            f"{KIND_API_SERVER_ADDRESS}:{KIND_API_SERVER_PORT} is taken; the cluster's API "
            "server needs it (the issuer's discovery URL is fixed)\n"
            f"  fix: stop what listens there (`ss -ltnp 'sport = :{KIND_API_SERVER_PORT}'` shows it)"
        )

    state_dir = state_dir.expanduser().resolve()
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
    ca = LabCA.create("irsa-lab webhook CA")
    (kind_dir / "webhook-ca.crt").write_bytes(ca.cert_pem)
    write_secret(kind_dir / "webhook-ca.key", ca.key_pem)
    manifests = [
        *discovery_rbac(),
        *scenario_manifests(),
        *webhook_manifests(ca=ca, serving=issue_serving_cert(ca)),
    ]
    manifests_yaml = to_yaml(manifests)
    write_secret(kind_dir / "manifests.yaml", manifests_yaml.encode())  # holds the TLS key

    step(f"creating kind cluster {name!r} (a few minutes the first time: it pulls the node image)")
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
    left = "\n(the cluster is still running for inspection; `irsa-lab kind down` deletes it)"

    try:
        step("applying the discovery binding, s3-readonly-sa and the pod identity webhook")
        run([*kubectl, "apply", "-f", "-"], input=manifests_yaml, timeout=120)
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
                timeout=60,
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
            return None if keys.kid in kids else f"the JWKS has kids {kids}, not {keys.kid}"

        reason = _until(DISCOVERY_TIMEOUT_S, discovery, sleep=sleep, interval=1.0)
        if reason is not None:
            raise KindError(
                f"issuer discovery is not served anonymously: {reason}\n"
                f"  fix: `kubectl get --raw /.well-known/openid-configuration` and "
                f"`kubectl get clusterrolebinding oidc-discovery-anonymous -o yaml`"
            )
    except KindError as err:
        raise KindError(f"{err}{left}") from err

    step("starting the AWS stand-ins, trusting the cluster's issuer")
    lab.aws = start_aws(
        state_dir=state_dir,
        issuer=KIND_ISSUER,
        discovery_url=KIND_DISCOVERY_URL,
        ca_pem_for_discovery=kube_ca,
        seed=seed,
    )
    lab.endpoints = kind_endpoints(
        _aws_fields(lab.aws, state_dir), kubeconfig=kubeconfig, kube_ca_file=kube_ca_file, name=name
    )
    (state_dir / "endpoints.json").write_text(json.dumps(lab.endpoints, indent=2) + "\n")
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
