"""Stage 6, IRSA or Pod Identity: the plumbing behind notebook 06.

EKS has two ways to give a pod an IAM role. IRSA (notebooks 01-05): the webhook puts
``AWS_ROLE_ARN`` and a token for ``sts.amazonaws.com`` into the pod, and the SDK calls
STS itself. EKS Pod Identity: an *association* in the EKS API names the role for a
namespace and ServiceAccount; the webhook puts ``AWS_CONTAINER_CREDENTIALS_FULL_URI``
and a token for ``pods.eks.amazonaws.com`` into the pod; the SDK asks the node's Pod
Identity agent, which asks EKS Auth, which assumes the role with six session tags.
Facts and sources: docs/reference/pod-identity.md (section numbers below are its).

:func:`set_up` builds the scenario through the real APIs as the account's
administrator (boto3's IAM, S3 and EKS clients, the ``kubernetes`` client), and is
safe to run again. The other functions read back what happened: the pods as stored,
the two tokens, the trace of each credential fetch, the two trust policies.
Everything printed is stable from run to run: ports, uids and session UUIDs are masked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from .. import constants as C
from ..aws.eks.trust import (
    SESSION_TAG_KEYS,
    abac_prefix_policy,
    pod_identity_trust_policy,
)
from ..jose import decode_unverified
from ..trace import TraceEvent
from ..ui.sequence import Step, sequence_figure
from ..ui.text import text_table
from . import sts_call

if TYPE_CHECKING:
    from ..session import Lab

__all__ = [
    "ABAC_POLICY_NAME",
    "BOTH_POD",
    "BOTH_WEB_IDENTITY_POD",
    "IRSA_POD",
    "OBJECTS",
    "PI_POD",
    "PI_ROLE_ARN",
    "PI_ROLE_NAME",
    "PI_SERVICE_ACCOUNT",
    "TEAM_NAMESPACE",
    "CredentialRun",
    "Identity",
    "Setup",
    "associate",
    "cli_associations",
    "both_ways",
    "credential_run",
    "delete_associations",
    "drop_association",
    "env_names",
    "identity",
    "irsa_run",
    "mutation_table",
    "pod_identity_figure",
    "pod_identity_manifest",
    "read_object",
    "sequences_side_by_side",
    "session_tags_text",
    "set_up",
    "token_claims",
    "tokens_side_by_side",
    "trust_comparison",
    "trust_policy_text",
    "web_identity_manifest",
    "wait_for_webhook",
]

PI_ROLE_NAME = "PodIdentityS3PrefixRole"
PI_ROLE_ARN = f"arn:aws:iam::{C.ACCOUNT_ID}:role/{PI_ROLE_NAME}"
ABAC_POLICY_NAME = "s3-own-namespace-prefix"
PI_SERVICE_ACCOUNT = "reports-sa"
TEAM_NAMESPACE = "analytics"  # a second namespace with the same ServiceAccount name
IRSA_POD = C.POD_NAME  # the article's pod, ServiceAccount s3-readonly-sa
PI_POD = "reports"  # the same pod, ServiceAccount reports-sa (default and analytics)
BOTH_POD = "both"  # ServiceAccount s3-readonly-sa once it also has an association
BOTH_WEB_IDENTITY_POD = "both-web-identity"  # the same, with AWS_ROLE_ARN set in the spec
# One object per namespace prefix (§6.5), in the article's bucket.
OBJECTS = {
    f"{C.NAMESPACE}/report.txt": b"the default namespace's report\n",
    f"{TEAM_NAMESPACE}/report.txt": b"the analytics namespace's report\n",
}

_ASSOCIATION_ID = re.compile(r"\ba-[0-9a-z]{17}\b")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_LOOPBACK_PORT = re.compile(r"http://127\.0\.0\.1:\d+")


def _mask(text: str) -> str:
    """Session UUIDs, pod uids, association ids and loopback ports change on every run."""
    text = _ASSOCIATION_ID.sub("a-<id>", _UUID.sub("<uuid>", text))
    return _LOOPBACK_PORT.sub("http://127.0.0.1:<port>", text)


# --- set-up, through the real APIs ----------------------------------------------------


def _eks(lab: Lab) -> Any:
    return lab.aws_client("eks")


def wait_for_webhook(lab: Lab) -> None:
    """Wait until the webhook has reloaded the associations (it acts at pod creation
    only, so a pod created before the reload would miss its change, §5.3)."""
    waiter = getattr(lab, "wait_for_pod_identity_config", None) or getattr(
        lab.control, "wait_for_pod_identity_config", None
    )
    if waiter is not None:
        waiter()


def delete_associations(
    lab: Lab, *, namespace: str | None = None, service_account: str | None = None
) -> list[str]:
    """Delete the cluster's associations for this namespace / ServiceAccount (all when
    both are None); returns ``namespace/sa`` of each one deleted."""
    eks = _eks(lab)
    query: dict[str, str] = {}
    if namespace is not None:
        query["namespace"] = namespace
    if service_account is not None:
        query["serviceAccount"] = service_account
    gone = []
    listed = eks.list_pod_identity_associations(clusterName=C.CLUSTER_NAME, **query)
    for summary in listed["associations"]:
        eks.delete_pod_identity_association(
            clusterName=C.CLUSTER_NAME, associationId=summary["associationId"]
        )
        gone.append(f"{summary['namespace']}/{summary['serviceAccount']}")
    return gone


def associate(
    lab: Lab, namespace: str, service_account: str, role_arn: str = PI_ROLE_ARN
) -> dict[str, Any]:
    """``aws eks create-pod-identity-association`` (replacing one that exists)."""
    delete_associations(lab, namespace=namespace, service_account=service_account)
    answer = _eks(lab).create_pod_identity_association(
        clusterName=C.CLUSTER_NAME,
        namespace=namespace,
        serviceAccount=service_account,
        roleArn=role_arn,
    )
    wait_for_webhook(lab)
    return dict(answer["association"])


def drop_association(lab: Lab, namespace: str, service_account: str) -> list[str]:
    """Delete the association of one ServiceAccount and wait for the webhook."""
    gone = delete_associations(lab, namespace=namespace, service_account=service_account)
    wait_for_webhook(lab)
    return gone


def _ensure_role(iam: Any) -> None:
    trust = json.dumps(pod_identity_trust_policy())
    try:
        iam.create_role(RoleName=PI_ROLE_NAME, AssumeRolePolicyDocument=trust)
    except iam.exceptions.EntityAlreadyExistsException:
        iam.update_assume_role_policy(RoleName=PI_ROLE_NAME, PolicyDocument=trust)
    iam.put_role_policy(
        RoleName=PI_ROLE_NAME,
        PolicyName=ABAC_POLICY_NAME,
        PolicyDocument=json.dumps(abac_prefix_policy(C.BUCKET)),
    )


def _ensure_namespace_and_sa(lab: Lab, namespace: str, name: str) -> None:
    from kubernetes.client.rest import ApiException

    for create in (
        lambda: lab.core.create_namespace({"metadata": {"name": namespace}}),
        lambda: lab.core.create_namespaced_service_account(
            namespace, {"metadata": {"name": name, "namespace": namespace}}
        ),
    ):
        try:
            create()
        except ApiException as err:
            if err.status != 409:  # already there
                raise


@dataclass(frozen=True)
class Setup:
    """What :func:`set_up` made, for printing."""

    role: str
    trust: dict[str, Any]
    permissions: dict[str, Any]
    objects: list[str]
    associations: list[tuple[str, str, str]]

    def text(self) -> str:
        stmt = self.trust["Statement"][0]
        lines = [
            f"IAM role {self.role}",
            f"  trusts {stmt['Principal']['Service']} for {', '.join(stmt['Action'])}",
            f"  inline policy {ABAC_POLICY_NAME}: s3:ListBucket, s3:GetObject, s3:PutObject "
            f"under {C.BUCKET}/${{aws:PrincipalTag/kubernetes-namespace}}/",
            f"S3 objects in {C.BUCKET}: {', '.join(self.objects)}",
            "EKS Pod Identity associations (cluster irsa-lab):",
        ]
        lines += [f"  {ns}/{sa} -> {role}" for ns, sa, role in self.associations]
        return "\n".join(lines)


def set_up(lab: Lab) -> Setup:
    """The Pod Identity side of the scenario, as an administrator would build it:
    the role (trust in the service principal, permissions by session tag), an object
    under each namespace's prefix, the ServiceAccount ``reports-sa`` in ``default``
    and ``analytics``, and an association for each. Safe to run again."""
    iam = lab.aws_client("iam")
    _ensure_role(iam)
    s3 = lab.aws_client("s3")
    for key, body in OBJECTS.items():
        s3.put_object(Bucket=C.BUCKET, Key=key, Body=body)
    # Left over from an earlier run of the notebook's "both" section.
    delete_associations(lab, namespace=C.NAMESPACE, service_account=C.SERVICE_ACCOUNT)
    made = []
    for ns in (C.NAMESPACE, TEAM_NAMESPACE):
        _ensure_namespace_and_sa(lab, ns, PI_SERVICE_ACCOUNT)
        delete_associations(lab, namespace=ns, service_account=PI_SERVICE_ACCOUNT)
        got = _eks(lab).create_pod_identity_association(
            clusterName=C.CLUSTER_NAME,
            namespace=ns,
            serviceAccount=PI_SERVICE_ACCOUNT,
            roleArn=PI_ROLE_ARN,
        )["association"]
        made.append((got["namespace"], got["serviceAccount"], got["roleArn"].split("/")[-1]))
    wait_for_webhook(lab)
    role = iam.get_role(RoleName=PI_ROLE_NAME)["Role"]
    permissions = iam.get_role_policy(RoleName=PI_ROLE_NAME, PolicyName=ABAC_POLICY_NAME)
    return Setup(
        role=PI_ROLE_NAME,
        trust=_document(role["AssumeRolePolicyDocument"]),
        permissions=_document(permissions["PolicyDocument"]),
        objects=sorted(OBJECTS),
        associations=made,
    )


def _document(doc: Any) -> dict[str, Any]:
    if isinstance(doc, str):  # botocore decodes IAM's URL-encoded JSON; be lenient
        from urllib.parse import unquote

        doc = json.loads(unquote(doc))
    return dict(doc)


def cli_associations(lab: Lab) -> str:
    """``aws eks list-pod-identity-associations --cluster-name irsa-lab``, run with the
    real AWS CLI against the lab as its administrator (what ``irsa-lab env`` sets up in a
    shell); association ids masked."""
    from .trust_policy import aws_cli

    argv = ["eks", "list-pod-identity-associations", "--cluster-name", C.CLUSTER_NAME]
    if not lab.endpoints.get("eks"):  # never let the CLI go looking for the real EKS
        return "this lab was started before it had the EKS API: restart it"
    done = aws_cli(lab, *argv, "--output", "json")
    if done.returncode != 0:
        return _mask(done.stderr.strip())
    rows = json.loads(done.stdout)["associations"]
    ordered = sorted(rows, key=lambda a: (a["namespace"], a["serviceAccount"]))
    return "$ aws " + " ".join(argv) + "\n" + _mask(json.dumps({"associations": ordered}, indent=4))


# --- the same pod, mutated both ways ----------------------------------------------------


def _article_pod(name: str, namespace: str, service_account: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "serviceAccountName": service_account,
            "containers": [
                {"name": C.POD_CONTAINER, "image": C.POD_IMAGE, "command": ["sleep", "infinity"]}
            ],
        },
    }


def pod_identity_manifest(
    namespace: str = C.NAMESPACE, name: str = PI_POD, service_account: str = PI_SERVICE_ACCOUNT
) -> dict[str, Any]:
    """The article's pod with only its name and ServiceAccount changed."""
    return _article_pod(name, namespace, service_account)


