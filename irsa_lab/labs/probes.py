"""What a check looks at: the real outcome, through the real clients.

``whoami`` runs ``aws sts get-caller-identity`` inside the pod (``lab.exec``), exactly
what a learner would type in ``kubectl exec``; ``pod_facts`` reads the stored pod with
the ``kubernetes`` client; ``trust_allows`` asks the policy evaluator whether the role's
trust policy (read back through boto3's IAM client) would let another identity in.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import constants as C
from ..aws.arns import assumed_role_name, oidc_provider_arn
from ..aws.policy import evaluate, oidc_trust_context
from ..aws.sts.errors import StsError, failure_from_wire

if TYPE_CHECKING:
    from ..session import Lab

__all__ = [
    "Identity",
    "PodFacts",
    "PodMissing",
    "associations",
    "ec2",
    "eks",
    "iam",
    "modify_instance_metadata_options",
    "pod_facts",
    "provider_arn",
    "service_account_annotations",
    "trust_allows",
    "trust_policy",
    "whoami",
]

_AWS_ERROR = re.compile(
    r"An error occurred \((?P<code>[\w.]+)\) when calling the (?P<op>\w+) operation: (?P<msg>.*)"
)
# botocore's container provider gave up on the Pod Identity agent, which passed on EKS
# Auth's error as ``[<request id>]: (<code>): <message>, fault: client``
# (docs/reference/pod-identity.md §4.3, §4.7).
_AGENT_ERROR = re.compile(
    r"Error when retrieving credentials from container-role: .*?"
    r"\((?P<code>\w+)\): (?P<msg>.*?), fault: (?:client|server)"
)


@dataclass(frozen=True)
class Identity:
    """Who the SDK in a pod turned out to be, or why it could not be anybody.

    ``role`` is the role name of an assumed-role ARN (the session name, which holds
    random digits, is left out); ``error`` is AWS's error code, or ``NoCredentials``;
    :attr:`failure` is the STS exception class that answer stands for.
    """

    role: str | None = None
    account: str | None = None
    error: str | None = None
    operation: str | None = None
    message: str = ""

    @property
    def failure(self) -> type[StsError] | None:
        """The class of STS's refusal (``NoOpenIDConnectProvider``, ``InvalidAudience``...),
        for a check to branch on; None when STS did not refuse."""
        if self.error is None or self.operation != "AssumeRoleWithWebIdentity":
            return None
        return failure_from_wire(self.error, self.message)

    @property
    def summary(self) -> str:
        if self.role:
            return f"runs as the role {self.role}"
        if self.error == "NoCredentials":
            return "finds no credentials at all"
        if self.error:
            return f"gets {self.error} from {self.operation or 'AWS'}: {self.message}"
        return "did not answer: " + self.message


class PodMissing(LookupError):
    """Raised when the pod a check looks at does not exist."""


def whoami(lab: Lab, pod: str = C.POD_NAME, namespace: str = C.NAMESPACE) -> Identity:
    """Run ``aws sts get-caller-identity`` in the pod and say who it is."""
    from ..in_pod import PodNotFound

    argv = ["aws", "sts", "get-caller-identity", "--output", "json", "--region", C.REGION]
    try:
        done = lab.exec(pod, argv, namespace=namespace, timeout=60)
    except PodNotFound as err:
        raise PodMissing(str(err)) from err
    if done.returncode == 0:
        data = json.loads(done.stdout)
        arn = str(data.get("Arn", ""))
        session_role = assumed_role_name(arn)
        role = arn if session_role is None else session_role
        return Identity(role=role, account=str(data.get("Account")))
    err_text = done.stderr.strip()
    found = _AWS_ERROR.search(err_text)
    if found:
        return Identity(error=found["code"], operation=found["op"], message=found["msg"].strip())
    from_agent = _AGENT_ERROR.search(err_text)
    if from_agent:
        return Identity(
            error=from_agent["code"],
            operation="AssumeRoleForPodIdentity",
            message=from_agent["msg"].strip(),
        )
    if "Unable to locate credentials" in err_text:
        return Identity(error="NoCredentials", message="Unable to locate credentials")
    last = err_text.splitlines()[-1] if err_text else f"exit code {done.returncode}"
    return Identity(error="Error", message=last)


@dataclass(frozen=True)
class PodFacts:
    """What the stored pod says about its first container's IRSA wiring."""

    exists: bool
    env: dict[str, str]
    has_token_mount: bool
    has_token_volume: bool
    labels: dict[str, str]
    service_account: str

    @property
    def mutated(self) -> bool:
        return C.ENV_WEB_IDENTITY_TOKEN_FILE in self.env and self.has_token_mount


