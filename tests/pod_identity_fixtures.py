"""What the Pod Identity webhook-mode tests share across backends (embedded, ``k8s``).

The same flow runs on the embedded webhook (tests/test_pod_identity_webhook_mode.py) and
on the upstream binary (tests/test_k8s_pod_identity.py): an association reaches the
webhook through the watched file, the pod gets the Pod Identity settings, and the aws CLI
in it gets the role from the agent.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from irsa_lab import constants as C
from irsa_lab.aws.eks import trust as T
from irsa_lab.aws.eks.associations import Associations
from irsa_lab.jose import decode_unverified
from irsa_lab.session import Lab

TOKEN_FILE = (
    f"{C.CONTAINER_CREDENTIALS_MOUNT_PATH.rstrip('/')}/{C.CONTAINER_CREDENTIALS_TOKEN_PATH}"
)
# Read in the container: the file its variable names, as it is (no newline added).
READ_TOKEN = [
    "python3",
    "-c",
    "import os,sys; p=os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'];"
    " sys.stdout.write(open(p).read())",
]


class _Aws(Protocol):
    associations: Associations
    urls: dict[str, str]


class PodIdentityStack(Protocol):
    """What the tests use of an ``EmbeddedLab`` or a ``K8sLab``."""

    @property
    def aws(self) -> _Aws: ...

    def wait_for_pod_identity_config(self, timeout: float = 10.0) -> None: ...


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{C.ACCOUNT_ID}:role/{name}"


def prepare(lab: Lab, role_name: str) -> Lab:
    """ServiceAccounts ``pi-app`` (plain) and ``pi-both`` (with the article's role
    annotation), and a role that pods.eks.amazonaws.com may assume and tag."""
    for sa in ("pi-app", "pi-both"):
        lab.core.create_namespaced_service_account(C.NAMESPACE, {"metadata": {"name": sa}})
    lab.core.patch_namespaced_service_account(
        "pi-both", C.NAMESPACE, {"metadata": {"annotations": {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN}}}
    )
    lab.aws_client("iam").create_role(
        RoleName=role_name,
        AssumeRolePolicyDocument=json.dumps(T.pod_identity_trust_policy(tag_session=True)),
    )
    return lab


def pod(name: str, sa: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "app"}]},
    }


def container_env(stored: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in stored["spec"]["containers"][0].get("env", [])}


def check_pod_identity_pod(lab: Lab, stack: PodIdentityStack, name: str, role_name: str) -> str:
    """Create pod ``name`` as ``pi-app`` (associated already) and check it end to end:
    the webhook's settings, the token file in the container, and the aws CLI getting the
    role from the agent. Returns the token the container read."""
    stored = lab.create_pod(pod(name, "pi-app"))
    assert stored["metadata"]["labels"] == {"eks.amazonaws.com/pod-identity": "enabled"}
    volumes = {v["name"]: v for v in stored["spec"]["volumes"]}
    assert "aws-iam-token" not in volumes
    source = volumes[C.CONTAINER_CREDENTIALS_VOLUME_NAME]["projected"]["sources"][0]
    assert source["serviceAccountToken"]["audience"] == "pods.eks.amazonaws.com"
    env = container_env(stored)
    assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == stack.aws.urls["pod-identity-agent"]
    assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == TOKEN_FILE
    assert "AWS_ROLE_ARN" not in env

    done = lab.exec(name, READ_TOKEN)
    assert done.returncode == 0, done.stderr
    token = done.stdout
    assert "\n" not in token
    claims = decode_unverified(token)[1]
    assert claims["aud"] == ["pods.eks.amazonaws.com"]
    assert claims["sub"] == f"system:serviceaccount:{C.NAMESPACE}:pi-app"
    assert claims["kubernetes.io"]["pod"]["name"] == name

    # botocore in the container trades the token at the agent for the role (§4).
    who = lab.exec(name, ["aws", "sts", "get-caller-identity", "--output", "json"])
    assert who.returncode == 0, who.stderr
    arn = json.loads(who.stdout)["Arn"]
    assert arn.startswith(f"arn:aws:sts::{C.ACCOUNT_ID}:assumed-role/{role_name}/eks-")
    return token


def check_pod_identity_wins_until_deleted(
    lab: Lab, stack: PodIdentityStack, role_name: str
) -> dict[str, Any]:
    """``pi-both`` has a role annotation and gets an association: only the Pod Identity
    settings are injected (fixture ``containercredentials/rawPodWithRoleArn``); once the
    association is deleted, IRSA's. Returns the second (IRSA) pod as stored."""
    assoc = stack.aws.associations.create(C.NAMESPACE, "pi-both", role_arn(role_name))
    stack.wait_for_pod_identity_config()
    env = container_env(lab.create_pod(pod("pi-both-1", "pi-both")))
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in env
    assert "AWS_ROLE_ARN" not in env and "AWS_WEB_IDENTITY_TOKEN_FILE" not in env

    stack.aws.associations.delete(assoc.association_id)
    stack.wait_for_pod_identity_config()
    second = lab.create_pod(pod("pi-both-2", "pi-both"))
    env = container_env(second)
    assert env["AWS_ROLE_ARN"] == C.ROLE_ARN
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in env
    return second
