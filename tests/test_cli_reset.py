"""``irsa-lab reset`` puts a running lab back to its starting state: what a workshop's
instructor runs between two groups, or a learner after breaking the chain by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from irsa_lab import constants as C
from irsa_lab.aws.arns import irsa_trust_policy
from irsa_lab.aws.eks.trust import pod_identity_trust_policy
from irsa_lab.labs.probes import iam, provider_arn, trust_policy
from irsa_lab.session import Lab

ROOT = Path(__file__).resolve().parents[1]
IRSA_LAB = [sys.executable, "-m", "irsa_lab.cli"]
MYPOD = yaml.safe_load((ROOT / "examples" / "mypod.yaml").read_text())


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*IRSA_LAB, *args], capture_output=True, text=True, timeout=120, check=False, cwd=ROOT
    )


@pytest.fixture()
def running(tmp_path: Path) -> Iterator[Lab]:
    state = tmp_path / "state"
    up = run("up", "--detach", "--state-dir", str(state))
    assert up.returncode == 0, up.stderr
    lab = Lab(json.loads((state / "endpoints.json").read_text()), state, backend="running")
    try:
        yield lab
    finally:
        lab.close()
        run("down", "--state-dir", str(state))


def _break_everything(lab: Lab) -> None:
    lab.create_pod(MYPOD)
    lab.annotate_service_account(
        C.SERVICE_ACCOUNT, {C.ROLE_ARN_ANNOTATION: None, C.AUDIENCE_ANNOTATION: "sts.amazon.com"}
    )
    lab.control.modify_metadata_options(http_tokens="required", hop_limit=1)
    lab.control.stop_webhook()
    iam(lab).update_assume_role_policy(
        RoleName=C.ROLE_NAME,
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "sts:*"}],
            }
        ),
    )
    # A Pod Identity association for the article's ServiceAccount: it would win over IRSA.
    role = iam(lab).create_role(
        RoleName="pi-role", AssumeRolePolicyDocument=json.dumps(pod_identity_trust_policy())
    )["Role"]["Arn"]
    lab.aws_client("eks").create_pod_identity_association(
        clusterName=C.CLUSTER_NAME,
        namespace=C.NAMESPACE,
        serviceAccount=C.SERVICE_ACCOUNT,
        roleArn=role,
    )
    (lab.state_dir / "progress.json").write_text('{"version": 1, "exercises": {}}\n')


def test_reset_restores_pods_service_account_trust_policy_imds_and_webhook(
    running: Lab,
) -> None:
    lab = running
    _break_everything(lab)
    assert not lab.control.webhook_running()

    done = run("reset", "--progress", "--state-dir", str(lab.state_dir))
    assert done.returncode == 0, done.stderr
    assert "back to its starting state" in done.stdout

    assert lab.core.list_namespaced_pod(C.NAMESPACE).items == []
    annotations = lab.get_service_account(C.SERVICE_ACCOUNT)["metadata"]["annotations"]
    assert annotations[C.ROLE_ARN_ANNOTATION] == C.ROLE_ARN
    assert C.AUDIENCE_ANNOTATION not in annotations
    assert lab.control.metadata_options() == {
        "HttpTokens": "optional",
        "HttpPutResponseHopLimit": 2,
    }
    assert lab.control.webhook_running()
    assert trust_policy(lab) == irsa_trust_policy(provider_arn(lab), lab.endpoints["issuer"])
    assert not (lab.state_dir / "progress.json").exists()
    listed = lab.aws_client("eks").list_pod_identity_associations(clusterName=C.CLUSTER_NAME)
    assert listed["associations"] == []

    # The chain works again end to end: a new pod of the account is mutated.
    pod = lab.create_pod(MYPOD)
    env = {e["name"] for e in pod["spec"]["containers"][0].get("env", [])}
    assert C.ENV_ROLE_ARN in env


def test_reset_without_progress_keeps_the_learners_progress(running: Lab) -> None:
    (running.state_dir / "progress.json").write_text('{"version": 1, "exercises": {}}\n')
    done = run("reset", "--state-dir", str(running.state_dir))
    assert done.returncode == 0, done.stderr
    assert (running.state_dir / "progress.json").exists()


def test_reset_without_a_running_lab_says_how_to_start_one(tmp_path: Path) -> None:
    done = run("reset", "--state-dir", str(tmp_path))
    assert done.returncode == 2
    assert "irsa-lab up --detach" in done.stderr
    assert "Traceback" not in done.stderr
