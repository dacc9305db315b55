"""The pure core behind role-session checks: policy types together, global keys, variables."""

from __future__ import annotations

import json
from typing import Any

import pytest

from irsa_lab.aws.policy import RequestContext, authorize, global_keys
from irsa_lab.aws.policy.variables import substitute
from irsa_lab.constants import ACCOUNT_ID, BUCKET

OBJECT = f"arn:aws:s3:::{BUCKET}/k"
ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/r"


def doc(effect: str, action: str, resource: str = "*") -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": effect, "Action": action, "Resource": resource}],
        }
    )


ALLOW_ALL = [("role", doc("Allow", "s3:*"))]
CTX = RequestContext("s3:GetObject", OBJECT)


@pytest.mark.parametrize(
    ("identity", "session", "allowed", "tail"),
    [
        (ALLOW_ALL, None, True, ""),
        (ALLOW_ALL, [("s", doc("Allow", "s3:GetObject"))], True, ""),
        (ALLOW_ALL, [("s", doc("Allow", "s3:ListBucket"))], False, "because no session policy"),
        ([], [("s", doc("Allow", "s3:*"))], False, "because no identity-based policy"),
        (ALLOW_ALL, [("s", doc("Deny", "s3:*"))], False, "with an explicit deny in a session"),
        (
            [("role", doc("Deny", "s3:*"))],
            [("s", doc("Deny", "s3:*"))],
            False,
            "with an explicit deny in an identity-based",
        ),
        ([], [("s", doc("Deny", "s3:*"))], False, "with an explicit deny in a session"),
        (ALLOW_ALL, [], False, "because no session policy"),
    ],
)
def test_a_session_may_do_only_what_both_policy_types_allow(
    identity: Any, session: Any, allowed: bool, tail: str
) -> None:
    verdict = authorize(identity, session, CTX)
    assert verdict.allowed is allowed
    assert verdict.denial("s3:GetObject").startswith(tail)
    assert ("session" in verdict.explain()) is (session is not None)


def test_without_session_policies_the_verdict_is_the_identity_evaluators() -> None:
    verdict = authorize(ALLOW_ALL, None, CTX)
    assert verdict.verdict() == verdict.identity.verdict()
    assert verdict.explain() == verdict.identity.explain()


def test_global_keys_follow_the_availability_of_each_key() -> None:
    session = global_keys(
        now=0,
        region="eu-west-1",
        principal_type="AssumedRole",
        principal_arn=ROLE,
        userid="AROAEXAMPLE:s",
        principal_tags={"team": "blue"},
        token_issue_time=0,
        federated_provider="arn:aws:iam::123456789012:oidc-provider/x",
    )
    assert session["aws:CurrentTime"] == "1970-01-01T00:00:00Z"
    assert session["aws:EpochTime"] == "0"
    assert session["aws:PrincipalArn"] == ROLE
    assert session["aws:PrincipalAccount"] == ACCOUNT_ID
    assert session["aws:PrincipalTag/team"] == "blue"
    assert session["aws:TokenIssueTime"] == "1970-01-01T00:00:00Z"
    assert "aws:username" not in session and "aws:SourceIdentity" not in session
    user = global_keys(
        now=0,
        region="us-east-1",
        principal_type="User",
        principal_arn=f"arn:aws:iam::{ACCOUNT_ID}:user/admin",
        userid="AIDAEXAMPLE",
        username="admin",
    )
    assert user["aws:username"] == "admin"
    assert "aws:TokenIssueTime" not in user and "aws:FederatedProvider" not in user


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${aws:username}", "alice"),
        ("${AWS:UserName}", "alice"),
        ("${ aws:username , 'x' }", "alice"),
        ("${aws:PrincipalTag/team, 'it''s'}", "it's"),
        ("a${*}b${?}c${$}", "a\ue000b\ue001c$"),
        ("${unclosed", "${unclosed"),
        ("${not a key}", "${not a key}"),
        ("${aws:TagKeys}", None),  # several values: none to put in
        ("${aws:missing}", None),
    ],
)
def test_substitution_reads_keys_defaults_and_escapes(text: str, expected: str | None) -> None:
    keys = {"aws:username": ["alice"], "aws:tagkeys": ["a", "b"]}
    assert substitute(text, keys).text == expected
