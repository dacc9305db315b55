"""Pod Identity on the ``k8s`` backend: the upstream webhook binary in container-credentials
mode, fed by the lab's watched file (docs/reference/pod-identity.md §5.1-§5.3).

The binary reloads the file asynchronously (fsnotify); ``wait_for_pod_identity_config``
waits for its log line before each pod. Then the same flow as the embedded lab's
(tests/test_pod_identity_webhook_mode.py), ending with the aws CLI in the pod getting the
role's credentials from the agent.

Skipped, naming ``make k8s-bin``, where the real programs are not built.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from irsa_lab import constants as C
from irsa_lab.aws.eks import trust as T
from irsa_lab.backends import binaries
from irsa_lab.backends.k8s import WEBHOOK_PROGRAM, K8sLab
from irsa_lab.jose import decode_unverified
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED
from irsa_lab.webhook.container_credentials import CONFIG_LOADED_LINES

pytestmark = pytest.mark.skipif(
    bool(binaries.missing()),
    reason=f"{', '.join(binaries.missing())} not built: run `make k8s-bin` (needs Go)",
)

ROLE_NAME = "pi-k8s-reader"
ROLE = f"arn:aws:iam::{C.ACCOUNT_ID}:role/{ROLE_NAME}"
TOKEN_FILE = (
    f"{C.CONTAINER_CREDENTIALS_MOUNT_PATH.rstrip('/')}/{C.CONTAINER_CREDENTIALS_TOKEN_PATH}"
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sLab]:
    the_stack = K8sLab(state_dir=tmp_path_factory.mktemp("k8s-pi"), seed=DEFAULT_SEED).start()
    try:
        yield the_stack
    finally:
        the_stack.stop()


@pytest.fixture(scope="module")
def lab(stack: K8sLab) -> Lab:
    the_lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="k8s")
    for sa in ("pi-app", "pi-both"):
        the_lab.core.create_namespaced_service_account(C.NAMESPACE, {"metadata": {"name": sa}})
    the_lab.core.patch_namespaced_service_account(
        "pi-both", C.NAMESPACE, {"metadata": {"annotations": {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN}}}
    )
    the_lab.aws_client("iam").create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(T.pod_identity_trust_policy(tag_session=True)),
    )
    return the_lab


def _pod(name: str, sa: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "app"}]},
    }


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}


def _webhook_log(stack: K8sLab) -> str:
    return (stack.dir / "logs" / f"{WEBHOOK_PROGRAM}.log").read_text(errors="replace")


def test_the_upstream_webhook_runs_with_the_watched_file_and_the_agents_url(
    stack: K8sLab,
) -> None:
    proc = next(p for p in stack.procs if p.name == WEBHOOK_PROGRAM)
    args = proc.popen.args
    assert isinstance(args, list)
    path = stack.state_dir / "pod-identity" / "identities.json"
    assert f"--watch-container-credentials-config={path}" in args
    agent = stack.aws.urls["pod-identity-agent"]
    assert f"--container-credentials-full-uri={agent}" in args
    # It loaded the (empty) file at start.
    assert any(line in _webhook_log(stack) for line in CONFIG_LOADED_LINES)


def test_an_association_reaches_the_upstream_webhook_and_the_pod_gets_a_working_token(
    lab: Lab, stack: K8sLab
) -> None:
    loads = _webhook_log(stack).count(CONFIG_LOADED_LINES[0])
    assoc = stack.aws.associations.create(C.NAMESPACE, "pi-app", ROLE)
    try:
        stack.wait_for_pod_identity_config()
        assert _webhook_log(stack).count(CONFIG_LOADED_LINES[0]) > loads
        pod = lab.create_pod(_pod("pi-app-pod", "pi-app"))
        assert pod["metadata"]["labels"] == {"eks.amazonaws.com/pod-identity": "enabled"}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert "aws-iam-token" not in volumes
        source = volumes[C.CONTAINER_CREDENTIALS_VOLUME_NAME]["projected"]["sources"][0]
        assert source["serviceAccountToken"]["audience"] == "pods.eks.amazonaws.com"
        env = _env(pod)
        assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == stack.aws.urls["pod-identity-agent"]
        assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == TOKEN_FILE

        done = lab.exec(
            "pi-app-pod",
            [
                "python3",
                "-c",
                "import os,sys; p=os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'];"
                " sys.stdout.write(open(p).read())",
            ],
        )
        assert done.returncode == 0, done.stderr
        token = done.stdout
        assert "\n" not in token
        claims = decode_unverified(token)[1]
        assert claims["aud"] == ["pods.eks.amazonaws.com"]
        assert claims["kubernetes.io"]["pod"]["name"] == "pi-app-pod"

        who = lab.exec("pi-app-pod", ["aws", "sts", "get-caller-identity", "--output", "json"])
        assert who.returncode == 0, who.stderr
        arn = json.loads(who.stdout)["Arn"]
        assert arn.startswith(f"arn:aws:sts::{C.ACCOUNT_ID}:assumed-role/{ROLE_NAME}/eks-")
    finally:
        stack.aws.associations.delete(assoc.association_id)
        stack.wait_for_pod_identity_config()


def test_on_the_upstream_webhook_pod_identity_wins_until_the_association_is_deleted(
    lab: Lab, stack: K8sLab
) -> None:
    assoc = stack.aws.associations.create(C.NAMESPACE, "pi-both", ROLE)
    stack.wait_for_pod_identity_config()
    env = _env(lab.create_pod(_pod("pi-both-1", "pi-both")))
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in env
    assert "AWS_ROLE_ARN" not in env and "AWS_WEB_IDENTITY_TOKEN_FILE" not in env

    stack.aws.associations.delete(assoc.association_id)
    stack.wait_for_pod_identity_config()
    env = _env(lab.create_pod(_pod("pi-both-2", "pi-both")))
    assert env["AWS_ROLE_ARN"] == C.ROLE_ARN
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in env
