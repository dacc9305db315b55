"""The AWS managed policies: real documents that the evaluator reads as IAM would."""

from __future__ import annotations

import pytest

from irsa_lab.aws.managed import AWS_MANAGED_POLICIES, install_managed_policies
from irsa_lab.aws.model import Account
from irsa_lab.aws.policy import RequestContext, evaluate, parse_policy
from irsa_lab.constants import (
    NODE_ROLE_MANAGED_POLICY_ARNS,
    S3_READ_ONLY_POLICY_ARN,
)


@pytest.mark.parametrize("arn", sorted(AWS_MANAGED_POLICIES))
def test_every_managed_policy_is_a_well_formed_identity_policy(arn: str):
    fact = AWS_MANAGED_POLICIES[arn]
    parse_policy(fact.document_json, kind="identity")
    assert fact.arn == f"arn:aws:iam::aws:policy/{fact.name}"
    assert fact.policy_id.startswith("ANPA") and len(fact.policy_id) == 21


@pytest.mark.parametrize(
    ("action", "resource", "allowed"),
    [
        ("s3:ListAllMyBuckets", "*", True),
        ("s3:ListBucket", "arn:aws:s3:::aws-codebuild-output-test", True),
        ("s3:GetObject", "arn:aws:s3:::aws-codebuild-output-test/README.txt", True),
        ("s3:PutObject", "arn:aws:s3:::aws-codebuild-output-test/README.txt", False),
        ("s3:DeleteObject", "arn:aws:s3:::aws-codebuild-output-test/README.txt", False),
    ],
)
def test_s3_read_only_access_allows_reads_and_nothing_else(
    action: str, resource: str, allowed: bool
):
    doc = AWS_MANAGED_POLICIES[S3_READ_ONLY_POLICY_ARN].document_json
    decision = evaluate(
        [(S3_READ_ONLY_POLICY_ARN, doc)], RequestContext(action=action, resource=resource)
    )
    assert decision.allowed is allowed


def test_the_node_roles_policies_give_no_s3_access_but_do_describe_instances():
    docs = [(arn, AWS_MANAGED_POLICIES[arn].document_json) for arn in NODE_ROLE_MANAGED_POLICY_ARNS]
    s3 = RequestContext(
        action="s3:GetObject", resource="arn:aws:s3:::aws-codebuild-output-test/README.txt"
    )
    assert evaluate(docs, s3).allowed is False
    ec2 = RequestContext(action="ec2:DescribeInstances", resource="*")
    assert evaluate(docs, ec2).allowed is True


def test_installing_the_managed_policies_is_idempotent():
    account = Account()
    install_managed_policies(account)
    install_managed_policies(account)
    assert set(account.managed_policies) == set(AWS_MANAGED_POLICIES)
