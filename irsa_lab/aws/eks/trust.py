"""The IAM side of Pod Identity: the service principal's trust, the session tags, the session name.

One place for the rule both EKS stand-ins apply: ``CreatePodIdentityAssociation`` refuses a
role whose trust policy does not let ``pods.eks.amazonaws.com`` assume it and tag the
session, and ``AssumeRoleForPodIdentity`` evaluates the same policy again for each pod,
with the pod's tags (docs/reference/pod-identity.md §6.3, §6.4, §8.1). The evaluation is
the policy engine STS and the playground use (:func:`~irsa_lab.aws.policy.evaluate`).

What the request looks like to the trust policy (§6.1, §6.3): the caller is the service
principal ``pods.eks.amazonaws.com``; the actions are ``sts:AssumeRole`` and, when the
association passes tags, ``sts:TagSession``; the six session tags are request tags
(``aws:RequestTag/<key>``, ``aws:TagKeys``), all transitive (``sts:TransitiveTagKeys``);
``aws:SourceAccount`` is the cluster's account (one observed working policy conditions on
it, §6.3) and ``aws:SourceArn`` the association's ARN. Which global keys EKS Auth really
supplies is not documented (§8.10); the lab's choice is written in docs/fidelity.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import AwsError
from ..model import Role
from ..policy import Decision, RequestContext, evaluate
from ..policy.request import global_keys

__all__ = [
    "ASSUME_ROLE_ACTION",
    "POD_IDENTITY_AUDIENCE",
    "POD_IDENTITY_PRINCIPAL",
    "SESSION_TAG_KEYS",
    "TAG_SESSION_ACTION",
    "TrustVerdict",
    "abac_prefix_policy",
    "cluster_arn",
    "judge_trust",
    "pod_identity_trust_policy",
    "session_name",
    "session_tags",
]

POD_IDENTITY_PRINCIPAL = "pods.eks.amazonaws.com"
POD_IDENTITY_AUDIENCE = "pods.eks.amazonaws.com"  # the token's aud (§3.1)
ASSUME_ROLE_ACTION = "sts:AssumeRole"
TAG_SESSION_ACTION = "sts:TagSession"
# §6.1, in the order AWS lists them.
SESSION_TAG_KEYS = (
    "eks-cluster-arn",
    "eks-cluster-name",
    "kubernetes-namespace",
    "kubernetes-service-account",
    "kubernetes-pod-name",
    "kubernetes-pod-uid",
)


def cluster_arn(region: str, account_id: str, cluster: str) -> str:
    """``arn:aws:eks:<region>:<account>:cluster/<name>`` (§1.5)."""
    return f"arn:aws:eks:{region}:{account_id}:cluster/{cluster}"


def pod_identity_trust_policy(*, tag_session: bool = True) -> dict[str, Any]:
    """The trust policy the EKS User Guide gives for Pod Identity roles (§6.3).

    ``tag_session=False`` leaves out ``sts:TagSession``: the mistake of a lab, and what
    CDK's plain ``ServicePrincipal`` produces (§1.4).
    """
    actions = [ASSUME_ROLE_ACTION, TAG_SESSION_ACTION] if tag_session else [ASSUME_ROLE_ACTION]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
                "Effect": "Allow",
                "Principal": {"Service": POD_IDENTITY_PRINCIPAL},
                "Action": actions,
            }
        ],
    }


def abac_prefix_policy(bucket: str, tag: str = "kubernetes-namespace") -> dict[str, Any]:
    """A permission policy giving each session the S3 prefix named by one of its tags (§6.5).

    ``Version`` 2012-10-17 is what makes ``${aws:PrincipalTag/...}`` a variable; a session
    without the tag (an IRSA session) matches nothing.
    """
    variable = "${aws:PrincipalTag/" + tag + "}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ListOwnPrefix",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [f"{variable}/*"]}},
            },
            {
                "Sid": "ReadWriteOwnPrefix",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject"],
                "Resource": f"arn:aws:s3:::{bucket}/{variable}/*",
            },
        ],
    }


def session_tags(
    *,
    region: str,
    account_id: str,
    cluster: str,
    namespace: str,
    service_account: str,
    pod_name: str | None,
    pod_uid: str | None,
) -> dict[str, str]:
    """The six tags of §6.1 (the pod's two left out when not known, as at create time)."""
    tags = {
        "eks-cluster-arn": cluster_arn(region, account_id, cluster),
        "eks-cluster-name": cluster,
        "kubernetes-namespace": namespace,
        "kubernetes-service-account": service_account,
    }
    if pod_name is not None:
        tags["kubernetes-pod-name"] = pod_name
    if pod_uid is not None:
        tags["kubernetes-pod-uid"] = pod_uid
    return tags


_NOT_IN_NAME = re.compile(r"[^\w+=,.@-]", re.ASCII)


def session_name(cluster: str, pod: str, uuid: str) -> str:
    """``eks-<cluster>-<pod>-<uuid>`` (§6.2), at most 64 characters with the UUID whole.

    [I] AWS documents only the pattern. The one real name found keeps its UUID and has
    a 21-character middle, which fits cluster and pod names cut to 10 characters each;
    the lab cuts them so (longest result 62 characters, under STS's 64).
    """
    middle = f"{cluster[:10]}-{pod[:10]}"
    return _NOT_IN_NAME.sub("-", f"eks-{middle}-{uuid}")


@dataclass(frozen=True)
class TrustVerdict:
    """What the trust policy said: ``decision`` for ``action``; ``allowed`` when all passed."""

    action: str
    decision: Decision

    @property
    def allowed(self) -> bool:
        return self.decision.allowed

    def explain(self) -> str:
        return self.decision.explain()


def _context(
    tags: Mapping[str, str], *, account_id: str, source_arn: str | None, now: float, region: str
) -> RequestContext:
    keys: dict[str, Any] = {
        k: v
        for k, v in global_keys(
            now=now,
            region=region,
            principal_type="User",
            principal_arn=f"arn:aws:iam::{account_id}:root",
            userid=POD_IDENTITY_PRINCIPAL,
        ).items()
        if k in ("aws:CurrentTime", "aws:EpochTime", "aws:RequestedRegion", "aws:SecureTransport")
    }
    keys["aws:PrincipalIsAWSService"] = "true"
    keys["aws:PrincipalServiceName"] = POD_IDENTITY_PRINCIPAL
    keys["aws:SourceAccount"] = account_id
    if source_arn is not None:
        keys["aws:SourceArn"] = source_arn
    for key, value in tags.items():
        keys[f"aws:RequestTag/{key}"] = value
    if tags:
        keys["aws:TagKeys"] = list(tags)
        keys["sts:TransitiveTagKeys"] = list(tags)
    return RequestContext(
        action=ASSUME_ROLE_ACTION,
        resource=None,
        principal={"Service": [POD_IDENTITY_PRINCIPAL]},
        keys=keys,
    )


def judge_trust(
    role: Role,
    tags: Mapping[str, str],
    *,
    account_id: str,
    now: float,
    region: str,
    source_arn: str | None = None,
) -> TrustVerdict:
    """Whether ``role``'s trust policy lets Pod Identity assume it with ``tags``.

    ``sts:AssumeRole`` first, then ``sts:TagSession`` with the same request when there are
    tags (IAM User Guide, "Permissions required to add session tags"); the verdict is the
    first refusal, or the last allow. A trust policy that cannot be read is a refusal with
    the parser's message.
    """
    ctx = _context(tags, account_id=account_id, source_arn=source_arn, now=now, region=region)
    label = f"{role.name} trust policy"
    actions = [ASSUME_ROLE_ACTION] + ([TAG_SESSION_ACTION] if tags else [])
    verdict: TrustVerdict | None = None
    for action in actions:
        try:
            decision = evaluate([(label, role.trust_policy)], replace(ctx, action=action))
        except AwsError as bad:
            raise ValueError(
                f"the trust policy of {role.name} cannot be read: {bad.message}"
            ) from None
        verdict = TrustVerdict(action, decision)
        if not decision.allowed:
            return verdict
    assert verdict is not None
    return verdict
