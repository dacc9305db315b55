"""The trust-policy playground's presets: the IRSA trust policy and the classic mistakes.

docs/reference/sts.md §2.4. Each :class:`Preset` is a situation a learner meets on EKS
(a wrong namespace, a typo in the ServiceAccount, a wildcard under ``StringEquals``, an
audience the provider does not list, no OIDC provider, ``https://`` in the condition
keys): the trust policy, the token's fields, and what STS answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict, Unpack

from ..aws.arns import irsa_trust_policy, oidc_provider_arn
from ..aws.sts.errors import ACCESS_DENIED_MESSAGE
from ..constants import ACCOUNT_ID, DEFAULT_AUDIENCE, NAMESPACE, SERVICE_ACCOUNT

__all__ = [
    "PRESETS",
    "Preset",
    "Situation",
    "TrustPolicyOptions",
    "claims_for",
    "presets",
    "trust_policy_text",
]


class Situation(TypedDict, total=False):
    """Whose token it is: the pod's namespace and ServiceAccount, the token's audience
    (by default the article's, :mod:`irsa_lab.constants`)."""

    namespace: str
    service_account: str
    audience: str


class TrustPolicyOptions(Situation, total=False):
    """What a trust policy may change in the IRSA template: the keywords of
    :func:`irsa_lab.aws.arns.irsa_trust_policy`, with its defaults."""

    operator: str
    key_prefix: str | None


def trust_policy_text(
    issuer: str, *, account_id: str = ACCOUNT_ID, **options: Unpack[TrustPolicyOptions]
) -> str:
    """The IRSA trust policy as eksctl and the EKS docs write it, pretty-printed."""
    doc = irsa_trust_policy(oidc_provider_arn(account_id, issuer), issuer, **options)
    return json.dumps(doc, indent=2)


def claims_for(issuer: str, namespace: str, service_account: str, audience: str) -> dict[str, Any]:
    """The claims STS reads, as the API server issues them (``aud`` is a list)."""
    return {
        "iss": issuer,
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
        "aud": [audience],
    }


@dataclass(frozen=True)
class Preset:
    """A ready-made situation: the policy, the token fields, and what STS answers."""

    name: str
    description: str
    policy_text: str
    namespace: str
    service_account: str
    audience: str
    issuer: str
    provider_registered: bool = True
    expected_code: str | None = None
    expected_message: str = ""
    claims: dict[str, Any] = field(default_factory=dict)


PRESETS = (
    "correct",
    "wrong namespace",
    "ServiceAccount typo",
    "wildcard under StringEquals",
    "audience mismatch",
    "missing OIDC provider",
    "https:// in the condition key",
)


def presets(
    issuer: str, *, account_id: str = ACCOUNT_ID, **situation: Unpack[Situation]
) -> dict[str, Preset]:
    """Each classic misconfiguration (docs/reference/sts.md §2.4), keyed by :data:`PRESETS` names."""
    namespace = situation.get("namespace", NAMESPACE)
    service_account = situation.get("service_account", SERVICE_ACCOUNT)
    audience = situation.get("audience", DEFAULT_AUDIENCE)

    def policy(**change: Unpack[TrustPolicyOptions]) -> str:
        """The good trust policy with ``change`` applied: how each mistake is written."""
        options: TrustPolicyOptions = {**situation, **change}
        return trust_policy_text(issuer, account_id=account_id, **options)

    typo = service_account.replace("-", "", 1) if "-" in service_account else service_account + "s"
    correct = Preset(
        "correct",
        "The article's set-up: everything matches.",
        policy(),
        namespace,
        service_account,
        audience,
        issuer,
        expected_message="AssumeRoleWithWebIdentity succeeds",
        claims=claims_for(issuer, namespace, service_account, audience),
    )

    def mistake(
        name: str,
        description: str,
        code: str = "AccessDenied",
        message: str = ACCESS_DENIED_MESSAGE,
        **change: Any,
    ) -> Preset:
        """The correct set-up with ``change`` (:class:`Preset` fields), and STS's answer."""
        p = replace(
            correct,
            name=name,
            description=description,
            expected_code=code,
            expected_message=message,
            **change,
        )
        return replace(p, claims=claims_for(issuer, p.namespace, p.service_account, p.audience))

    found = (
        correct,
        mistake(
            "wrong namespace",
            "The pod runs in namespace 'dev', the policy trusts 'default'.",
            namespace="dev",
        ),
        mistake(
            "ServiceAccount typo",
            f"The policy names '{typo}' instead of '{service_account}'.",
            policy_text=policy(service_account=typo),
        ),
        mistake(
            "wildcard under StringEquals",
            "The policy trusts every ServiceAccount of the namespace with '*', "
            "but StringEquals compares literally (StringLike is needed).",
            policy_text=policy(service_account="*"),
        ),
        mistake(
            "audience mismatch",
            "The ServiceAccount's audience annotation gave the token the audience "
            "'sts.amazon.com', which the OIDC provider does not list.",
            "InvalidIdentityToken",
            "Incorrect token audience",
            audience="sts.amazon.com",
        ),
        mistake(
            "missing OIDC provider",
            "Nobody registered the cluster's issuer as an IAM OIDC provider.",
            "InvalidIdentityToken",
            f"No OpenIDConnect provider found in your account for {issuer}",
            provider_registered=False,
        ),
        mistake(
            "https:// in the condition key",
            "The condition keys start with https://, so the request has no such keys.",
            policy_text=policy(key_prefix=issuer),
        ),
    )
    return {p.name: p for p in found}
