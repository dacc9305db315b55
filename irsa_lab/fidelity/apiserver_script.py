"""The API server suite's script: the requests each lab is sent, in order.

Why: both labs must be asked the same questions in the same state (the article's pod
Running and bound before tokens are bound to it). :func:`observe` sends them and keys
every answer by a case name that says what was asked; a name's first word (or its
HTTP status) tells :func:`~.apiserver_compare.compare` how to compare it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .. import constants as C
from .apiserver_clients import Exchange, Side

__all__ = [
    "BIND_GRACE_S",
    "POD_MANIFEST",
    "PROBE_WEBHOOK_CONFIG",
    "SCHEDULE_TIMEOUT_S",
    "WARNING_PODS",
    "observe",
]

POD_MANIFEST = Path(__file__).resolve().parents[2] / "examples" / "mypod.yaml"
PROBE_WEBHOOK_CONFIG = "fidelity-probe"
SCHEDULE_TIMEOUT_S = 30.0
BIND_GRACE_S = 2.0


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if "annotations" in spec:
        meta["annotations"] = spec.pop("annotations")
    body: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


def _probe_webhook_configuration() -> dict[str, Any]:
    """A configuration both labs store alike, to compare the API server's defaulting.

    It matches no pod (an objectSelector label nobody sets) and fails open.
    """
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": PROBE_WEBHOOK_CONFIG},
        "webhooks": [
            {
                "name": "probe.fidelity.irsa-lab.example",
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"url": "https://127.0.0.1:9/never"},
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "objectSelector": {"matchLabels": {"irsa-lab.example/fidelity-probe": "never"}},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ],
            }
        ],
    }


# The pods whose creation should (or should not) make the server warn: dry runs.
WARNING_PODS: dict[str, dict[str, Any]] = {
    **{
        f"warning: nodeSelector {label}": _pod("warn", nodeSelector={label: "x"})
        for label in (
            "beta.kubernetes.io/os",
            "beta.kubernetes.io/arch",
            "failure-domain.beta.kubernetes.io/zone",
            "failure-domain.beta.kubernetes.io/region",
            "beta.kubernetes.io/instance-type",
        )
    },
    "warning: seccomp pod annotation": _pod(
        "warn", annotations={"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}
    ),
    "warning: seccomp container annotation": _pod(
        "warn", annotations={"container.seccomp.security.alpha.kubernetes.io/c": "runtime/default"}
    ),
    "warning: nodeSelector, pod and container annotations together": _pod(
        "warn",
        nodeSelector={"beta.kubernetes.io/os": "linux"},
        annotations={
            "seccomp.security.alpha.kubernetes.io/pod": "runtime/default",
            "container.seccomp.security.alpha.kubernetes.io/c": "runtime/default",
        },
    ),
    "warning: none for kubernetes.io/os": _pod("warn", nodeSelector={"kubernetes.io/os": "linux"}),
}


def _token_body(
    *, audiences: Sequence[str] | None = None, seconds: int | None = None, pod: Any = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if audiences is not None:
        spec["audiences"] = list(audiences)
    if seconds is not None:
        spec["expirationSeconds"] = seconds
    if pod is not None:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", **pod}
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def _wait_scheduled(side: Side, core: Any, name: str) -> dict[str, Any]:
    """The pod once it is Running (the kubelet stand-in wrote its tokens) and bound to
    the node, so both labs are read in the same state. A pod Running without a node
    is returned after :data:`BIND_GRACE_S`: the comparison reports the missing binding."""
    deadline = time.monotonic() + SCHEDULE_TIMEOUT_S
    running_since: float | None = None
    pod: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = side.call(core.read_namespaced_pod, name, C.NAMESPACE)
        pod = got.body if isinstance(got.body, dict) else {}
        if (pod.get("status") or {}).get("phase") == "Running":
            running_since = running_since or time.monotonic()
            bound = bool((pod.get("spec") or {}).get("nodeName"))
            if bound or time.monotonic() - running_since > BIND_GRACE_S:
                return pod
        time.sleep(0.1)
    raise RuntimeError(
        f"{side.label}: pod {name} was not Running within {SCHEDULE_TIMEOUT_S:.0f} s "
        f"(last seen: {json.dumps(pod)[:300]})"
    )


def observe(side: Side) -> dict[str, Exchange]:
    """Send ``side`` the suite's script; every answer, keyed by case name.

    The order matters (the pods exist before tokens are bound to them), and is the
    same for both labs.
    """
    from kubernetes import client

    core = client.CoreV1Api(side.api)
    admission = client.AdmissionregistrationV1Api(side.api)
    ns, sa = C.NAMESPACE, C.SERVICE_ACCOUNT
    seen: dict[str, Exchange] = {}
    manifest = yaml.safe_load(POD_MANIFEST.read_text())

    # The article's pod, through each lab's webhook; and a pod of another ServiceAccount.
    seen["pod create response"] = side.call(core.create_namespaced_pod, ns, manifest)
    side.call(core.create_namespaced_pod, ns, _pod("other"))
    pod = _wait_scheduled(side, core, manifest["metadata"]["name"])
    _wait_scheduled(side, core, "other")
    seen["pod as stored"] = side.call(core.read_namespaced_pod, C.POD_NAME, ns)
    ref = {"name": C.POD_NAME, "uid": pod["metadata"]["uid"]}

    def token(case: str, body: dict[str, Any], name: str = sa) -> None:
        seen[case] = side.call(core.create_namespaced_service_account_token, name, ns, body)

    token("TokenRequest sts 86400", _token_body(audiences=[C.DEFAULT_AUDIENCE], seconds=86400))
    token(
        "TokenRequest sts 86400 bound to the pod",
        _token_body(audiences=[C.DEFAULT_AUDIENCE], seconds=86400, pod=ref),
    )
    token("TokenRequest 3607 bound, API audiences (extended)", _token_body(seconds=3607, pod=ref))
    token("TokenRequest 3607 unbound (not extended)", _token_body(seconds=3607))
    token(
        "TokenRequest 3607 bound, sts audience (not extended)",
        _token_body(audiences=[C.DEFAULT_AUDIENCE], seconds=3607, pod=ref),
    )
    token("TokenRequest with an empty spec (defaults)", {"spec": {}})
    token("422 TokenRequest expirationSeconds 599", _token_body(seconds=599))
    token(
        "422 TokenRequest expirationSeconds 10",
        _token_body(audiences=[C.DEFAULT_AUDIENCE], seconds=10),
    )
    token("422 TokenRequest expirationSeconds 2^32+1", _token_body(seconds=2**32 + 1))
    token(
        "422 TokenRequest metadata.name mismatch",
        {"metadata": {"name": "someone-else"}, "spec": {}},
    )
    token("404 TokenRequest for a missing ServiceAccount", {"spec": {}}, name="nope")
    token("404 TokenRequest bound to a missing pod", _token_body(pod={"name": "ghost"}))
    token(
        "400 TokenRequest bound to a pod of another ServiceAccount",
        _token_body(pod={"name": "other"}),
    )
    token(
        "409 TokenRequest bound with a stale pod uid",
        _token_body(pod={"name": C.POD_NAME, "uid": "00000000-0000-4000-8000-000000000000"}),
    )

    seen["discovery document (API server path)"] = side.https("/.well-known/openid-configuration")
    seen["JWKS (API server path)"] = side.https("/openid/v1/jwks")
    issuer_host = str(side.endpoints["oidc"])
    discovery = side.https("/.well-known/openid-configuration", base=issuer_host)
    seen["discovery document (the issuer host STS fetches)"] = discovery
    jwks_uri = (
        str((discovery.body or {}).get("jwks_uri", "")) if isinstance(discovery.body, dict) else ""
    )
    # The document names the public issuer's URL; the lab serves it at its oidc address.
    jwks_path = jwks_uri.removeprefix(side.issuer) if jwks_uri.startswith(side.issuer) else ""
    if jwks_uri.startswith(str(side.endpoints["apiserver"])):
        jwks_path = jwks_uri.removeprefix(str(side.endpoints["apiserver"]))
    seen["JWKS (the issuer host STS fetches)"] = side.https(jwks_path, base=issuer_host)

    pods = f"/api/v1/namespaces/{ns}/pods"
    seen["401 bad bearer token"] = side.https(pods, {"Authorization": "Bearer nope"})
    seen["403 anonymous list pods"] = side.https(pods)
    seen["403 anonymous discovery"] = side.https("/api")
    seen["403 pod with a missing ServiceAccount"] = side.call(
        core.create_namespaced_pod, ns, _pod("nosa", serviceAccountName="nope")
    )
    seen["404 missing pod"] = side.call(core.read_namespaced_pod, "missing", ns)
    seen["404 missing ServiceAccount"] = side.call(
        core.read_namespaced_service_account, "missing", ns
    )
    seen["409 existing ServiceAccount"] = side.call(
        core.create_namespaced_service_account, ns, {"metadata": {"name": sa}}
    )
    seen["409 existing pod"] = side.call(core.create_namespaced_pod, ns, manifest)
    seen["422 pod without containers"] = side.call(
        core.create_namespaced_pod, ns, {"metadata": {"name": "bad"}, "spec": {"containers": []}}
    )
    seen["422 pod with a 300 s token projection"] = side.call(
        core.create_namespaced_pod,
        ns,
        _pod(
            "p300",
            volumes=[
                {
                    "name": "t",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"path": "token", "expirationSeconds": 300}}
                        ]
                    },
                }
            ],
        ),
    )
    seen["422 pod with an invalid name"] = side.call(
        core.create_namespaced_pod, ns, _pod("Bad_Name")
    )

    for case, body in WARNING_PODS.items():
        seen[case] = side.call(core.create_namespaced_pod, ns, body, dry_run="All")

    seen["ServiceAccount as stored"] = side.call(core.read_namespaced_service_account, sa, ns)
    seen["MutatingWebhookConfiguration create response (defaults)"] = side.call(
        admission.create_mutating_webhook_configuration, _probe_webhook_configuration()
    )
    seen["MutatingWebhookConfiguration as stored (defaults)"] = side.call(
        admission.read_mutating_webhook_configuration, PROBE_WEBHOOK_CONFIG
    )

    seen["kubectl describe sa s3-readonly-sa"] = side.run_kubectl("describe", "sa", sa)
    seen["kubectl describe mutatingwebhookconfiguration pod-identity-webhook"] = side.run_kubectl(
        "describe", "mutatingwebhookconfiguration", C.WEBHOOK_CONFIG_NAME
    )
    seen[f"kubectl describe mutatingwebhookconfiguration {PROBE_WEBHOOK_CONFIG}"] = (
        side.run_kubectl("describe", "mutatingwebhookconfiguration", PROBE_WEBHOOK_CONFIG)
    )
    seen["kubectl get pod mypod -o yaml"] = side.run_kubectl("get", "pod", C.POD_NAME, "-o", "yaml")
    seen["kubectl create token (protobuf request)"] = side.run_kubectl(
        "create", "token", sa, "--audience", C.DEFAULT_AUDIENCE
    )
    side.call(admission.delete_mutating_webhook_configuration, PROBE_WEBHOOK_CONFIG)
    seen.update(_typed_on_eks(side))
    return seen


def _last_line(ex: Exchange) -> Exchange:
    """Only the last line of kubectl's output: `rollout status` prints a waiting line for
    each state it happens to see on the way, which depends on timing."""
    lines = str(ex.body or "").strip().splitlines()
    return Exchange(ex.status, ex.headers, lines[-1] if lines else "", ex.raw)


def _typed_on_eks(side: Side) -> dict[str, Exchange]:
    """The kubectl commands of an IRSA walkthrough beyond the article (issue 16): protobuf
    creates, a Deployment rolled out and restarted, can-i, exec, events."""
    k = side.run_kubectl
    seen = {
        "kubectl create serviceaccount demo-sa (protobuf request)": k(
            "create", "serviceaccount", "demo-sa"
        ),
        "kubectl create namespace dev (protobuf request)": k("create", "namespace", "dev"),
        "kubectl create deployment web": k(
            "create", "deployment", "web", "--image=amazon/aws-cli", "--", "sleep", "infinity"
        ),
    }
    seen["kubectl rollout status deployment/web (last line)"] = _last_line(
        k("rollout", "status", "deployment/web", "--timeout=60s")
    )
    seen["kubectl rollout restart deployment/web"] = k("rollout", "restart", "deployment/web")
    seen["kubectl rollout status deployment/web after the restart (last line)"] = _last_line(
        k("rollout", "status", "deployment/web", "--timeout=60s")
    )
    seen["kubectl auth can-i create pods"] = k("auth", "can-i", "create", "pods")
    seen["kubectl exec mypod -- printenv (the webhook's variables)"] = k(
        "exec", C.POD_NAME, "--", "printenv", C.ENV_ROLE_ARN, C.ENV_WEB_IDENTITY_TOKEN_FILE
    )
    seen["kubectl exec mypod -- sh -c 'exit 3'"] = k("exec", C.POD_NAME, "--", "sh", "-c", "exit 3")
    seen["kubectl get events: the scheduler's Scheduled for mypod"] = k(
        "get",
        "events",
        "--field-selector",
        f"reason=Scheduled,involvedObject.name={C.POD_NAME}",
        "-o",
        "jsonpath={.items[0].source.component} {.items[0].message}",
    )
    k("delete", "deployment", "web", "--wait=false")
    k("delete", "namespace", "dev", "--wait=false")
    k("delete", "serviceaccount", "demo-sa")
    return seen