def web_identity_manifest(name: str = BOTH_WEB_IDENTITY_POD) -> dict[str, Any]:
    """The article's pod that sets the IRSA pair itself: ``AWS_ROLE_ARN`` and
    ``AWS_WEB_IDENTITY_TOKEN_FILE``, with its own projected token for STS (what the
    webhook would have added in IRSA mode)."""
    pod = _article_pod(name, C.NAMESPACE, C.SERVICE_ACCOUNT)
    container = pod["spec"]["containers"][0]
    container["env"] = [
        {"name": C.ENV_ROLE_ARN, "value": C.ROLE_ARN},
        {"name": C.ENV_WEB_IDENTITY_TOKEN_FILE, "value": C.TOKEN_FILE},
    ]
    container["volumeMounts"] = [
        {"name": C.TOKEN_VOLUME_NAME, "mountPath": C.TOKEN_MOUNT_PATH, "readOnly": True}
    ]
    pod["spec"]["volumes"] = [
        {
            "name": C.TOKEN_VOLUME_NAME,
            "projected": {
                "sources": [
                    {
                        "serviceAccountToken": {
                            "audience": C.DEFAULT_AUDIENCE,
                            "expirationSeconds": 86400,
                            "path": C.TOKEN_FILE_NAME,
                        }
                    }
                ]
            },
        }
    ]
    return pod


