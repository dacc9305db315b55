"""The AWS managed policies the lab needs, with their real documents.

Facts (name, description, default version, dates, document) come from the AWS
Managed Policy Reference (docs.aws.amazon.com/aws-managed-policy). The documents
are small enough to keep whole; none is trimmed. Dates are given to the second
where a public ``aws iam get-policy`` output shows them, otherwise to the minute
the reference gives. Policy ids marked [I] below are recalled, not verified
against a live account; the lab never checks them, they only make outputs look
like the real thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..constants import (
    ECR_READ_ONLY_POLICY_ARN,
    EKS_CNI_POLICY_ARN,
    EKS_WORKER_NODE_POLICY_ARN,
    S3_READ_ONLY_POLICY_ARN,
)
from .model import Account, ManagedPolicy


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class AwsManagedPolicy:
    """One AWS managed policy as ``iam get-policy`` / ``get-policy-version`` show it."""

    name: str
    arn: str
    policy_id: str
    description: str
    default_version_id: str
    create_date: float
    update_date: float
    document: dict[str, Any]

    @property
    def document_json(self) -> str:
        """The document as JSON text, indented the way AWS shows managed policies."""
        return json.dumps(self.document, indent=2)


def _allow(
    actions: list[str], resource: str | list[str] = "*", sid: str | None = None
) -> dict[str, Any]:
    stmt: dict[str, Any] = {"Sid": sid} if sid else {}
    stmt.update({"Effect": "Allow", "Action": actions, "Resource": resource})
    return stmt


def _doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


AWS_MANAGED_POLICIES: dict[str, AwsManagedPolicy] = {
    p.arn: p
    for p in (
        AwsManagedPolicy(
            name="AmazonS3ReadOnlyAccess",
            arn=S3_READ_ONLY_POLICY_ARN,
            policy_id="ANPAIZTJ4DXE7G6AGAE6M",
            description="Provides read only access to all buckets via the AWS Management Console.",
            default_version_id="v3",
            create_date=_epoch("2015-02-06T18:40:59Z"),
            update_date=_epoch("2023-08-10T21:31:39Z"),
            document=_doc(
                _allow(
                    [
                        "s3:Get*",
                        "s3:List*",
                        "s3:Describe*",
                        "s3-object-lambda:Get*",
                        "s3-object-lambda:List*",
                    ]
                )
            ),
        ),
        AwsManagedPolicy(
            name="AmazonEKSWorkerNodePolicy",
            arn=EKS_WORKER_NODE_POLICY_ARN,
            policy_id="ANPAIBVMOY52IPQ6HD3PO",  # [I]
            description="This policy allows Amazon EKS worker nodes to connect to Amazon EKS Clusters.",
            default_version_id="v3",
            create_date=_epoch("2018-05-27T21:09:00Z"),
            update_date=_epoch("2023-11-27T00:06:00Z"),
            document=_doc(
                _allow(
                    [
                        "ec2:DescribeInstances",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeRouteTables",
                        "ec2:DescribeSecurityGroups",
                        "ec2:DescribeSubnets",
                        "ec2:DescribeVolumes",
                        "ec2:DescribeVolumesModifications",
                        "ec2:DescribeVpcs",
                        "eks:DescribeCluster",
                        "eks-auth:AssumeRoleForPodIdentity",
                    ],
                    sid="WorkerNodePermissions",
                )
            ),
        ),
        AwsManagedPolicy(
            name="AmazonEKS_CNI_Policy",
            arn=EKS_CNI_POLICY_ARN,
            policy_id="ANPAJWLAS474LDBXNNTM4",  # [I]
            description=(
                "This policy provides the Amazon VPC CNI Plugin (amazon-vpc-cni-k8s) the "
                "permissions it requires to modify the IP address configuration on your EKS "
                "worker nodes. This permission set allows the CNI to list, describe, and modify "
                "Elastic Network Interfaces on your behalf. More information on the AWS VPC CNI "
                "Plugin is available here: https://github.com/aws/amazon-vpc-cni-k8s"
            ),
            default_version_id="v5",
            create_date=_epoch("2018-05-27T21:07:00Z"),
            update_date=_epoch("2024-03-04T20:20:00Z"),
            document=_doc(
                _allow(
                    [
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:AttachNetworkInterface",
                        "ec2:CreateNetworkInterface",
                        "ec2:DeleteNetworkInterface",
                        "ec2:DescribeInstances",
                        "ec2:DescribeTags",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeSubnets",
                        "ec2:DetachNetworkInterface",
                        "ec2:ModifyNetworkInterfaceAttribute",
                        "ec2:UnassignPrivateIpAddresses",
                    ],
                    sid="AmazonEKSCNIPolicy",
                ),
                _allow(
                    ["ec2:CreateTags"],
                    ["arn:aws:ec2:*:*:network-interface/*"],
                    sid="AmazonEKSCNIPolicyENITag",
                ),
            ),
        ),
        AwsManagedPolicy(
            name="AmazonEC2ContainerRegistryReadOnly",
            arn=ECR_READ_ONLY_POLICY_ARN,
            policy_id="ANPAIFYZPA37OOHVIH7KQ",
            description="Provides read-only access to Amazon EC2 Container Registry repositories.",
            default_version_id="v3",
            create_date=_epoch("2015-12-21T17:04:00Z"),
            update_date=_epoch("2019-12-10T20:56:00Z"),
            document=_doc(
                _allow(
                    [
                        "ecr:GetAuthorizationToken",
                        "ecr:BatchCheckLayerAvailability",
                        "ecr:GetDownloadUrlForLayer",
                        "ecr:GetRepositoryPolicy",
                        "ecr:DescribeRepositories",
                        "ecr:ListImages",
                        "ecr:DescribeImages",
                        "ecr:BatchGetImage",
                        "ecr:GetLifecyclePolicy",
                        "ecr:GetLifecyclePolicyPreview",
                        "ecr:ListTagsForResource",
                        "ecr:DescribeImageScanFindings",
                    ]
                )
            ),
        ),
    )
}


def install_managed_policies(account: Account) -> None:
    """Make the AWS managed policies above visible in ``account`` (idempotent)."""
    with account.lock:
        for fact in AWS_MANAGED_POLICIES.values():
            if fact.arn in account.managed_policies:
                continue
            account.managed_policies[fact.arn] = ManagedPolicy(
                name=fact.name,
                arn=fact.arn,
                policy_id=fact.policy_id,
                document=fact.document_json,
                path="/",
                description=fact.description,
                create_date=fact.create_date,
            )


def version_facts(arn: str, fallback_date: float) -> tuple[str, float]:
    """(default version id, update date) of a managed policy; ``v1`` for any other policy."""
    fact = AWS_MANAGED_POLICIES.get(arn)
    if fact is None:
        return "v1", fallback_date
    return fact.default_version_id, fact.update_date