def pod_facts(lab: Lab, pod: str = C.POD_NAME, namespace: str = C.NAMESPACE) -> PodFacts:
    """Read the pod as the API server stores it (``kubectl get pod -o yaml``)."""
    from kubernetes.client.rest import ApiException

    try:
        stored = lab.get_pod(pod, namespace)
    except ApiException as err:
        if err.status == 404:
            return PodFacts(False, {}, False, False, {}, "")
        raise
    spec = stored.get("spec", {})
    container = (spec.get("containers") or [{}])[0]
    env = {e["name"]: str(e.get("value", "")) for e in container.get("env") or []}
    mounts = {m.get("name") for m in container.get("volumeMounts") or []}
    volumes = {v.get("name") for v in spec.get("volumes") or []}
    return PodFacts(
        True,
        env,
        C.TOKEN_VOLUME_NAME in mounts,
        C.TOKEN_VOLUME_NAME in volumes,
        dict(stored.get("metadata", {}).get("labels") or {}),
        str(spec.get("serviceAccountName", "")),
    )


_IAM_CLIENTS: weakref.WeakKeyDictionary[Lab, Any] = weakref.WeakKeyDictionary()


def iam(lab: Lab) -> Any:
    """boto3's IAM client for the lab's administrator, made once per lab (it is slow to build)."""
    client = _IAM_CLIENTS.get(lab)
    if client is None:
        client = _IAM_CLIENTS[lab] = lab.aws_client("iam")
    return client


_EC2_CLIENTS: weakref.WeakKeyDictionary[Lab, Any] = weakref.WeakKeyDictionary()


def ec2(lab: Lab) -> Any:
    """boto3's EC2 client for the lab's administrator, made once per lab (EC2's model is
    large: about a second to load)."""
    client = _EC2_CLIENTS.get(lab)
    if client is None:
        client = _EC2_CLIENTS[lab] = lab.aws_client("ec2")
    return client


_EKS_CLIENTS: weakref.WeakKeyDictionary[Lab, Any] = weakref.WeakKeyDictionary()


def eks(lab: Lab) -> Any:
    """boto3's EKS client for the lab's administrator, made once per lab."""
    client = _EKS_CLIENTS.get(lab)
    if client is None:
        client = _EKS_CLIENTS[lab] = lab.aws_client("eks")
    return client


def associations(
    lab: Lab, namespace: str | None = None, service_account: str | None = None
) -> list[dict[str, Any]]:
    """The cluster's Pod Identity associations, described (``aws eks
    list-pod-identity-associations`` then ``describe-pod-identity-association``)."""
    query = {k: v for k, v in (("namespace", namespace), ("serviceAccount", service_account)) if v}
    client = eks(lab)
    listed = client.list_pod_identity_associations(clusterName=C.CLUSTER_NAME, **query)
    return [
        dict(
            client.describe_pod_identity_association(
                clusterName=C.CLUSTER_NAME, associationId=a["associationId"]
            )["association"]
        )
        for a in listed["associations"]
    ]


def provider_arn(lab: Lab) -> str:
    """The ARN of the cluster's IAM OIDC provider (whether or not it exists now)."""
    return oidc_provider_arn(str(lab.endpoints["account_id"]), str(lab.endpoints["issuer"]))


def trust_policy(lab: Lab, role: str = C.ROLE_NAME) -> dict[str, Any]:
    """The role's trust policy, read back with boto3 (``aws iam get-role``)."""
    doc = iam(lab).get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"]
    if isinstance(doc, str):  # botocore decodes the URL-encoded JSON; be lenient
        from urllib.parse import unquote

        doc = json.loads(unquote(doc))
    return dict(doc)


def trust_allows(lab: Lab, sub: str, aud: str = C.DEFAULT_AUDIENCE) -> bool:
    """Would the role's trust policy let a token with this ``sub`` and ``aud`` in?"""
    ctx = oidc_trust_context(provider_arn(lab), {"sub": sub, "aud": aud})
    return evaluate([("trust policy", trust_policy(lab))], ctx).allowed


def service_account_annotations(
    lab: Lab, name: str = C.SERVICE_ACCOUNT, namespace: str = C.NAMESPACE
) -> dict[str, str]:
    from kubernetes.client.rest import ApiException

    try:
        sa = lab.get_service_account(name, namespace)
    except ApiException as err:
        if err.status == 404:
            return {}
        raise
    return dict(sa.get("metadata", {}).get("annotations") or {})


def modify_instance_metadata_options(
    lab: Lab, *, http_tokens: str | None = None, http_put_response_hop_limit: int | None = None
) -> dict[str, Any]:
    """The node's metadata options, set through the lab's control (no AWS call).

    Learners use EC2's own API, ``lab.aws_client("ec2").modify_instance_metadata_options``
    (``aws ec2 modify-instance-metadata-options``); both change the same settings, the
    ones the IMDS stand-in enforces.

    ``http_tokens``: ``"optional"`` (IMDSv1 allowed) or ``"required"`` (IMDSv2 only);
    ``http_put_response_hop_limit``: 1 keeps IMDSv2 answers from reaching containers.
    Returns the node's options afterwards, named as EC2 names them.
    """
    return lab.control.modify_metadata_options(
        http_tokens=http_tokens, hop_limit=http_put_response_hop_limit
    )