def both_ways(lab: Lab) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create the article's pod twice, recreated from scratch: ``mypod`` (ServiceAccount
    with the role-arn annotation: IRSA) and ``reports`` (ServiceAccount with an
    association: Pod Identity). Returns both as the API server stored them."""
    irsa = lab.recreate_pod(_article_pod(IRSA_POD, C.NAMESPACE, C.SERVICE_ACCOUNT))
    pi = lab.recreate_pod(pod_identity_manifest())
    return irsa, pi


def _token_volume(pod: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    for v in pod.get("spec", {}).get("volumes") or []:
        for src in (v.get("projected") or {}).get("sources") or []:
            if "serviceAccountToken" in src:
                return str(v["name"]), dict(src["serviceAccountToken"])
    return "", {}


def _expiration_text(seconds: Any) -> str:
    if isinstance(seconds, int) and 79200 <= seconds <= 86400:
        # The webhook turns its default 86400 into a random value in [79200, 86400] (§5.1).
        return "79200..86400 (86400, jittered)"
    return str(seconds) if seconds is not None else "-"


def _rows_of(pod: Mapping[str, Any]) -> dict[str, str]:
    spec = pod.get("spec", {})
    container = (spec.get("containers") or [{}])[0]
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or []}
    mounts = [m for m in container.get("volumeMounts") or [] if "kube-api-access" not in m["name"]]
    volume, token = _token_volume(pod)
    labels = pod.get("metadata", {}).get("labels") or {}
    rows = {
        "serviceAccountName": str(spec.get("serviceAccountName", "")),
        "label": ", ".join(f"{k}={v}" for k, v in labels.items()) or "-",
    }
    for name in (
        C.ENV_ROLE_ARN,
        C.ENV_WEB_IDENTITY_TOKEN_FILE,
        C.ENV_CONTAINER_CREDENTIALS_FULL_URI,
        C.ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE,
    ):
        rows[name] = _mask(env[name]) if name in env else "-"
    rows["volume"] = volume or "-"
    rows["  audience"] = str(token.get("audience", "-"))
    rows["  expirationSeconds"] = _expiration_text(token.get("expirationSeconds"))
    rows["mounted at"] = ", ".join(m["mountPath"] for m in mounts) or "-"
    return rows


def mutation_table(irsa: Mapping[str, Any], pi: Mapping[str, Any]) -> str:
    """What the webhook put into each pod, row by row (``-``: nothing)."""
    left, right = _rows_of(irsa), _rows_of(pi)
    return text_table(
        ["", f"IRSA ({irsa['metadata']['name']})", f"Pod Identity ({pi['metadata']['name']})"],
        [(k, left[k], right[k]) for k in left],
    )


# --- the two tokens -----------------------------------------------------------------


def _pod_token(lab: Lab, pod: str, namespace: str = C.NAMESPACE) -> str:
    stored = lab.wait_running(pod, namespace)  # its node has written the volumes
    volume, token = _token_volume(stored)
    return (lab.volume_path(stored, volume) / str(token["path"])).read_text()


def token_claims(lab: Lab, pod: str, namespace: str = C.NAMESPACE) -> dict[str, Any]:
    """The claims of the projected token the pod's SDK reads (not verified here:
    notebook 02 does that)."""
    _, claims = decode_unverified(_pod_token(lab, pod, namespace))
    return dict(claims)


def _claim_rows(claims: Mapping[str, Any]) -> dict[str, str]:
    k8s = claims.get("kubernetes.io") or {}
    lifetime = int(claims.get("exp", 0)) - int(claims.get("iat", 0))
    return {
        "iss": str(claims.get("iss")),
        "sub": str(claims.get("sub")),
        "aud": ", ".join(claims.get("aud") or []),
        "kubernetes.io namespace": str(k8s.get("namespace")),
        "kubernetes.io serviceaccount": str((k8s.get("serviceaccount") or {}).get("name")),
        "kubernetes.io pod": str((k8s.get("pod") or {}).get("name")),
        "exp - iat": _expiration_text(lifetime),
    }


def tokens_side_by_side(lab: Lab, irsa_pod: str = IRSA_POD, pi_pod: str = PI_POD) -> str:
    """The two tokens' claims, one row per claim."""
    left = _claim_rows(token_claims(lab, irsa_pod))
    right = _claim_rows(token_claims(lab, pi_pod))
    issuer = left["iss"]
    rows = []
    for key in left:
        a, b = left[key], right[key]
        if key == "iss" and a == b == issuer:
            a = b = "the cluster's issuer (same)"
        rows.append((key, a, b))
    return f"iss = {issuer}\n" + text_table(
        ["claim", f"IRSA token ({irsa_pod})", f"Pod Identity token ({pi_pod})"], rows
    )


