"""The default scenario of the article, seeded into an :class:`Account`.

What a learner's account holds before stage 1: the cluster's IAM OIDC provider,
the IRSA role with S3 read-only access, the node role with the EKS worker-node
policies, the bucket ``aws-codebuild-output-test`` and the administrator's
long-term keys (the keys a learner holds on a real account).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from ..constants import (
    ADMIN_USER_NAME,
    BUCKET,
    BUCKET_CREATED,
    DEFAULT_AUDIENCE,
    EKS_OIDC_THUMBPRINT,
    NODE_ROLE_MANAGED_POLICY_ARNS,
    NODE_ROLE_NAME,
    ROLE_NAME,
    S3_READ_ONLY_POLICY_ARN,
)
from .arns import (
    ec2_trust_policy,
    irsa_trust_policy,
    issuer_host_path,
    oidc_provider_arn,
    role_arn,
    user_arn,
)
from .managed import install_managed_policies
from .model import Account, Credential, OidcProvider, Role

__all__ = ["SEED_OBJECTS", "DefaultScenario", "admin_credential", "seed_default"]


@dataclass(frozen=True)
class DefaultScenario:
    """What :func:`seed_default` created; ``admin`` goes into ``endpoints.json``."""

    admin: Credential
    provider_arn: str
    role_arn: str
    node_role_arn: str
    bucket: str


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


# Small objects so that `aws s3 ls s3://aws-codebuild-output-test` has something to list.
SEED_OBJECTS: dict[str, tuple[bytes, str, str]] = {
    "README.txt": (
        b"Build artifacts of the irsa-lab CodeBuild project.\n",
        "text/plain",
        "2024-03-27T13:48:03Z",
    ),
    "artifacts/build.log": (
        b"[Container] 2024/03/27 13:49:10 Phase complete: BUILD State: SUCCEEDED\n",
        "text/plain",
        "2024-03-27T13:49:12Z",
    ),
}


def admin_credential(account: Account) -> Credential | None:
    """The administrator's long-term keys, if the account was seeded."""
    with account.lock:
        for cred in account.credentials.values():
            if cred.kind == "user" and cred.source == "admin":
                return cred
    return None


def seed_default(account: Account, *, issuer: str) -> DefaultScenario:
    """Seed the article's scenario into ``account`` using its clock and ids.

    ``issuer`` is the cluster's EKS-shaped issuer URL
    (``https://oidc.eks.eu-west-1.amazonaws.com/id/<32 hex>``). Calling it twice
    keeps what exists and returns the same administrator keys.
    """
    now = account.clock.now()
    ids = account.ids
    install_managed_policies(account)
    host_path = issuer_host_path(issuer)
    acct = account.account_id
    provider_arn = oidc_provider_arn(acct, host_path)
    irsa_role_arn = role_arn(acct, ROLE_NAME)
    node_role_arn = role_arn(acct, NODE_ROLE_NAME)
    with account.lock:
        account.oidc_providers.setdefault(
            provider_arn,
            OidcProvider(
                url=host_path,
                arn=provider_arn,
                client_ids=[DEFAULT_AUDIENCE],
                thumbprints=[EKS_OIDC_THUMBPRINT],
                create_date=now,
            ),
        )
        if ROLE_NAME not in account.roles:
            account.roles[ROLE_NAME] = Role(
                name=ROLE_NAME,
                arn=irsa_role_arn,
                role_id=ids.aws_unique_id("AROA"),
                trust_policy=json.dumps(irsa_trust_policy(provider_arn, issuer), indent=2),
                create_date=now,
                description="S3 read-only access for pods using the s3-readonly-sa service account",
                attached_policies=[S3_READ_ONLY_POLICY_ARN],
            )
        if NODE_ROLE_NAME not in account.roles:
            account.roles[NODE_ROLE_NAME] = Role(
                name=NODE_ROLE_NAME,
                arn=node_role_arn,
                role_id=ids.aws_unique_id("AROA"),
                trust_policy=json.dumps(ec2_trust_policy(), indent=2),
                create_date=now,
                attached_policies=list(NODE_ROLE_MANAGED_POLICY_ARNS),
            )
        if BUCKET not in account.buckets:
            account.buckets[BUCKET] = {
                "created": _epoch(BUCKET_CREATED),
                "objects": {k: (data, _epoch(ts)) for k, (data, _, ts) in SEED_OBJECTS.items()},
                "content_types": {k: ct for k, (_, ct, _) in SEED_OBJECTS.items()},
            }
        admin = admin_credential(account)
        if admin is None:
            admin = Credential(
                access_key_id=ids.access_key_id("AKIA"),
                secret_access_key=ids.secret_token(40),
                kind="user",
                arn=user_arn(acct, ADMIN_USER_NAME),
                user_id=ids.aws_unique_id("AIDA"),
                source="admin",
            )
            account.credentials[admin.access_key_id] = admin
    return DefaultScenario(admin, provider_arn, irsa_role_arn, node_role_arn, BUCKET)
