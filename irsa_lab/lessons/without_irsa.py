"""Stage 5, without IRSA: the plumbing behind notebook 05.

A pod whose ServiceAccount names no role is not mutated, so botocore's credential
chain finds nothing until its last provider, ``iam-role``: the instance metadata
service (IMDS), which hands out the *node's* role. :func:`credential_chain` shows the
providers botocore tried (from the CLI's ``--debug`` log), :func:`compare_roles` what
the node role may do next to the pod role, and :func:`who_am_i` what a pod and the
node get once the instance's metadata options change (``http_tokens="required"``
with ``hop_limit=1``: the IMDSv2 token's answer dies one hop short of the pod).

Every command here runs with ``AWS_METADATA_SERVICE_TIMEOUT=1`` and
``AWS_METADATA_SERVICE_NUM_ATTEMPTS=1`` (:data:`FAST_IMDS_ENV`), so a blocked IMDS
costs about a second instead of botocore's longer default waits.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from ..aws.policy import RequestContext, evaluate
from ..constants import (
    BUCKET,
    NAMESPACE,
    NODE_ROLE_NAME,
    REGION,
    ROLE_NAME,
)
from ..ui.text import text_table
from .trust_policy import aws_cli

__all__ = [
    "FAST_IMDS_ENV",
    "PERMISSION_CHECKS",
    "POD_WITHOUT_ROLE",
    "Chain",
    "Hop",
    "Identity",
    "RoleComparison",
    "compare_roles",
    "credential_chain",
    "hop_figure",
    "hop_path",
    "hop_path_text",
    "imds_settings",
    "matrix_text",
    "mitigation_matrix",
    "mutation_facts",
    "role_policies",
    "who_am_i",
]

# Short IMDS timeouts (botocore reads these names), and the region a pod without the
# webhook's env vars would otherwise lack (the AWS CLI refuses to run without one).
FAST_IMDS_ENV = {
    "AWS_METADATA_SERVICE_TIMEOUT": "1",
    "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "1",
    "AWS_DEFAULT_REGION": REGION,
}

POD_WITHOUT_ROLE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "norole-pod", "namespace": NAMESPACE},
    "spec": {
        # No serviceAccountName: the pod gets the namespace's "default" ServiceAccount,
        # which carries no eks.amazonaws.com/role-arn annotation.
        "containers": [
            {"name": "app", "image": "amazon/aws-cli", "command": ["sleep", "infinity"]}
        ],
    },
}

_LOOKING = re.compile(r"Looking for credentials via: (\S+)")
_FOUND = re.compile(r"Found credentials (?:from|in|using) (.+)$")


def mutation_facts(pod: dict[str, Any]) -> str:
    """What the webhook would have added, and whether this pod has it."""
    spec = pod.get("spec", {})
    env = [e["name"] for c in spec.get("containers", []) for e in c.get("env") or []]
    aws_env = [n for n in env if n.startswith("AWS_")]
    volumes = [v["name"] for v in spec.get("volumes") or []]
    return "\n".join(
        [
            f"serviceAccountName: {spec.get('serviceAccountName')}",
            f"AWS_* env vars:     {', '.join(aws_env) or '(none)'}",
            f"aws-iam-token volume: {'yes' if 'aws-iam-token' in volumes else 'no'}",
        ]
    )


@dataclass(frozen=True)
class Identity:
    """Who a caller turned out to be (``arn``), or why it has no credentials (``error``)."""

    arn: str | None
    error: str

    @property
    def role(self) -> str | None:
        """The role name of an assumed-role ARN."""
        if self.arn is None or ":assumed-role/" not in self.arn:
            return None
        return self.arn.split(":assumed-role/", 1)[1].split("/", 1)[0]

    def text(self) -> str:
        return f"arn: {self.arn}" if self.arn else f"no credentials: {self.error}"


def _identity(returncode: int, stdout: str, stderr: str) -> Identity:
    if returncode == 0:
        return Identity(str(json.loads(stdout)["Arn"]), "")
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return Identity(None, lines[-1] if lines else f"exit code {returncode}")


def who_am_i(lab: Any, pod: str | None = None, *, namespace: str = NAMESPACE) -> Identity:
    """``aws sts get-caller-identity`` in ``pod``, or on the node itself when ``pod`` is
    None (a process on the host: no web identity, the IMDS as the node reaches it)."""
    argv = ["sts", "get-caller-identity"]
    if pod is None:
        done = aws_cli(lab, *argv, admin=False, extra_env=FAST_IMDS_ENV)
    else:
        done = lab.exec(pod, ["aws", *argv], namespace=namespace, extra_env=FAST_IMDS_ENV)
    return _identity(done.returncode, done.stdout, done.stderr)


@dataclass(frozen=True)
class Chain:
    """The credential providers botocore tried, in order, and where it found some."""

    tried: list[str]
    found: str | None
    identity: Identity

    def text(self) -> str:
        lines = [f"{i:>2}. {name}" for i, name in enumerate(self.tried, 1)]
        lines.append(f"found: {self.found or 'nothing'}")
        lines.append(self.identity.text())
        return "\n".join(lines)


def credential_chain(lab: Any, pod: str, *, namespace: str = NAMESPACE) -> Chain:
    """Run ``aws sts get-caller-identity --debug`` in ``pod`` and keep the provider names
    from botocore's "Looking for credentials via" log lines."""
    done = lab.exec(
        pod,
        ["aws", "sts", "get-caller-identity", "--debug"],
        namespace=namespace,
        extra_env=FAST_IMDS_ENV,
    )
    tried: list[str] = []
    found = None
    for line in done.stderr.splitlines():
        m = _LOOKING.search(line)
        if m:
            tried.append(m.group(1))
            continue
        f = _FOUND.search(line)
        if f and found is None:
            found = f.group(1).strip()
    return Chain(tried, found, _identity(done.returncode, done.stdout, done.stderr))


