"""Session policies: a session may do only what its role AND its session policies allow.

IAM User Guide, "Session policies": the permissions of a session created with ``Policy``
or ``PolicyArns`` are the intersection of the role's identity-based policies and the
session policies. Everything here goes through boto3: AssumeRoleWithWebIdentity on the
STS stand-in, then S3 and IAM calls signed with the session's keys.
"""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_fixtures import sts_lab, sts_servers  # noqa: F401 - fixtures
from aws_session_fixtures import SessionLab, denial, iam_s3_urls, session_lab  # noqa: F401
from botocore.exceptions import ClientError

from irsa_lab.constants import BUCKET

CNI_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"
S3_READ_ONLY_ARN = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"
OTHER_BUCKET = "another-teams-bucket"


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


LIST_OTHER_BUCKET = policy(
    {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{OTHER_BUCKET}"}
)


def test_an_inline_session_policy_for_another_bucket_takes_the_roles_s3_access_away(
    session_lab: SessionLab,
) -> None:
    s3 = session_lab.session("s3", Policy=LIST_OTHER_BUCKET)
    listing = denial(s3.list_objects_v2, Bucket=BUCKET)
    assert str(listing.response["Error"]["Message"]).endswith(
        f'on resource: "arn:aws:s3:::{BUCKET}" because no session policy allows the '
        "s3:ListBucket action"
    )
    reading = denial(s3.get_object, Bucket=BUCKET, Key="README.txt")
    assert "because no session policy allows the s3:GetObject action" in str(
        reading.response["Error"]["Message"]
    )


def test_without_a_session_policy_the_same_role_still_lists_and_reads(
    session_lab: SessionLab,
) -> None:
    s3 = session_lab.session("s3")
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] >= 1
    assert s3.get_object(Bucket=BUCKET, Key="README.txt")["Body"].read()


def test_a_session_policy_cannot_grant_what_the_role_lacks(session_lab: SessionLab) -> None:
    everything = policy({"Effect": "Allow", "Action": "s3:*", "Resource": "*"})
    s3 = session_lab.session("s3", Policy=everything)
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] >= 1
    put = denial(s3.put_object, Bucket=BUCKET, Key="new.txt", Body=b"x")
    assert "because no identity-based policy allows the s3:PutObject action" in str(
        put.response["Error"]["Message"]
    )


def test_an_explicit_deny_in_the_session_policy_is_named_in_the_denial(
    session_lab: SessionLab,
) -> None:
    s3 = session_lab.session(
        "s3",
        Policy=policy(
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"},
        ),
    )
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] >= 1
    read = denial(s3.get_object, Bucket=BUCKET, Key="README.txt")
    assert str(read.response["Error"]["Message"]).endswith(
        "with an explicit deny in a session policy"
    )


def test_policy_arns_with_the_cni_policy_remove_s3_access(session_lab: SessionLab) -> None:
    s3 = session_lab.session("s3", PolicyArns=[{"arn": CNI_POLICY_ARN}])
    listing = denial(s3.list_objects_v2, Bucket=BUCKET)
    assert "because no session policy allows the s3:ListBucket action" in str(
        listing.response["Error"]["Message"]
    )


def test_policy_arns_that_allow_reads_keep_them(session_lab: SessionLab) -> None:
    s3 = session_lab.session("s3", PolicyArns=[{"arn": S3_READ_ONLY_ARN}])
    assert s3.list_objects_v2(Bucket=BUCKET)["KeyCount"] >= 1


def test_inline_and_managed_session_policies_together_allow_what_either_allows(
    session_lab: SessionLab,
) -> None:
    # The session policies are one set of policies: an Allow in any of them is enough,
    # as long as the role allows it too.
    s3 = session_lab.session(
        "s3",
        Policy=LIST_OTHER_BUCKET,
        PolicyArns=[{"arn": S3_READ_ONLY_ARN}],
    )
    assert s3.get_object(Bucket=BUCKET, Key="README.txt")["Body"].read()


def test_a_policy_arn_that_names_no_policy_is_refused(session_lab: SessionLab) -> None:
    missing = f"arn:aws:iam::{session_lab.account_id}:policy/does-not-exist"
    with pytest.raises(ClientError) as info:
        session_lab.sts_lab.assume(PolicyArns=[{"arn": missing}])
    error = info.value.response["Error"]
    assert error["Code"] == "MalformedPolicyDocument"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error["Message"] == f"Policy {missing} does not exist or is not attachable."


def test_iam_calls_are_judged_by_the_session_policies_too(session_lab: SessionLab) -> None:
    session_lab.put_role_policy([{"Effect": "Allow", "Action": "iam:ListRoles", "Resource": "*"}])
    assert session_lab.session("iam").list_roles()["Roles"]
    limited = session_lab.session("iam", Policy=LIST_OTHER_BUCKET)
    refused = denial(limited.list_roles)
    assert str(refused.response["Error"]["Message"]).endswith(
        "because no session policy allows the iam:ListRoles action"
    )


def test_an_inline_session_policy_that_is_not_a_policy_is_malformed(
    session_lab: SessionLab,
) -> None:
    sts = session_lab.sts_lab.sts()
    with pytest.raises(sts.exceptions.MalformedPolicyDocumentException) as info:
        session_lab.sts_lab.assume(Policy='{"Version": "2012-10-17", "Statement": [')
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_session_policies_beyond_the_packed_space_are_too_large(session_lab: SessionLab) -> None:
    # Compact JSON just under the model's 2048-character limit for Policy alone; the
    # managed policy ARNs count against the same space and push it over.
    resources: list[str] = []
    big = ""
    while True:
        statement = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": resources}
        text = json.dumps(
            {"Version": "2012-10-17", "Statement": [statement]}, separators=(",", ":")
        )
        if len(text) > 2048:
            break
        big = text
        resources = [*resources, f"arn:aws:s3:::{OTHER_BUCKET}/{len(resources):04d}"]
    assert 2000 < len(big) <= 2048
    sts = session_lab.sts_lab.sts()
    with pytest.raises(sts.exceptions.PackedPolicyTooLargeException):
        session_lab.sts_lab.assume(
            Policy=big, PolicyArns=[{"arn": CNI_POLICY_ARN}, {"arn": S3_READ_ONLY_ARN}]
        )