# --- the two call sequences -------------------------------------------------------------


@dataclass(frozen=True)
class CredentialRun(sts_call.PodRun):
    """A command run in a Pod Identity pod, and the trace of it."""

    pod: str = PI_POD
    namespace: str = C.NAMESPACE

    @property
    def output(self) -> str:
        """What it printed, session digits and uuids masked."""
        return _mask(super().output)

    @property
    def arn(self) -> str:
        """The caller's ARN when the command was ``aws sts get-caller-identity``."""
        return _mask(str(json.loads(self.stdout)["Arn"])) if self.returncode == 0 else ""

    def story(self) -> str:
        """The credential fetch, step by step, from the recorded trace."""
        return pod_identity_story(self.events)

    def steps(self) -> list[str]:
        """One short line per hop (for the side-by-side view)."""
        return _pi_steps(self.events)


def credential_run(
    lab: Lab,
    pod: str = PI_POD,
    argv: Sequence[str] = ("aws", "sts", "get-caller-identity"),
    *,
    namespace: str = C.NAMESPACE,
    cold_keys: bool = True,
) -> CredentialRun:
    """Run ``argv`` in a Pod Identity pod and keep the trace of it. ``cold_keys`` first
    empties the cache of the issuer's keys, so EKS Auth is seen fetching them."""
    control = lab.control
    if cold_keys:
        control.forget_issuer_keys()
    mark = control.trace_mark()
    done = lab.exec(pod, list(argv), namespace=namespace)
    events = control.trace_since(mark)
    return CredentialRun(
        done.returncode, done.stdout, done.stderr, events, pod=pod, namespace=namespace
    )


