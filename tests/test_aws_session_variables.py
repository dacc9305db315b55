"""Policy variables in a role's policies, replaced by the values of each request.

IAM User Guide, "IAM policy elements: Variables and tags": in a ``2012-10-17`` policy,
``${aws:PrincipalAccount}``, ``${aws:userid}``, ``${aws:PrincipalTag/<key>}`` and any
other context key are replaced in ``Resource`` and in string and ARN condition values;
``${*}``, ``${?}`` and ``${$}`` are literal characters; ``${key, 'default'}`` stands in
for a missing key; a variable with no value matches nothing; in ``2008-10-17`` policies
they are literal text. The role's inline policies are set through IAM as the
administrator; the calls are S3 calls made with boto3 and the session's keys.
"""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import json
from typing import Any

from aws_fixtures import sts_lab, sts_servers  # noqa: F401 - fixtures
from aws_session_fixtures import SessionLab, denial, iam_s3_urls, session_lab  # noqa: F401

from irsa_lab.constants import BUCKET, ROLE_NAME


def put_under(resource_tail: str, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "Effect": "Allow",
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/{resource_tail}",
            **extra,
        }
    ]


def test_principal_account_in_a_resource_scopes_writes_to_the_accounts_prefix(
    session_lab: SessionLab,
) -> None:
    session_lab.put_role_policy(put_under("${aws:PrincipalAccount}/*"))
    s3 = session_lab.session("s3")
    mine = f"{session_lab.account_id}/report.txt"
    assert s3.put_object(Bucket=BUCKET, Key=mine, Body=b"ok")["ETag"]
    denial(s3.put_object, Bucket=BUCKET, Key="111122223333/report.txt", Body=b"no")


def test_userid_in_a_resource_gives_each_session_its_own_home(session_lab: SessionLab) -> None:
    session_lab.put_role_policy(put_under("home/${aws:userid}/*"))
    creds = session_lab.sts_lab.assume()
    userid = creds["AssumedRoleUser"]["AssumedRoleId"]
    s3 = session_lab.client("s3", creds["Credentials"])
    assert s3.put_object(Bucket=BUCKET, Key=f"home/{userid}/notes.txt", Body=b"ok")["ETag"]
    denial(s3.put_object, Bucket=BUCKET, Key="home/AROAEXAMPLE:other/notes.txt", Body=b"no")


def test_string_equals_on_userid_in_a_condition(session_lab: SessionLab) -> None:
    # Listing is refused unless the prefix is the caller's own user id.
    session_lab.put_role_policy(
        [
            {
                "Effect": "Deny",
                "Action": "s3:ListBucket",
                "Resource": f"arn:aws:s3:::{BUCKET}",
                "Condition": {"StringNotEquals": {"s3:prefix": "${aws:userid}/"}},
            }
        ]
    )
    creds = session_lab.sts_lab.assume()
    userid = creds["AssumedRoleUser"]["AssumedRoleId"]
    s3 = session_lab.client("s3", creds["Credentials"])
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{userid}/")["KeyCount"] == 0
    denial(s3.list_objects_v2, Bucket=BUCKET, Prefix="artifacts/")


def test_a_variable_with_no_value_matches_nothing_unless_it_has_a_default(
    session_lab: SessionLab,
) -> None:
    # A role session has no aws:username (only IAM users do).
    session_lab.put_role_policy(
        put_under("users/${aws:username}/*") + put_under("teams/${aws:username, 'shared'}/*")
    )
    s3 = session_lab.session("s3")
    denial(s3.put_object, Bucket=BUCKET, Key="users/x/a.txt", Body=b"no")
    assert s3.put_object(Bucket=BUCKET, Key="teams/shared/a.txt", Body=b"ok")["ETag"]


def test_the_escapes_stand_for_literal_characters(session_lab: SessionLab) -> None:
    session_lab.put_role_policy(put_under("literal-${*}-${?}-${$}"))
    s3 = session_lab.session("s3")
    assert s3.put_object(Bucket=BUCKET, Key="literal-*-?-$", Body=b"ok")["ETag"]
    denial(s3.put_object, Bucket=BUCKET, Key="literal-a-b-$", Body=b"no")


def test_a_principal_tag_variable_names_the_teams_prefix(session_lab: SessionLab) -> None:
    admin = session_lab.admin()
    trust = admin.get_role(RoleName=ROLE_NAME)["Role"]["AssumeRolePolicyDocument"]
    arn = admin.create_role(
        RoleName="team-writer",
        AssumeRolePolicyDocument=json.dumps(trust),
        Tags=[{"Key": "team", "Value": "blue"}],
    )["Role"]["Arn"]
    session_lab.put_role_policy(put_under("teams/${aws:PrincipalTag/team}/*"), role="team-writer")
    s3 = session_lab.session("s3", RoleArn=arn)
    assert s3.put_object(Bucket=BUCKET, Key="teams/blue/plan.txt", Body=b"ok")["ETag"]
    denial(s3.put_object, Bucket=BUCKET, Key="teams/red/plan.txt", Body=b"no")


def test_variables_are_literal_text_in_a_2008_10_17_policy(session_lab: SessionLab) -> None:
    document = {
        "Version": "2008-10-17",
        "Statement": put_under("${aws:PrincipalAccount}/*"),
    }
    session_lab.admin().put_role_policy(
        RoleName=ROLE_NAME, PolicyName="old-language", PolicyDocument=json.dumps(document)
    )
    s3 = session_lab.session("s3")
    denial(s3.put_object, Bucket=BUCKET, Key=f"{session_lab.account_id}/x.txt", Body=b"no")
    assert s3.put_object(Bucket=BUCKET, Key="${aws:PrincipalAccount}/x.txt", Body=b"ok")["ETag"]


def test_a_variable_in_a_session_policy_is_replaced_too(session_lab: SessionLab) -> None:
    session_lab.put_role_policy(put_under("*"))
    scoped = json.dumps(
        {"Version": "2012-10-17", "Statement": put_under("${aws:PrincipalAccount}/*")}
    )
    s3 = session_lab.session("s3", Policy=scoped)
    assert s3.put_object(Bucket=BUCKET, Key=f"{session_lab.account_id}/y.txt", Body=b"ok")["ETag"]
    denial(s3.put_object, Bucket=BUCKET, Key="elsewhere/y.txt", Body=b"no")


def test_session_tags_and_source_identity_from_the_token_are_policy_variables(
    session_lab: SessionLab,
) -> None:
    admin = session_lab.admin()
    trust = admin.get_role(RoleName=ROLE_NAME)["Role"]["AssumeRolePolicyDocument"]
    trust["Statement"][0]["Action"] = [
        "sts:AssumeRoleWithWebIdentity",
        "sts:TagSession",
        "sts:SetSourceIdentity",
    ]
    admin.update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=json.dumps(trust))
    session_lab.put_role_policy(
        put_under(
            "${aws:PrincipalTag/project}/${aws:SourceIdentity}/*",
            Condition={"StringEquals": {"aws:PrincipalTag/project": "orbit"}},
        )
    )
    token = session_lab.sts_lab.token(
        **{
            "https://aws.amazon.com/tags": {"principal_tags": {"project": ["orbit"]}},
            "https://aws.amazon.com/source_identity": "alice",
        }
    )
    creds = session_lab.sts_lab.assume(token)["Credentials"]
    s3 = session_lab.client("s3", creds)
    assert s3.put_object(Bucket=BUCKET, Key="orbit/alice/run.log", Body=b"ok")["ETag"]
    denial(s3.put_object, Bucket=BUCKET, Key="orbit/bob/run.log", Body=b"no")
