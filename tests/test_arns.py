"""ARNs and the IRSA trust-policy template, built and read back in one place."""

from __future__ import annotations

from irsa_lab.aws.arns import (
    arn_account,
    arn_partition,
    assumed_role_arn,
    assumed_role_name,
    irsa_trust_policy,
    issuer_host_path,
    oidc_provider_arn,
    oidc_provider_host_path,
    role_arn,
    user_arn,
)
from irsa_lab.aws.model import Account
from irsa_lab.aws.policy import evaluate, oidc_trust_context
from irsa_lab.constants import ACCOUNT_ID, ADMIN_USER_ARN, ADMIN_USER_NAME, ROLE_ARN, ROLE_NAME

HOST = "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
ISSUER = f"https://{HOST}"


def test_a_provider_arn_names_the_issuer_without_its_scheme_and_reads_back() -> None:
    arn = oidc_provider_arn(ACCOUNT_ID, ISSUER)
    assert arn == f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{HOST}"
    assert arn == oidc_provider_arn(ACCOUNT_ID, HOST)
    assert oidc_provider_host_path(arn) == issuer_host_path(ISSUER) == HOST
    assert (arn_account(arn), arn_partition(arn)) == (ACCOUNT_ID, "aws")


def test_role_and_user_arns_match_the_constants_of_the_default_account() -> None:
    assert role_arn(ACCOUNT_ID, ROLE_NAME) == ROLE_ARN
    assert user_arn(ACCOUNT_ID, ADMIN_USER_NAME) == ADMIN_USER_ARN
    assert role_arn(ACCOUNT_ID, "r", path="/team/") == f"arn:aws:iam::{ACCOUNT_ID}:role/team/r"


def test_the_role_of_a_session_arn_is_read_back_and_other_arns_have_none() -> None:
    session = assumed_role_arn(ACCOUNT_ID, ROLE_NAME, "botocore-session-1")
    assert session == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/botocore-session-1"
    assert assumed_role_name(session) == ROLE_NAME
    assert assumed_role_name(ROLE_ARN) is None
    assert assumed_role_name(ADMIN_USER_ARN) is None


def test_the_account_finds_roles_and_providers_by_the_arns_built_here() -> None:
    from irsa_lab.aws.scenario import seed_default

    account = Account()
    seeded = seed_default(account, issuer=ISSUER)
    assert seeded.provider_arn == oidc_provider_arn(account.account_id, ISSUER)
    provider = account.oidc_provider_for_issuer(ISSUER)
    assert provider is not None and provider.arn == seeded.provider_arn
    role = account.role_by_arn(role_arn(account.account_id, ROLE_NAME))
    assert role is not None and role.name == ROLE_NAME
    assert account.role_by_arn(role_arn("999999999999", ROLE_NAME)) is None
    assert seeded.admin.arn == user_arn(account.account_id, ADMIN_USER_NAME)


def test_the_irsa_template_lets_its_service_account_in_and_no_other() -> None:
    provider = oidc_provider_arn(ACCOUNT_ID, ISSUER)
    policy = irsa_trust_policy(provider, ISSUER)
    ours = oidc_trust_context(
        provider,
        {"sub": "system:serviceaccount:default:s3-readonly-sa", "aud": "sts.amazonaws.com"},
    )
    other = oidc_trust_context(
        provider,
        {"sub": "system:serviceaccount:kube-system:s3-readonly-sa", "aud": "sts.amazonaws.com"},
    )
    assert evaluate([("trust", policy)], ours).allowed
    assert not evaluate([("trust", policy)], other).allowed
