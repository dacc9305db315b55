"""One call gives a notebook or a lab a running lab: :func:`lab`.

The returned :class:`Lab` holds the real clients (the official ``kubernetes`` client,
boto3, the aws CLI through :meth:`Lab.exec`) and, on the embedded backend, views of
the stand-ins' insides (the trace, the admission log, the IAM account). Which
backend is used follows ``IRSA_LAB_BACKEND``:

- ``embedded`` (default): a stack started in this process, deterministic by default
  (fixed seed, the lab clock stopped at 2024-03-27 14:00:00 UTC);
- ``running``: connect to ``irsa-lab up`` in the state directory;
- ``kind``: connect to ``irsa-lab kind up`` in the state directory.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import constants as C
from .client_env import lab_environment
from .kube.kubelet import volume_dir

if TYPE_CHECKING:
    from .control import LabControl
    from .kube.admission import AdmissionRecord
    from .kube.audit import AuditLog
    from .stack import EmbeddedLab

__all__ = [
    "AUDIT_WAIT_S",
    "AWS_SERVICES",
    "BACKENDS",
    "POD_START_TIMEOUT_S",
    "WEBHOOK_SYNC_TIMEOUT_S",
    "Lab",
    "LabError",
    "close_api_client",
    "expected_mutation",
    "lab",
    "observed_mutation",
    "reset_lab",
]

BACKENDS = ("embedded", "k8s", "running", "kind")
# The AWS stand-ins a lab serves, by their endpoints.json key (boto3's service name).
AWS_SERVICES = ("sts", "iam", "s3", "ec2", "eks", "eks-auth")


class LabError(RuntimeError):
    """Raised when a lab cannot be started or reached; the message says what to do."""


def close_api_client(api: Any) -> None:
    """Close a ``kubernetes`` ApiClient and every socket it pooled.

    urllib3 2 forgets its pools on ``clear()`` without closing their sockets, and the
    last response keeps its socket's file object open; both are closed here first.
    """
    last = getattr(api, "last_response", None)
    if last is not None and getattr(last, "urllib3_response", None) is not None:
        last.urllib3_response.close()
    api.last_response = None
    pools = api.rest_client.pool_manager.pools
    for key in list(pools.keys()):
        pool = pools.get(key)
        if pool is not None:
            pool.close()
    pools.clear()
    api.close()


WEBHOOK_SYNC_TIMEOUT_S = 10.0
POD_START_TIMEOUT_S = 120.0
# How long to wait for a real API server's audit event of a create (written as the
# request completes; a loaded machine can take seconds).
AUDIT_WAIT_S = 20.0


def expected_mutation(annotations: Mapping[str, str]) -> dict[str, Any]:
    """What the webhook does to a pod of a ServiceAccount with these annotations, in the
    facts :meth:`Lab.await_webhook_sees` compares: role, audience, token lifetime and
    regional STS (read with the webhook stand-in's own parsers; the lab runs the
    webhook with ``--sts-regional-endpoint=true`` and ``--token-expiration=86400``)."""
    from .webhook.annotations import parse_go_bool, parse_token_expiration

    role = annotations.get(C.ROLE_ARN_ANNOTATION)
    if not role:
        return {"role": None}
    expiration = parse_token_expiration(
        annotations.get(C.TOKEN_EXPIRATION_ANNOTATION), C.MIN_TOKEN_EXPIRATION_S
    )
    raw_regional = annotations.get(C.STS_REGIONAL_ANNOTATION)
    regional = parse_go_bool(raw_regional) if raw_regional is not None else None
    return {
        "role": role,
        "audience": annotations.get(C.AUDIENCE_ANNOTATION) or C.DEFAULT_AUDIENCE,
        "expiration": expiration or C.DEFAULT_TOKEN_EXPIRATION_S,
        "regional": True if regional is None else regional,
    }


def observed_mutation(pod: Mapping[str, Any], want: Mapping[str, Any]) -> dict[str, Any]:
    """The same facts as :func:`expected_mutation`, read from a (dry-run) pod."""
    spec = pod.get("spec") or {}
    first = (spec.get("containers") or [{}])[0]
    env = {e.get("name"): e.get("value") for e in first.get("env") or []}
    role = env.get(C.ENV_ROLE_ARN)
    if not role or want.get("role") is None:
        return {"role": role or None}
    token: dict[str, Any] = {}
    for v in spec.get("volumes") or []:
        if v.get("name") == C.TOKEN_VOLUME_NAME:
            for src in (v.get("projected") or {}).get("sources") or []:
                token = src.get("serviceAccountToken") or token
    return {
        "role": role,
        "audience": token.get("audience"),
        "expiration": token.get("expirationSeconds"),
        "regional": C.ENV_STS_REGIONAL_ENDPOINTS in env,
    }


# Who set os.environ (Lab.set_environment), last one first in force, and what the
# variables held before the first of them.
_env_lock = threading.Lock()
_env_owners: list[Lab] = []
_env_before: dict[str, str | None] = {}
_ENV_NAMES = (*lab_environment(defaultdict(str)), "PATH")


def _apply_env(env: Mapping[str, str | None]) -> None:
    for name in _ENV_NAMES:
        value = env.get(name)
        if value is None:
            if name != "PATH" or name in env:
                os.environ.pop(name, None)
        else:
            os.environ[name] = value


@dataclass(eq=False, repr=False)
class Lab:
    """Clients and views of a running lab, the same whatever the backend."""

    endpoints: dict[str, Any]
    state_dir: Path
    _: KW_ONLY
    backend: str
    embedded: EmbeddedLab | None = None
    # A stack this process started and stops on close (the k8s backend's).
    owned: Any = None
    _api: Any = field(default=None, init=False)
    _control: Any = field(default=None, init=False)
    _env_set: dict[str, str] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.endpoints = dict(self.endpoints)

    # -- Kubernetes ---------------------------------------------------------------------
    @property
    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` configured from the lab's kubeconfig."""
        if self._api is None:
            from kubernetes import config

            self._api = config.new_client_from_config(config_file=self.endpoints["kubeconfig"])
        return self._api

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    @property
    def admissionregistration(self) -> Any:
        from kubernetes import client

        return client.AdmissionregistrationV1Api(self.api_client)

    def _raw(self, obj: Any) -> dict[str, Any]:
        return dict(json.loads(obj.data))

    def get_pod(self, name: str, namespace: str = C.NAMESPACE) -> dict[str, Any]:
        """The stored pod as the API server returns it (a plain dict)."""
        return self._raw(self.core.read_namespaced_pod(name, namespace, _preload_content=False))

    def get_service_account(self, name: str, namespace: str = C.NAMESPACE) -> dict[str, Any]:
        """The ServiceAccount as the API server returns it (a plain dict, as ``get_pod``).

        Every ``lab.get_…`` reader gives the JSON the API server sent (``kubectl get -o
        json``, camelCase as in the article's YAML); ``lab.core.read_namespaced_…`` gives
        the same object as the ``kubernetes`` client's classes.
        """
        return self._raw(
            self.core.read_namespaced_service_account(name, namespace, _preload_content=False)
        )

    def get_webhook_configuration(self, name: str = C.WEBHOOK_CONFIG_NAME) -> dict[str, Any]:
        return self._raw(
            self.admissionregistration.read_mutating_webhook_configuration(
                name, _preload_content=False
            )
        )

    def create_pod(
        self, manifest: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Create a pod (the API server runs admission) and return it as stored."""
        ns = namespace or manifest.get("metadata", {}).get("namespace") or C.NAMESPACE
        body = dict(manifest)
        if self.endpoints.get("backend") == "kind":
            # Real containers: the stand-ins' CA reaches them in a ConfigMap.
            body = self._with_kind_ca(body, ns)
        resp = self.core.create_namespaced_pod(ns, body, _preload_content=False)
        return self._raw(resp)

    def _with_kind_ca(self, pod: dict[str, Any], namespace: str) -> dict[str, Any]:
        from kubernetes.client.rest import ApiException

        from .kind.network import CA_CONFIGMAP, ca_configmap, with_lab_ca

        try:
            self.core.read_namespaced_config_map(CA_CONFIGMAP, namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            ca_pem = Path(self.endpoints["ca_bundle"]).read_bytes()
            self.core.create_namespaced_config_map(namespace, ca_configmap(ca_pem, namespace))
        return with_lab_ca(pod)

    def delete_pod(
        self, name: str, namespace: str = C.NAMESPACE, *, missing_ok: bool = True
    ) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as err:
            if not (missing_ok and err.status == 404):
                raise

    def wait_running(
        self, name: str, namespace: str = C.NAMESPACE, *, timeout: float = POD_START_TIMEOUT_S
    ) -> dict[str, Any]:
        """``kubectl wait --for=jsonpath='{.status.phase}'=Running``: the pod once its node
        runs it (its volumes written); LabError naming its phase after ``timeout``."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            pod = self.get_pod(name, namespace)
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Running":
                return pod
            if time.monotonic() > deadline:
                raise LabError(
                    f"pod {namespace}/{name} is {phase or 'not scheduled'} after {timeout:.0f} s: "
                    f"`kubectl describe pod {name} -n {namespace}` shows why"
                )
            time.sleep(0.1)

    def recreate_pod(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Delete the pod if it exists, then create it again: how a pod picks up a new
        ServiceAccount annotation (the webhook only acts at creation)."""
        meta = manifest.get("metadata", {})
        self.delete_pod(meta["name"], meta.get("namespace") or C.NAMESPACE)
        return self.create_pod(manifest)

    def annotate_service_account(
        self, name: str, annotations: Mapping[str, str | None], namespace: str = C.NAMESPACE
    ) -> dict[str, Any]:
        """``kubectl annotate sa``: a value of None removes the annotation."""
        body = {"metadata": {"annotations": dict(annotations)}}
        sa = self._raw(
            self.core.patch_namespaced_service_account(
                name, namespace, body, _preload_content=False
            )
        )
        if self.embedded is None:
            self.await_webhook_sees(sa)
        return sa

    def await_webhook_sees(
        self, service_account: Mapping[str, Any], *, timeout: float = WEBHOOK_SYNC_TIMEOUT_S
    ) -> bool:
        """Wait until the webhook mutates as ``service_account``'s annotations say.

        The upstream webhook reads ServiceAccounts from an informer cache, and waits
        only for an account missing from it: a pod created right after an annotation
        changed can be mutated from the old one. A server-side dry run of a pod of that
        account (nothing is stored) shows what the webhook would do now; it is asked
        again until it agrees, for at most ``timeout`` seconds. (The embedded webhook
        looks the account up consistently and needs no wait.) False if it never agreed.
        """
        import time

        meta = service_account.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        want = expected_mutation(dict(meta.get("annotations") or {}))
        probe = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"generateName": "irsa-lab-probe-", "namespace": namespace},
            "spec": {
                "serviceAccountName": name,
                "containers": [{"name": "probe", "image": C.POD_IMAGE}],
            },
        }
        deadline = time.monotonic() + timeout
        while True:
            resp = self.core.create_namespaced_pod(
                namespace, probe, dry_run="All", _preload_content=False
            )
            if observed_mutation(self._raw(resp), want) == want:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    # -- admission: what the API server sent the webhook and what it got back -------------
    def admission_mark(self) -> int:
        """A mark to pass to :meth:`admission_records` (taken before creating a pod)."""
        if self.endpoints.get("audit_log"):
            return self._audit_log().mark()
        return self.control.admission_mark()

    def admission_records(
        self, namespace: str, name: str, since: int, *, timeout: float = AUDIT_WAIT_S
    ) -> list[AdmissionRecord]:
        """The webhook calls the API server made admitting pod ``namespace/name`` after
        ``since``: from the embedded API server's log, or from a real API server's audit
        log (``Request`` level), which carries the real JSONPatch. Empty: not called."""
        if not self.endpoints.get("audit_log"):
            return self.control.admission_records(namespace, name, since)
        listed = self.admissionregistration.list_mutating_webhook_configuration(
            _preload_content=False
        )
        return self._audit_log().admission_records(
            namespace=namespace,
            name=name,
            since=since,
            timeout=timeout,
            configurations=list(self._raw(listed).get("items") or []),
        )

    def _audit_log(self) -> AuditLog:
        from .kube.audit import AuditLog

        return AuditLog(Path(self.endpoints["audit_log"]))

    # -- the views and knobs the lessons use, on every backend ------------------------------
    @property
    def control(self) -> LabControl:
        """The trace, the node's metadata options, the webhook, the kubelet's records
        (:class:`irsa_lab.control.LabControl`), wherever the lab runs."""
        if self._control is None:
            from .control import StackControl

            stack = self.embedded if self.embedded is not None else self.owned
            if stack is not None:
                self._control = StackControl(stack)
            else:
                from .admin import RemoteControl

                self._control = RemoteControl(self.endpoints, self.state_dir)
        return self._control

    def modify_instance_metadata_options(
        self, *, HttpTokens: str | None = None, HttpPutResponseHopLimit: int | None = None
    ) -> dict[str, Any]:
        """``aws ec2 modify-instance-metadata-options`` for the lab's node; returns the
        options in force afterwards."""
        return self.control.modify_metadata_options(
            http_tokens=HttpTokens, hop_limit=HttpPutResponseHopLimit
        )

    # -- the token ------------------------------------------------------------------------
    def volume_path(self, pod: Mapping[str, Any], volume: str = C.TOKEN_VOLUME_NAME) -> Path:
        """The host folder the kubelet wrote a projected volume into."""
        root = Path(self.endpoints.get("kubelet_root") or self.state_dir / "kubelet")
        return volume_dir(root, pod["metadata"]["uid"], volume)

    def token_path(self, pod_name: str = C.POD_NAME, namespace: str = C.NAMESPACE) -> Path:
        return self.volume_path(self.get_pod(pod_name, namespace)) / C.TOKEN_FILE_NAME

    def read_token(self, pod_name: str = C.POD_NAME, namespace: str = C.NAMESPACE) -> str:
        """The projected token, as the SDK in the pod reads it."""
        if self.endpoints.get("backend") == "kind":
            # The real kubelet writes it inside the node container: read it in the pod.
            from .kind.exec import read_pod_file

            return read_pod_file(
                self.endpoints, namespace=namespace, pod=pod_name, path=C.TOKEN_FILE
            )
        return self.token_path(pod_name, namespace).read_text()

    def discovery(self) -> dict[str, Any]:
        """The issuer's discovery document, fetched like STS does (over HTTPS)."""
        return self._get_json(self.endpoints["oidc"] + "/.well-known/openid-configuration")

    def jwks(self) -> dict[str, Any]:
        """The JWKS named by the discovery document's ``jwks_uri``."""
        uri = str(self.discovery()["jwks_uri"])
        issuer = self.endpoints["issuer"]
        local = self.endpoints["oidc"] + uri[len(issuer) :] if uri.startswith(issuer) else uri
        return self._get_json(local)

    def _get_json(self, url: str) -> dict[str, Any]:
        import ssl
        import urllib.request

        # The issuer is served by the API server: on kind its CA is the cluster's.
        cafile = self.endpoints.get("oidc_ca_bundle") or self.endpoints["ca_bundle"]
        ctx = ssl.create_default_context(cafile=cafile)
        with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:  # noqa: S310 - https only
            return dict(json.loads(resp.read()))

    # -- AWS ----------------------------------------------------------------------------
    def aws_env(self, *, admin: bool = True) -> dict[str, str]:
        """The settings that point boto3 and the aws CLI at the stand-ins (the AWS part
        of :func:`lab_environment`)."""
        env = lab_environment(self.endpoints, admin=admin)
        del env["KUBECONFIG"]
        return env

    def set_environment(self) -> dict[str, str]:
        """Point this process's ``os.environ`` at the lab, as ``eval "$(irsa-lab env)"``
        does for a shell: ``!kubectl …`` and ``!aws …`` in a notebook then reach it.

        The variables are :func:`lab_environment`'s (the kubeconfig, the AWS endpoints,
        CA bundle and region, the account administrator's keys), and the lab's Python
        environment goes first on ``PATH`` so ``aws`` is the CLI installed with it.
        :func:`lab` calls this. With two labs in one process the last one to call it
        wins; :meth:`close` (or :meth:`restore_environment`) hands the variables to the
        previous lab still open, or back to the values they had before any lab.
        Returns what was set.
        """
        env = lab_environment(self.endpoints)
        bin_dir = str(Path(sys.executable).parent)
        path = os.environ.get("PATH", os.defpath)
        if bin_dir not in path.split(os.pathsep):
            env["PATH"] = f"{bin_dir}{os.pathsep}{path}"
        with _env_lock:
            if not _env_owners:
                _env_before.clear()
                _env_before.update({k: os.environ.get(k) for k in _ENV_NAMES})
            if self in _env_owners:
                _env_owners.remove(self)
            _env_owners.append(self)
            self._env_set = env
            _apply_env(env)
        return env

    def restore_environment(self) -> None:
        """Undo :meth:`set_environment` (nothing if this lab did not set it)."""
        with _env_lock:
            if self not in _env_owners:
                return
            _env_owners.remove(self)
            self._env_set = None
            if _env_owners:
                _apply_env(_env_owners[-1]._env_set or {})
            else:
                _apply_env(dict(_env_before))
                _env_before.clear()

    def aws_client(self, service: str, **credentials: str) -> Any:
        """A boto3 client for ``service`` (``iam``, ``s3``, ``sts``, ``ec2``), signed with the
        account administrator's keys unless other credentials are given.

        Any other name raises :class:`LabError` naming the services the lab has."""
        ep = self.endpoints
        key = service.replace("-", "_")  # eks-auth is endpoints.json's eks_auth
        if not ep.get(key) or service not in AWS_SERVICES:
            known = ", ".join(s for s in AWS_SERVICES if ep.get(s.replace("-", "_")))
            hint = (
                " (this lab was started before it had EC2: restart it)"
                if service in AWS_SERVICES
                else ""
            )
            raise LabError(f"the lab has no {service!r} service{hint}; it has: {known}")
        import boto3

        creds = credentials or {
            "aws_access_key_id": ep["admin_access_key_id"],
            "aws_secret_access_key": ep["admin_secret_access_key"],
        }
        return boto3.session.Session(region_name=ep["region"], **creds).client(
            service, endpoint_url=ep[key], verify=ep["ca_bundle"]
        )

    def exec(
        self,
        pod: str,
        argv: Sequence[str],
        *,
        namespace: str = C.NAMESPACE,
        container: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` as the pod's container would (``irsa-lab exec``), output captured.

        On the embedded backend the lab's trace watches the state directory's facts
        file, so what the command's SDK recorded there (its read of the token file)
        joins the trace where it happened.
        """
        from .in_pod import exec_in_pod
        from .trace import facts_path

        if self.embedded is None:
            # A node that watches the API server starts the pod a moment after it is
            # created (a real one pulls the image first): `kubectl wait` before exec.
            self.wait_running(pod, namespace)
        if self.embedded is not None:
            self.embedded.trace.watch(facts_path(self.state_dir))
        env = {"TZ": "UTC", **(extra_env or {})}
        return exec_in_pod(
            self.endpoints,
            self.state_dir,
            namespace=namespace,
            pod=pod,
            container=container,
            argv=argv,
            capture=True,
            timeout=timeout,
            extra_env=env,
        )

    # -- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop what this lab started and restore the environment it set."""
        self.restore_environment()
        if self._api is not None:
            close_api_client(self._api)
            self._api = None
        if self.embedded is not None:
            self.embedded.stop()
        if self.owned is not None:
            self.owned.stop()
            self.owned = None


_current: Lab | None = None
_current_lock = threading.Lock()


def lab(
    backend: str | None = None,
    *,
    state_dir: Path | str | None = None,
    deterministic: bool = True,
) -> Lab:
    """The lab for this process: started on first call, the same object afterwards.

    It also sets this process's environment (:meth:`Lab.set_environment`), so
    ``!kubectl …`` and ``!aws …`` in a notebook reach the lab; :func:`reset_lab` (and
    the lab's ``close``) put the previous values back.
    """
    global _current
    with _current_lock:
        if _current is not None:
            return _current
        chosen = (backend or os.environ.get("IRSA_LAB_BACKEND") or "embedded").lower()
        if chosen not in BACKENDS:
            raise LabError(f"unknown backend {chosen!r}: choose one of {', '.join(BACKENDS)}")
        if chosen == "embedded":
            _current = _start_embedded(state_dir, deterministic)
        elif chosen == "k8s":
            _current = _start_k8s(state_dir, deterministic)
        else:
            _current = _connect(chosen, state_dir)
        # `!kubectl …` and `!aws …` in the notebook reach this lab.
        _current.set_environment()
        atexit.register(_close_current)
        return _current


def _start_embedded(state_dir: Path | str | None, deterministic: bool) -> Lab:
    from .stack import DEFAULT_SEED, EmbeddedLab, lab_clock

    # A notebook's stack keeps its files in a private folder, so two notebooks (or a
    # notebook and `irsa-lab up`) never share a kubelet folder or endpoints.json.
    folder = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="irsa-lab-"))
    stack = EmbeddedLab(
        state_dir=folder,
        seed=DEFAULT_SEED if deterministic else None,
        clock=lab_clock(deterministic),
    ).start()
    return Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)


def _start_k8s(state_dir: Path | str | None, deterministic: bool) -> Lab:
    from .backends.k8s import K8sError, K8sLab
    from .stack import DEFAULT_SEED

    folder = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="irsa-lab-k8s-"))
    stack = K8sLab(state_dir=folder, seed=DEFAULT_SEED if deterministic else None)
    try:
        stack.start()
    except K8sError as err:
        raise LabError(str(err)) from None
    return Lab(stack.endpoints.as_dict(), stack.state_dir, backend="k8s", owned=stack)


def _connect(backend: str, state_dir: Path | str | None) -> Lab:
    from .stack import default_state_dir

    folder = Path(state_dir) if state_dir else default_state_dir()
    path = folder / "endpoints.json"
    if not path.exists():
        start = "irsa-lab up --detach" if backend == "running" else "irsa-lab kind up"
        raise LabError(
            f"no lab found in {folder}: start one with `{start}`, or use the "
            "embedded backend (IRSA_LAB_BACKEND=embedded)"
        )
    endpoints = json.loads(path.read_text())
    from .kind.cluster import endpoints_alive

    if not endpoints_alive(endpoints):
        raise LabError(
            f"the lab in {folder} is not running (its endpoints.json names closed ports): "
            f"start it again with `{'irsa-lab kind up' if endpoints.get('backend') == 'kind' else 'irsa-lab up --detach'}`"
        )
    return Lab(endpoints, folder, backend=backend)


def _close_current() -> None:
    global _current
    with _current_lock:
        if _current is not None:
            _current.close()
            _current = None


def reset_lab() -> None:
    """Stop this process's lab; the next :func:`lab` call starts a fresh one."""
    _close_current()