# --- what each role may do ------------------------------------------------------------

# (action, resource): what a pod could try with the credentials it got.
PERMISSION_CHECKS: tuple[tuple[str, str], ...] = (
    ("s3:ListAllMyBuckets", "*"),
    ("s3:GetObject", f"arn:aws:s3:::{BUCKET}/*"),
    ("s3:PutObject", f"arn:aws:s3:::{BUCKET}/*"),
    ("ecr:GetAuthorizationToken", "*"),
    ("ecr:BatchGetImage", "*"),
    ("ec2:DescribeInstances", "*"),
    ("ec2:CreateNetworkInterface", "*"),
    ("ec2:AssignPrivateIpAddresses", "*"),
    ("eks:DescribeCluster", "*"),
)


def role_policies(lab: Any, role_name: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, document) of every permission policy of a role, read through boto3."""
    iam = lab.aws_client("iam")
    out: list[tuple[str, dict[str, Any]]] = []
    for att in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
        arn = att["PolicyArn"]
        version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        doc = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
        out.append((str(att["PolicyName"]), dict(doc["Document"])))
    for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        doc = iam.get_role_policy(RoleName=role_name, PolicyName=name)["PolicyDocument"]
        out.append((str(name), dict(doc)))
    return out


@dataclass(frozen=True)
class RoleComparison:
    """The policies of both roles and the verdict of each check for each."""

    pod_role: str
    node_role: str
    pod_policies: list[str]
    node_policies: list[str]
    rows: list[tuple[str, str, bool, bool]]  # action, resource, pod allowed, node allowed

    def text(self) -> str:
        head = [
            f"pod role  {self.pod_role}: {', '.join(self.pod_policies)}",
            f"node role {self.node_role}: {', '.join(self.node_policies)}",
            "",
        ]
        table = text_table(
            ("action", "resource", "pod role", "node role"),
            [
                (a, r, "allowed" if p else "denied", "allowed" if n else "denied")
                for a, r, p, n in self.rows
            ],
        )
        return "\n".join(head) + table

    def node_only(self) -> list[str]:
        """Actions the node role allows and the pod role does not."""
        return [a for a, _r, p, n in self.rows if n and not p]


def compare_roles(
    lab: Any,
    *,
    pod_role: str = ROLE_NAME,
    node_role: str = NODE_ROLE_NAME,
    checks: Sequence[tuple[str, str]] = PERMISSION_CHECKS,
) -> RoleComparison:
    """Evaluate each (action, resource) against both roles' policies as IAM holds them."""
    pod_docs = role_policies(lab, pod_role)
    node_docs = role_policies(lab, node_role)
    rows = []
    for action, resource in checks:
        ctx = RequestContext(action=action, resource=resource)
        rows.append(
            (
                action,
                resource,
                evaluate(pod_docs, ctx, kind="identity").allowed,
                evaluate(node_docs, ctx, kind="identity").allowed,
            )
        )
    return RoleComparison(
        pod_role, node_role, [n for n, _ in pod_docs], [n for n, _ in node_docs], rows
    )


# --- the instance's metadata options --------------------------------------------------


@contextmanager
def imds_settings(lab: Any, *, http_tokens: str, hop_limit: int) -> Iterator[Any]:
    """Set the instance's metadata options for a ``with`` block, then restore them
    (``aws ec2 modify-instance-metadata-options`` on AWS)."""
    control = lab.control
    before = control.metadata_options()
    after = control.modify_metadata_options(http_tokens=http_tokens, hop_limit=hop_limit)
    try:
        yield after
    finally:
        control.modify_metadata_options(
            http_tokens=before["HttpTokens"], hop_limit=before["HttpPutResponseHopLimit"]
        )


