"""Type what you would type on EKS: the article's walkthrough, then the EKS Workshop's
IRSA steps, with the real kubectl (v1.36.1) and the real aws CLI, on the embedded lab and
on the ``k8s`` backend (the real kube-apiserver, controller manager and upstream webhook).

The role for the Workshop's ServiceAccount is made as ``eksctl create iamserviceaccount``
makes it: an IAM role trusting the cluster's OIDC provider for that one ServiceAccount,
with the AWS managed S3 read-only policy attached (boto3 against the lab's IAM).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from test_kubectl_workloads import KUBECTL, Cluster, running_cluster, wait_for

from irsa_lab import constants as C
from irsa_lab.aws.arns import irsa_trust_policy

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl v1.36.1 is not built; run `make k8s-bin` to build it"
)

ROOT = Path(__file__).resolve().parents[1]
SA, APP, ROLE = "workshop-sa", "workshop", "workshop-s3-read"
S3_READ_ONLY = "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"


@pytest.fixture(scope="module", params=["embedded", "k8s"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    yield from running_cluster(
        request.param, tmp_path_factory.mktemp(f"walkthrough-{request.param}")
    )


def _iam(state: Path) -> Any:
    ep = json.loads((state / "endpoints.json").read_text())
    client = boto3.session.Session(
        aws_access_key_id=ep["admin_access_key_id"],
        aws_secret_access_key=ep["admin_secret_access_key"],
        region_name=ep["region"],
    ).client("iam", endpoint_url=ep["iam"], verify=ep["ca_bundle"])
    return client, ep


def _create_iam_service_account_role(state: Path) -> str:
    """What ``eksctl create iamserviceaccount`` does on the AWS side."""
    iam, ep = _iam(state)
    issuer_host = ep["issuer"].removeprefix("https://")
    provider = f"arn:aws:iam::{ep['account_id']}:oidc-provider/{issuer_host}"
    trust = irsa_trust_policy(provider, ep["issuer"], service_account=SA)
    arn = str(
        iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    )
    iam.attach_role_policy(RoleName=ROLE, PolicyArn=S3_READ_ONLY)
    return arn


def test_the_article_then_the_eks_workshop_typed_into_kubectl(cluster: Cluster) -> None:
    # The article: the pod of the annotated ServiceAccount, then the AWS CLI in it.
    assert cluster.ok("apply", "-f", str(ROOT / "examples" / "mypod.yaml")).strip() == (
        "pod/mypod created"
    )
    cluster.ok("wait", "--for=condition=Ready", "pod/mypod", "--timeout=60s", timeout=90)
    listing = cluster.run("exec", "mypod", "--", "aws", "s3", "ls", timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert C.BUCKET in listing.stdout

    # The EKS Workshop: a ServiceAccount, its role, a Deployment using it.
    role_arn = _create_iam_service_account_role(cluster.state)
    assert cluster.ok("create", "sa", SA).strip() == f"serviceaccount/{SA} created"
    cluster.ok("annotate", "sa", SA, f"eks.amazonaws.com/role-arn={role_arn}")
    cluster.ok("create", "deployment", APP, "--image=amazon/aws-cli", "--", "sleep", "infinity")
    cluster.ok("set", "serviceaccount", "deployment", APP, SA)
    cluster.ok("rollout", "restart", "deployment", APP)
    status = cluster.ok("rollout", "status", "deployment", APP, "--timeout=90s", timeout=120)
    assert status.strip().endswith(f'deployment "{APP}" successfully rolled out')

    def one_mutated_pod() -> list[dict[str, Any]]:
        pods = [
            p
            for p in cluster.pods(f"app={APP}")
            if (p.get("status") or {}).get("phase") == "Running"
        ]
        return pods if len(pods) == 1 else []

    pod = wait_for(one_mutated_pod, timeout=60, what="one running pod of the new rollout")[0]
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env") or []}
    assert env.get("AWS_ROLE_ARN") == role_arn

    who = cluster.run(
        "exec", f"deploy/{APP}", "--", "aws", "sts", "get-caller-identity", timeout=120
    )
    assert who.returncode == 0, who.stderr
    arn = json.loads(who.stdout)["Arn"]
    assert arn.startswith(f"arn:aws:sts::{C.ACCOUNT_ID}:assumed-role/{ROLE}/"), arn

    assert cluster.ok("auth", "can-i", "create", "pods").strip() == "yes"
    events = cluster.ok("get", "events")
    assert "Scheduled" in events and "ScalingReplicaSet" in events
    logs = cluster.run("logs", f"deploy/{APP}")
    assert "NotFound" not in logs.stderr and "not found" not in logs.stderr