def irsa_run(lab: Lab, pod: str = IRSA_POD) -> sts_call.Run:
    """``aws sts get-caller-identity`` in the IRSA pod, traced (notebook 04's run)."""
    return sts_call.recorded_run(lab, ["aws", "sts", "get-caller-identity"], pod=pod)


def _in_order(events: Sequence[TraceEvent]) -> list[TraceEvent]:
    return sorted(events, key=lambda e: (e.wall, e.seq))


def _agent_calls(events: Sequence[TraceEvent]) -> list[TraceEvent]:
    return [e for e in events if e.target == "pod-identity-agent"]


def _pi_hops(events: Sequence[TraceEvent]) -> list[tuple[str, str, str, str]]:
    """(from, to, what, fact) per hop. The agent records its call once it answered, so
    the request is drawn before the EKS Auth call it caused, and the reply after."""
    ordered = _in_order(events)
    hops: list[tuple[str, str, str, str]] = []
    for ev in ordered:
        if ev.source == "sdk" and ev.target == "token-file":
            hops.append(
                (
                    "pod",
                    "token file",
                    "read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    ev.detail.get("path", ""),
                )
            )
    previous = float("-inf")
    for agent in _agent_calls(ordered):
        hops.append(
            (
                "pod",
                "agent",
                "GET /v1/credentials",
                "Authorization: the token (no Bearer prefix); URL from AWS_CONTAINER_CREDENTIALS_FULL_URI",
            )
        )
        # What EKS Auth did for this request: recorded after the previous agent call.
        inside = [
            e
            for e in ordered
            if e.source in ("eks-auth", "pod-identity-agent")
            and e.target in ("oidc", "eks-auth")
            and e.recorder == ""
            and e.call != "JWKS keys"
            and previous < e.wall <= agent.wall
        ]
        previous = agent.wall
        fetches = [e for e in inside if e.target == "oidc"]
        for ev in (e for e in inside if e.target == "eks-auth"):
            hops.append(
                (
                    "agent",
                    "EKS Auth",
                    ev.call,
                    f"signed by {_role_of(ev.detail.get('caller', ''))} (the node's role)",
                )
            )
            # EKS Auth fetched the issuer's keys while it handled the call (its own
            # record comes once it answered).
            for fetch in fetches:
                hops.append(
                    ("EKS Auth", "issuer", fetch.call, f"HTTP {fetch.detail.get('status')}")
                )
            fetches = []
            if ev.ok:
                hops.append(
                    (
                        "EKS Auth",
                        "agent",
                        "credentials",
                        f"association for {ev.detail.get('subject')}, session "
                        f"{_mask(str(ev.detail.get('arn', '')))}",
                    )
                )
            else:
                message = f"{ev.outcome}: {ev.detail.get('message', '')}"
                hops.append(("EKS Auth", "agent", "error", _mask(message)))
        cache = agent.detail.get("cache")
        if agent.ok:
            fact = f"cache {cache}" + (": EKS Auth not asked" if cache == "hit" else "")
            hops.append(("agent", "pod", "credentials (JSON)", fact))
        else:
            hops.append(
                (
                    "agent",
                    "pod",
                    f"HTTP {agent.outcome}",
                    _mask(str(agent.detail.get("message", ""))),
                )
            )
    for ev in ordered:
        if ev.source == "sdk" and ev.target in ("sts", "s3", "iam"):
            hops.append(("pod", ev.target.upper(), ev.call, "signed with the role's keys"))
    return hops


