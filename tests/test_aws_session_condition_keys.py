"""Global condition keys in the request context of a role session's S3 and IAM calls.

IAM User Guide, "AWS global condition context keys": ``aws:CurrentTime``,
``aws:EpochTime``, ``aws:PrincipalArn`` (for a role session, the ROLE's ARN),
``aws:PrincipalAccount``, ``aws:PrincipalType`` (``AssumedRole``), ``aws:userid``,
``aws:RequestedRegion`` (``us-east-1`` for IAM) and ``aws:SecureTransport`` are always
there; ``aws:FederatedProvider`` and ``aws:TokenIssueTime`` in a web-identity session;
``aws:PrincipalTag/<key>`` when the principal has tags; ``aws:username`` only for IAM
users. A Deny on a present key now denies, an Allow that needs one now allows. The role's
inline policies are set through IAM as the administrator; the calls are made with boto3.
"""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_fixtures import sts_lab, sts_servers  # noqa: F401 - fixtures
from aws_session_fixtures import SessionLab, denial, iam_s3_urls, session_lab  # noqa: F401
from botocore.exceptions import ClientError

from irsa_lab.constants import BUCKET, REGION, ROLE_ARN, ROLE_NAME

OBJECT_ARN = f"arn:aws:s3:::{BUCKET}/*"
SESSION = "botocore-session-1711548000"  # what StsLab.assume names the session


def deny_get(condition: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"Effect": "Deny", "Action": "s3:GetObject", "Resource": OBJECT_ARN, "Condition": condition}
    ]


def allow_put(condition: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": OBJECT_ARN,
            "Condition": condition,
        }
    ]


def read(lab: SessionLab) -> Any:
    return lab.session("s3").get_object(Bucket=BUCKET, Key="README.txt")


def test_a_deny_on_the_roles_arn_as_principal_arn_denies_its_sessions(
    session_lab: SessionLab,
) -> None:
    session_lab.put_role_policy(deny_get({"ArnEquals": {"aws:PrincipalArn": ROLE_ARN}}))
    refused = denial(read, session_lab)
    assert str(refused.response["Error"]["Message"]).endswith(
        "with an explicit deny in an identity-based policy"
    )


def test_principal_arn_is_the_role_not_the_session(session_lab: SessionLab) -> None:
    session_arn = f"arn:aws:sts::{session_lab.account_id}:assumed-role/{ROLE_NAME}/{SESSION}"
    session_lab.put_role_policy(deny_get({"ArnEquals": {"aws:PrincipalArn": session_arn}}))
    assert read(session_lab)["Body"].read()


@pytest.mark.parametrize(
    "condition",
    [
        {"StringEquals": {"aws:RequestedRegion": REGION}},
        {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
        {"NumericGreaterThan": {"aws:EpochTime": "1577836800"}},
        {"StringEquals": {"aws:PrincipalType": "AssumedRole"}},
        {"Bool": {"aws:SecureTransport": "true"}},
        {"StringLike": {"aws:userid": "AROA*:" + SESSION}},
        {"Null": {"aws:TokenIssueTime": "false"}},
        {"Null": {"aws:username": "true"}},
    ],
    ids=lambda c: next(iter(next(iter(c.values())))),
)
def test_a_deny_on_a_key_every_session_request_has_now_denies(
    session_lab: SessionLab, condition: dict[str, Any]
) -> None:
    session_lab.put_role_policy(deny_get(condition))
    denial(read, session_lab)


def test_an_allow_on_principal_type_assumed_role_now_allows(session_lab: SessionLab) -> None:
    session_lab.put_role_policy(allow_put({"StringEquals": {"aws:PrincipalType": "AssumedRole"}}))
    s3 = session_lab.session("s3")
    assert s3.put_object(Bucket=BUCKET, Key="by-role.txt", Body=b"ok")["ETag"]


def test_a_web_identity_session_carries_its_provider_and_issue_time(
    session_lab: SessionLab,
) -> None:
    provider = session_lab.sts_lab.scenario.provider_arn
    session_lab.put_role_policy(
        allow_put(
            {
                "StringEquals": {
                    "aws:FederatedProvider": provider,
                    "aws:PrincipalAccount": session_lab.account_id,
                },
                "DateLessThanEquals": {"aws:TokenIssueTime": "2100-01-01T00:00:00Z"},
            }
        )
    )
    s3 = session_lab.session("s3")
    assert s3.put_object(Bucket=BUCKET, Key="federated.txt", Body=b"ok")["ETag"]


def test_an_allow_for_another_region_does_not_allow(session_lab: SessionLab) -> None:
    session_lab.put_role_policy(allow_put({"StringEquals": {"aws:RequestedRegion": "us-west-2"}}))
    s3 = session_lab.session("s3")
    denial(s3.put_object, Bucket=BUCKET, Key="elsewhere.txt", Body=b"no")


def test_iam_judges_role_sessions_with_the_global_keys_too(session_lab: SessionLab) -> None:
    # IAM is global: its calls request us-east-1, whatever region the client is set to.
    session_lab.put_role_policy(
        [
            {
                "Effect": "Allow",
                "Action": "iam:ListRoles",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "aws:RequestedRegion": "us-east-1",
                        "aws:PrincipalType": "AssumedRole",
                    },
                    "ArnEquals": {"aws:PrincipalArn": ROLE_ARN},
                    "Bool": {"aws:SecureTransport": "true"},
                },
            },
            {
                "Effect": "Deny",
                "Action": "iam:GetRole",
                "Resource": "*",
                "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-01-01T00:00:00Z"}},
            },
        ]
    )
    iam = session_lab.session("iam")
    assert iam.list_roles()["Roles"]
    refused = denial(iam.get_role, RoleName=ROLE_NAME)
    assert str(refused.response["Error"]["Message"]).endswith(
        "with an explicit deny in an identity-based policy"
    )


def test_the_roles_tags_are_principal_tags_of_its_sessions(session_lab: SessionLab) -> None:
    admin = session_lab.admin()
    trust = admin.get_role(RoleName=ROLE_NAME)["Role"]["AssumeRolePolicyDocument"]
    tagged = "tagged-reader"
    arn = admin.create_role(
        RoleName=tagged,
        AssumeRolePolicyDocument=json.dumps(trust),
        Tags=[{"Key": "team", "Value": "blue"}],
    )["Role"]["Arn"]
    session_lab.put_role_policy(
        [
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": OBJECT_ARN,
                "Condition": {"StringEquals": {"aws:PrincipalTag/team": "blue"}},
            }
        ],
        role=tagged,
    )
    s3 = session_lab.session("s3", RoleArn=arn)
    assert s3.get_object(Bucket=BUCKET, Key="README.txt")["Body"].read()


def test_the_trust_policy_sees_the_role_session_name(session_lab: SessionLab) -> None:
    admin = session_lab.admin()
    trust = admin.get_role(RoleName=ROLE_NAME)["Role"]["AssumeRolePolicyDocument"]
    statement = trust["Statement"][0]
    statement["Condition"].setdefault("StringEquals", {})["sts:RoleSessionName"] = "app-pod"
    admin.update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=json.dumps(trust))
    assert session_lab.sts_lab.assume(RoleSessionName="app-pod")["Credentials"]
    with pytest.raises(ClientError) as info:
        session_lab.sts_lab.assume(RoleSessionName="another-name")
    assert info.value.response["Error"]["Code"] == "AccessDenied"
