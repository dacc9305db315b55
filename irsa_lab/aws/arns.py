"""IAM and STS ARNs, and the IRSA trust-policy template, written once.

docs/reference/sts.md §2. An IAM OIDC provider is named by the issuer URL without its
scheme (``oidc.eks.<region>.amazonaws.com/id/<32 hex>``), and the same text prefixes
the condition keys of a trust policy (``<host_path>:sub``, ``<host_path>:aud``). A role
session's ARN lives in the ``sts`` namespace under ``assumed-role``, whatever the
role's path.
"""

from __future__ import annotations

from typing import Any

from ..constants import DEFAULT_AUDIENCE, NAMESPACE, SERVICE_ACCOUNT

__all__ = [
    "WEB_IDENTITY_ACTION",
    "arn_account",
    "arn_partition",
    "assumed_role_arn",
    "assumed_role_name",
    "ec2_trust_policy",
    "issuer_host_path",
    "irsa_trust_policy",
    "oidc_provider_arn",
    "oidc_provider_host_path",
    "role_arn",
    "user_arn",
]

WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"


def issuer_host_path(issuer: str) -> str:
    """The issuer URL as IAM stores it and trust-policy keys prefix it: no ``https://``."""
    return issuer.removeprefix("https://")


def oidc_provider_arn(account_id: str, issuer: str, *, partition: str = "aws") -> str:
    """``arn:aws:iam::<account>:oidc-provider/<host_path>``; ``issuer`` with or without scheme."""
    return f"arn:{partition}:iam::{account_id}:oidc-provider/{issuer_host_path(issuer)}"


def oidc_provider_host_path(provider_arn: str) -> str:
    """The provider URL an OIDC provider ARN names (what follows ``oidc-provider/``).

    A text that is not such an ARN is returned whole, so that a bare host path passes.
    """
    return provider_arn.split(":oidc-provider/", 1)[-1]


def role_arn(account_id: str, name: str, *, path: str = "/", partition: str = "aws") -> str:
    """``arn:aws:iam::<account>:role<path><name>``, the path kept as IAM keeps it."""
    return f"arn:{partition}:iam::{account_id}:role{path}{name}"


def user_arn(account_id: str, name: str, *, path: str = "/", partition: str = "aws") -> str:
    """``arn:aws:iam::<account>:user<path><name>``: an IAM user, such as the administrator."""
    return f"arn:{partition}:iam::{account_id}:user{path}{name}"


def assumed_role_arn(
    account_id: str, role_name: str, session_name: str, *, partition: str = "aws"
) -> str:
    """A role session: ``arn:aws:sts::<account>:assumed-role/<role>/<session>``, no path."""
    return f"arn:{partition}:sts::{account_id}:assumed-role/{role_name}/{session_name}"


def assumed_role_name(arn: str) -> str | None:
    """The role of a role session's ARN (``assumed-role/<role>/<session>``); None otherwise."""
    parts = arn.split(":", 5)[-1].split("/")
    return parts[1] if parts[0] == "assumed-role" and len(parts) > 1 else None


def _field(arn: str, index: int, default: str) -> str:
    parts = arn.split(":")
    return parts[index] if len(parts) > 5 and parts[index] else default


def arn_partition(arn: str, default: str = "aws") -> str:
    """The partition of an ARN (``aws``, ``aws-cn`` ...), or ``default`` if it has none."""
    return _field(arn, 1, default)


def arn_account(arn: str, default: str = "") -> str:
    """The account of an ARN, or ``default`` if it has none."""
    return _field(arn, 4, default)


def irsa_trust_policy(
    provider_arn: str,
    issuer: str,
    *,
    namespace: str = NAMESPACE,
    service_account: str = SERVICE_ACCOUNT,
    audience: str = DEFAULT_AUDIENCE,
    operator: str = "StringEquals",
    key_prefix: str | None = None,
) -> dict[str, Any]:
    """The trust policy EKS documents for IRSA: the provider, the SA's ``sub``, the ``aud``.

    ``key_prefix`` replaces the issuer's host path in the condition keys (a lab that
    misspells them uses it); ``operator`` replaces ``StringEquals``.
    """
    prefix = issuer_host_path(issuer) if key_prefix is None else key_prefix
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider_arn},
                "Action": WEB_IDENTITY_ACTION,
                "Condition": {
                    operator: {
                        f"{prefix}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                        f"{prefix}:aud": audience,
                    }
                },
            }
        ],
    }


def ec2_trust_policy() -> dict[str, Any]:
    """The trust policy of an EC2 instance role (what eksctl gives a node group)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