def _role_of(arn: str) -> str:
    return arn.split(":assumed-role/", 1)[-1].split("/", 1)[0] if ":assumed-role/" in arn else arn


def pod_identity_story(events: Sequence[TraceEvent]) -> str:
    """Numbered hops of a Pod Identity credential fetch, with the recorded facts."""
    lines = []
    for n, (src, dst, what, fact) in enumerate(_pi_hops(events), 1):
        lines.append(f"{n:>2}. {src} -> {dst}: {what}")
        if fact:
            lines.append(f"    {fact}")
    return "\n".join(lines)


# The lanes of the Pod Identity diagram, left to right, and the hop names they stand for.
PI_LANES = ("pod/SDK", "token file", "Pod Identity agent", "EKS Auth", "OIDC issuer", "STS")
_LANE = {
    "pod": "pod/SDK",
    "token file": "token file",
    "agent": "Pod Identity agent",
    "EKS Auth": "EKS Auth",
    "issuer": "OIDC issuer",
    "STS": "STS",
}


def pod_identity_figure(run: CredentialRun) -> Figure:
    """The recorded Pod Identity fetch as a sequence diagram (notebook 04's drawing)."""
    steps = []
    for src, dst, what, _ in _pi_hops(run.events):
        failed = what.startswith("HTTP ") or what == "error"
        steps.append(
            Step(
                _LANE.get(src, src),
                _LANE.get(dst, dst),
                what,
                ok=not failed,
                outcome=what if failed else "ok",
            )
        )
    return sequence_figure(steps, title="AssumeRoleForPodIdentity", lanes=PI_LANES)


def _pi_steps(events: Sequence[TraceEvent]) -> list[str]:
    return [f"{src} -> {dst}: {what}" for src, dst, what, _ in _pi_hops(events)]


def _irsa_steps(run: sts_call.Run) -> list[str]:
    steps: list[str] = []
    for step in run.steps:
        if step.source == "kubelet" or step.target == "kubelet":
            continue  # the kubelet wrote both tokens the same way (notebook 02)
        if step.label.endswith(" reply") and step.label.startswith("GET "):
            continue  # the discovery and JWKS answers: one line per fetch is enough
        line = f"{step.source} -> {step.target}: {step.label}"
        if steps and steps[-1] == line:
            continue  # botocore opens the token file twice in a row; once is the story
        steps.append(line)
    return steps


def sequences_side_by_side(irsa: sts_call.Run, pi: CredentialRun) -> str:
    """The two credential fetches, hop by hop, in two columns."""
    left, right = _irsa_steps(irsa), pi.steps()
    rows = [
        (str(i), left[i - 1] if i <= len(left) else "", right[i - 1] if i <= len(right) else "")
        for i in range(1, max(len(left), len(right)) + 1)
    ]
    return text_table(["#", "IRSA", "Pod Identity"], rows)


