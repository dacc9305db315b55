"""The CLI contract of the README, driven as a user would: `irsa-lab up --detach`, then
kubectl, `irsa-lab env` and `irsa-lab exec` against it, then `irsa-lab down`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
IRSA_LAB = [sys.executable, "-m", "irsa_lab.cli"]
ENDPOINT_KEYS = {
    "apiserver",
    "webhook",
    "sts",
    "iam",
    "s3",
    "imds",
    "issuer",
    "oidc",
    "ca_bundle",
    "kubeconfig",
    "account_id",
    "region",
    "admin_access_key_id",
    "admin_secret_access_key",
}
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None,
    reason="needs kubectl on PATH (https://kubernetes.io/docs/tasks/tools/)",
)


def run(
    args: list[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    state = tmp_path_factory.mktemp("state")
    up = run([*IRSA_LAB, "up", "--detach", "--state-dir", str(state)])
    assert "running in the background" in up.stdout
    try:
        endpoints = json.loads((state / "endpoints.json").read_text())
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        exports = run([*IRSA_LAB, "env", "--state-dir", str(state)]).stdout
        for line in exports.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0]
        env["HOME"] = str(tmp_path_factory.mktemp("home"))
        env["TZ"] = "UTC"
        yield state, env
    finally:
        run([*IRSA_LAB, "down", "--state-dir", str(state)], check=False)
        assert endpoints  # the fixture got as far as reading the contract file


def test_up_writes_every_endpoint_key_of_the_contract(running: tuple[Path, dict[str, str]]) -> None:
    state, _ = running
    endpoints = json.loads((state / "endpoints.json").read_text())
    assert ENDPOINT_KEYS <= endpoints.keys()
    assert endpoints["issuer"].startswith("https://oidc.eks.eu-west-1.amazonaws.com/id/")
    assert len(endpoints["issuer"].rsplit("/", 1)[1]) == 32
    assert endpoints["oidc"].endswith("/id/" + endpoints["issuer"].rsplit("/", 1)[1])
    assert (endpoints["account_id"], endpoints["region"]) == ("123456789012", "eu-west-1")
    for key in ("apiserver", "webhook", "sts", "iam", "s3", "oidc"):
        assert endpoints[key].startswith("https://127.0.0.1:"), key
    assert endpoints["imds"].startswith("http://127.0.0.1:")
    assert Path(endpoints["kubeconfig"]) == state / "kubeconfig"


def test_files_holding_secrets_are_readable_by_their_owner_only(
    running: tuple[Path, dict[str, str]],
) -> None:
    state, _ = running
    for name in ("endpoints.json", "kubeconfig", "sa-signer.key"):
        mode = stat.S_IMODE((state / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"


def test_env_prints_export_lines_for_kubectl_boto3_and_the_aws_cli(
    running: tuple[Path, dict[str, str]],
) -> None:
    state, env = running
    out = run([*IRSA_LAB, "env", "--state-dir", str(state)]).stdout
    names = [line.split("=", 1)[0].removeprefix("export ") for line in out.splitlines()]
    assert names == [
        "KUBECONFIG",
        "AWS_ENDPOINT_URL_STS",
        "AWS_ENDPOINT_URL_IAM",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_EC2",
        "AWS_ENDPOINT_URL_EKS",
        "AWS_ENDPOINT_URL_EKS_AUTH",
        "AWS_CA_BUNDLE",
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ]
    assert env["AWS_ACCESS_KEY_ID"].startswith("AKIA")


def test_up_refuses_to_start_twice_in_one_state_dir(running: tuple[Path, dict[str, str]]) -> None:
    state, _ = running
    again = run([*IRSA_LAB, "up", "--detach", "--state-dir", str(state)], check=False)
    assert again.returncode == 2
    assert "already running" in again.stderr


@needs_kubectl
def test_kubectl_describes_the_annotated_service_account(
    running: tuple[Path, dict[str, str]],
) -> None:
    _, env = running
    out = run(["kubectl", "describe", "sa", "s3-readonly-sa"], env=env).stdout
    assert "Name:                s3-readonly-sa" in out
    assert (
        "eks.amazonaws.com/role-arn: arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole"
        in out
    )


@needs_kubectl
def test_kubectl_describes_the_webhook_configuration(running: tuple[Path, dict[str, str]]) -> None:
    _, env = running
    out = run(
        ["kubectl", "describe", "mutatingwebhookconfiguration", "pod-identity-webhook"], env=env
    ).stdout
    assert "Name:         pod-identity-webhook" in out
    assert "iam-for-pods.amazonaws.com" in out
    assert "Failure Policy:  Ignore" in out


@needs_kubectl
def test_kubectl_creates_a_token_for_sts(running: tuple[Path, dict[str, str]]) -> None:
    _, env = running
    token = run(
        ["kubectl", "create", "token", "s3-readonly-sa", "--audience", "sts.amazonaws.com"], env=env
    ).stdout.strip()
    import jwt

    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["aud"] == ["sts.amazonaws.com"]
    assert claims["sub"] == "system:serviceaccount:default:s3-readonly-sa"


@needs_kubectl
def test_the_articles_walkthrough_runs_with_kubectl_and_irsa_lab_exec(
    running: tuple[Path, dict[str, str]],
) -> None:
    state, env = running
    applied = run(["kubectl", "apply", "-f", str(ROOT / "examples" / "mypod.yaml")], env=env)
    assert applied.stdout.strip() == "pod/mypod created"
    try:
        pod = yaml.safe_load(run(["kubectl", "get", "pod", "mypod", "-o", "yaml"], env=env).stdout)
        names = [e["name"] for e in pod["spec"]["containers"][0]["env"]]
        assert names == [
            "AWS_STS_REGIONAL_ENDPOINTS",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ]

        who = run(
            [
                *IRSA_LAB,
                "exec",
                "--state-dir",
                str(state),
                "mypod",
                "--",
                "aws",
                "sts",
                "get-caller-identity",
            ],
            env=env,
        )
        identity = json.loads(who.stdout)
        assert set(identity) == {"UserId", "Account", "Arn"}
        assert identity["Account"] == "123456789012"
        assert identity["Arn"].startswith(
            "arn:aws:sts::123456789012:assumed-role/AmazonEKSPodS3ReadOnlyAccessRole/botocore-session-"
        )
        assert identity["Arn"].rsplit("-", 1)[1].isdigit()
        # exec says where the token path went on this machine.
        assert "AWS_WEB_IDENTITY_TOKEN_FILE" in who.stderr

        ls = run(
            [*IRSA_LAB, "exec", "--state-dir", str(state), "mypod", "--", "aws", "s3", "ls"],
            env=env,
        )
        assert ls.stdout == "2024-03-27 13:46:58 aws-codebuild-output-test\n"
    finally:
        deleted = run(["kubectl", "delete", "pod", "mypod"], env=env)
        assert deleted.stdout.strip() == 'pod "mypod" deleted'


def test_exec_into_a_missing_pod_says_so_without_a_traceback(
    running: tuple[Path, dict[str, str]],
) -> None:
    state, env = running
    result = run(
        [*IRSA_LAB, "exec", "--state-dir", str(state), "nosuchpod", "--", "true"],
        env=env,
        check=False,
    )
    assert result.returncode == 2
    assert 'pods "nosuchpod" not found' in result.stderr
    assert "Traceback" not in result.stderr


def test_env_without_a_running_lab_tells_how_to_start_one(tmp_path: Path) -> None:
    result = run([*IRSA_LAB, "env", "--state-dir", str(tmp_path)], check=False)
    assert result.returncode == 2
    assert "irsa-lab up --detach" in result.stderr


def test_down_stops_the_detached_lab_and_removes_its_pid(tmp_path: Path) -> None:
    run([*IRSA_LAB, "up", "--detach", "--state-dir", str(tmp_path)])
    pid = int((tmp_path / "lab.pid").read_text())
    down = run([*IRSA_LAB, "down", "--state-dir", str(tmp_path)])
    assert f"pid {pid}" in down.stdout
    assert not (tmp_path / "lab.pid").exists()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