def mitigation_matrix(lab: Any, pod: str) -> list[tuple[str, int, Identity]]:
    """Who the pod is under each combination of the two metadata options (the
    settings in force before are restored afterwards)."""
    rows = []
    for tokens in ("optional", "required"):
        for hops in (2, 1):
            with imds_settings(lab, http_tokens=tokens, hop_limit=hops):
                rows.append((tokens, hops, who_am_i(lab, pod)))
    return rows


def matrix_text(rows: Sequence[tuple[str, int, Identity]]) -> str:
    """The matrix as a plain-text table."""
    return text_table(
        ("http_tokens", "hop_limit", "the pod gets"),
        [(t, h, i.role or "no credentials") for t, h, i in rows],
    )


# --- the path, drawn -------------------------------------------------------------------


@dataclass(frozen=True)
class Hop:
    """One stretch of the IMDSv2 token response's way back to the caller."""

    where: str
    ttl: int
    arrives: bool


# The way back from the metadata service to a process in a pod.
_PATH = (
    "IMDS 169.254.169.254",
    "node eth0 (the instance)",
    "bridge / veth (pod network)",
    "container in the pod",
)


def hop_path(hop_limit: int) -> list[Hop]:
    """The token response's IP TTL at each point of the way back; it is dropped when a
    router (the node, forwarding into the pod's network) would have to send it on with
    TTL 0."""
    hops = [Hop(_PATH[0], hop_limit, True), Hop(_PATH[1], hop_limit, hop_limit >= 1)]
    forwarded = hop_limit - 1
    hops.append(Hop(_PATH[2], forwarded, forwarded >= 1))
    hops.append(Hop(_PATH[3], forwarded, forwarded >= 1))
    return hops


def hop_path_text(hop_limit: int, http_tokens: str = "required") -> str:
    """The figure's text alternative."""
    lines = [f"IMDSv2 token response, hop limit {hop_limit} (http_tokens={http_tokens}):"]
    for h in hop_path(hop_limit):
        state = "reached" if h.arrives else "never reached: TTL ran out at the node's forward"
        lines.append(f"  {h.where:<28} TTL {max(h.ttl, 0)}  {state}")
    pod_ok = hop_path(hop_limit)[-1].arrives
    lines.append(
        "  => a process on the node gets a session token; "
        + ("so does the pod" if pod_ok else "the pod never does")
    )
    if not pod_ok and http_tokens != "required":
        lines.append("  => but IMDSv1 is still allowed: the pod asks without a token and succeeds")
    return "\n".join(lines)


def hop_figure(hop_limit: int, http_tokens: str = "required") -> Figure:
    """Pod, bridge, node and metadata service in a row, with the TTL of the token
    response on each stretch; the stretch where it dies is red and crossed."""
    hops = hop_path(hop_limit)
    fig = Figure(figsize=(9.0, 2.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    order = list(reversed(hops))  # draw left to right: container ... IMDS
    for i, h in enumerate(order):
        ax.text(
            i * 3.0,
            0,
            h.where.replace(" (", "\n("),
            ha="center",
            va="center",
            fontsize=8,
            bbox={
                "boxstyle": "round,pad=0.5",
                "facecolor": "#eeeeee" if h.arrives else "#f8d0d0",
                "edgecolor": "#555555",
            },
        )
    for i in range(len(order) - 1, 0, -1):
        dst = order[i - 1]
        color = "#333333" if dst.arrives else "#d62728"
        ax.annotate(
            "",
            xy=(i * 3.0 - 2.1, 0),
            xytext=(i * 3.0 - 0.9, 0),
            arrowprops={"arrowstyle": "->", "color": color, "linewidth": 1.5},
        )
        ax.text(
            i * 3.0 - 1.5,
            0.3,
            f"TTL {max(order[i].ttl if i == len(order) - 1 else dst.ttl, 0)}",
            ha="center",
            fontsize=8,
            color=color,
        )
        if not dst.arrives and order[i].arrives:
            ax.plot([i * 3.0 - 1.5], [0], marker="X", markersize=13, color="#d62728")
    pod_ok = hops[-1].arrives
    ax.set_title(
        f"IMDSv2 token response, http_tokens={http_tokens}, hop_limit={hop_limit}: "
        + ("reaches the pod" if pod_ok else "dies before the pod"),
        fontsize=10,
        color="#333333" if pod_ok else "#d62728",
    )
    ax.set_xlim(-1.5, 3.0 * (len(order) - 1) + 1.5)
    ax.set_ylim(-0.8, 0.8)
    ax.set_axis_off()
    return fig