# --- session tags and ABAC -----------------------------------------------------------


def session_tags_text(run: CredentialRun) -> str:
    """The session tags EKS Auth put on the role session (from the trace), pod uid masked."""
    tags: dict[str, Any] = {}
    for ev in run.events:
        if ev.target == "eks-auth" and ev.detail.get("session_tags"):
            tags = dict(ev.detail["session_tags"])
    if not tags:
        return "no session tags recorded (no EKS Auth call in this run: the agent's cache?)"
    ordered = [k for k in SESSION_TAG_KEYS if k in tags] + sorted(set(tags) - set(SESSION_TAG_KEYS))
    return text_table(["session tag", "value"], [(k, _mask(str(tags[k]))) for k in ordered])


def read_object(lab: Lab, pod: str, key: str, *, namespace: str = C.NAMESPACE) -> str:
    """``aws s3api get-object`` in the pod; the object's text, or the error the CLI printed."""
    argv = ["aws", "s3api", "get-object", "--bucket", C.BUCKET, "--key", key, "/dev/stdout"]
    done = lab.exec(pod, argv, namespace=namespace)
    if done.returncode == 0:
        # The CLI prints the object, then the response's JSON; keep the object.
        body = done.stdout.split("{", 1)[0].strip()
        return f"{namespace}/{pod} reads {key}: {body!r}"
    last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return f"{namespace}/{pod} reads {key}: {_mask(last.strip())}"


# --- who the pod is ------------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """``aws sts get-caller-identity`` in a pod: its ARN (masked), or the error."""

    arn: str
    error: str

    def text(self) -> str:
        return self.arn or self.error


def identity(lab: Lab, pod: str, *, namespace: str = C.NAMESPACE) -> Identity:
    done = lab.exec(pod, ["aws", "sts", "get-caller-identity"], namespace=namespace)
    if done.returncode == 0:
        return Identity(_mask(sts_call.mask_session(str(json.loads(done.stdout)["Arn"]))), "")
    last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return Identity("", _mask(last.strip()))


def env_names(pod: Mapping[str, Any]) -> list[str]:
    """The AWS_ variables of the pod's first container, as stored."""
    container = (pod.get("spec", {}).get("containers") or [{}])[0]
    return [e["name"] for e in container.get("env") or [] if e["name"].startswith("AWS_")]


# --- the two trust policies ----------------------------------------------------------


def _trust(lab: Lab, role: str) -> dict[str, Any]:
    return _document(
        lab.aws_client("iam").get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    )


def trust_policy_text(lab: Lab, role: str) -> str:
    """A role's trust policy as IAM returns it (``aws iam get-role``), indented."""
    return json.dumps(_trust(lab, role), indent=2)


def trust_comparison(lab: Lab) -> str:
    """What each trust policy names, read from the two documents."""
    irsa = _trust(lab, C.ROLE_NAME)["Statement"][0]
    pi = _trust(lab, PI_ROLE_NAME)["Statement"][0]
    issuer = str(lab.endpoints["issuer"]).removeprefix("https://")

    def short(text: str) -> str:
        return text.replace(issuer, "<issuer>")

    def conditions(stmt: Mapping[str, Any]) -> str:
        keys = sorted(key for op in (stmt.get("Condition") or {}).values() for key in op)
        return ", ".join(short(k) for k in keys) or "-"

    def actions(stmt: Mapping[str, Any]) -> str:
        act = stmt["Action"]
        return ", ".join(act) if isinstance(act, list) else str(act)

    rows = [
        ("Principal", short(json.dumps(irsa["Principal"])), json.dumps(pi["Principal"])),
        ("Action", actions(irsa), actions(pi)),
        ("Condition keys", conditions(irsa), conditions(pi)),
        (
            "names the cluster",
            "yes: its OIDC provider (one per cluster)",
            "no: any cluster of the account, via its associations",
        ),
        (
            "names the ServiceAccount",
            "yes: the sub condition",
            "no: the association does (EKS API)",
        ),
        (
            "a new cluster needs",
            "an IAM OIDC provider + a trust statement",
            "an association (the role is unchanged)",
        ),
    ]
    return text_table(["", "IRSA", "Pod Identity"], rows)
