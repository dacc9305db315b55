"""The kind launch path: fails fast without Docker, runs its steps in order, and (with
Docker and kind) the article's walkthrough on a real cluster."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from irsa_lab import cli
from irsa_lab.constants import (
    BUCKET,
    DEFAULT_AUDIENCE,
    KIND_API_SERVER_URL,
    KIND_DISCOVERY_URL,
    KIND_ISSUER,
    ROLE_ARN,
    TOKEN_FILE,
)
from irsa_lab.kind import cluster
from irsa_lab.kind.checks import docker_info
from irsa_lab.kind.cluster import KindError, kind_down, kind_up
from irsa_lab.kind.exec import exec_in_kind_pod, read_pod_file
from irsa_lab.kind.network import with_lab_ca
from irsa_lab.pki import LabCA

ROOT = Path(__file__).resolve().parents[1]
NEEDS = (
    "needs a running Docker engine (`docker info` failed) and `kind` on PATH "
    "(https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
)


def _kind_machine() -> bool:
    return shutil.which("kind") is not None and isinstance(docker_info(), dict)


# --- fails fast ---------------------------------------------------------------------------
def test_kind_up_without_docker_or_kind_fails_fast_naming_both_and_their_fixes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    real = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name in ("docker", "kind") else real(name)
    )
    started = time.monotonic()
    assert cli.main(["kind", "up", "--state-dir", str(tmp_path)]) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "the kind backend cannot start on this machine" in err
    assert "docker engine: the docker CLI is not on PATH" in err
    assert "kind CLI: kind is not on PATH" in err
    assert "https://kind.sigs.k8s.io/docs/user/quick-start/#installation" in err
    assert "`irsa-lab up`" in err
    assert not (tmp_path / "kind").exists(), "nothing may be written before the checks pass"


def test_kind_up_on_this_machine_fails_fast_when_docker_or_kind_is_missing(tmp_path: Path) -> None:
    if _kind_machine():
        pytest.skip("this machine has a Docker engine and kind: the e2e test covers kind up")
    p = subprocess.run(
        [sys.executable, "-m", "irsa_lab.cli", "kind", "up", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert p.returncode == 2
    assert "cannot start on this machine" in p.stderr
    assert ("docker" in p.stderr) and ("fix:" in p.stderr)


# --- the steps, with a fake toolchain ------------------------------------------------------
# What `docker network inspect kind` prints on Linux (kind's network is dual-stack).
KIND_NETWORK_INSPECT = [
    {
        "Name": "kind",
        "IPAM": {
            "Driver": "default",
            "Config": [
                {"Subnet": "fc00:f853:ccd:e793::/64", "Gateway": "fc00:f853:ccd:e793::1"},
                {"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"},
            ],
        },
    }
]


class FakeTools:
    """Answers docker, kind and kubectl as a healthy cluster would; the probe is mutated
    on try 2. ``clusters`` is what ``kind get clusters`` lists; ``fail_next`` maps a
    word of a command line to how many of those calls fail before they succeed."""

    def __init__(self, ca_pem: bytes, unmutated_tries: int = 1) -> None:
        self.ca_pem = ca_pem
        self.unmutated_tries = unmutated_tries
        self.calls: list[list[str]] = []
        self.applied = ""
        self.applies: list[str] = []
        self.clusters = ["other"]
        self.docker_os = "Ubuntu 24.04.1 LTS"
        self.fail_next: dict[str, int] = {}

    def _write_kubeconfig(self, kubeconfig: Path) -> None:
        data = base64.b64encode(self.ca_pem).decode()
        kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "clusters": [
                        {
                            "name": "kind-irsa-lab",
                            "cluster": {
                                "server": KIND_API_SERVER_URL,
                                "certificate-authority-data": data,
                            },
                        }
                    ]
                }
            )
        )

    def run(self, argv: Any, *, timeout: float, input: str | None = None, fix: str = "") -> str:
        argv = list(argv)
        self.calls.append(argv)
        for word, left in self.fail_next.items():
            if word in argv and left > 0:
                self.fail_next[word] = left - 1
                raise KindError(f"`{' '.join(argv)}` failed (exit 1):\nconnection refused")
        if argv[:3] == ["kind", "get", "clusters"]:
            return "".join(f"{c}\n" for c in self.clusters)
        if argv[:3] == ["kind", "create", "cluster"]:
            self._write_kubeconfig(Path(argv[argv.index("--kubeconfig") + 1]))
            return ""
        if argv[:3] == ["kind", "export", "kubeconfig"]:
            self._write_kubeconfig(Path(argv[argv.index("--kubeconfig") + 1]))
            return ""
        if argv[:2] == ["docker", "info"]:
            return json.dumps({"OperatingSystem": self.docker_os, "ServerVersion": "27.3.1"})
        if argv[:4] == ["docker", "network", "inspect", "kind"]:
            return json.dumps(KIND_NETWORK_INSPECT)
        if argv[:2] == ["docker", "start"]:
            return argv[2] + "\n"
        if "apply" in argv:
            self.applied = self.applied or (input or "")
            self.applies.append(input or "")
            return "applied\n"
        if "--dry-run=server" in argv:
            pod = yaml.safe_load(input or "")
            if self.unmutated_tries > 0:
                self.unmutated_tries -= 1
            else:
                pod["spec"]["containers"][0]["env"] = [
                    {"name": "AWS_ROLE_ARN", "value": ROLE_ARN},
                    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": TOKEN_FILE},
                ]
                pod["spec"]["volumes"] = [{"name": "aws-iam-token", "projected": {}}]
            return json.dumps(pod)
        return ""


class FakeAws:
    """What ``start_aws_for_issuer`` returns, without servers: its CA file is real."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.stopped = False
        ca_file = Path(kwargs["state_dir"]) / "ca.crt"
        ca_file.write_bytes(LabCA.create("fake stand-ins CA").cert_pem)
        self.endpoints = {
            "sts": "https://127.0.0.1:1001",
            "iam": "https://127.0.0.1:1002",
            "s3": "https://127.0.0.1:1003",
            "imds": "http://127.0.0.1:1004",
            "sts_pod": "https://172.18.0.1:2001",
            "ca_bundle": str(ca_file),
            "account_id": "123456789012",
            "region": "eu-west-1",
            "admin_access_key_id": "AKIA",
            "admin_secret_access_key": "s",
        }

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    monkeypatch.setattr(cluster, "_port_in_use", lambda host, port: False)
    return FakeTools(LabCA.create().cert_pem)


def _up(tmp_path: Path, fake: FakeTools, **kw: Any) -> cluster.KindLab:
    def fetch(url: str, ca_pem: bytes) -> dict[str, Any]:
        assert ca_pem == fake.ca_pem
        if url == KIND_DISCOVERY_URL:
            return {"issuer": KIND_ISSUER, "jwks_uri": "https://127.0.0.1:6443/openid/v1/jwks"}
        return dict(json.loads((tmp_path / "kind/keys/jwks.json").read_text()))

    return kind_up(
        tmp_path,
        runner=fake,
        checks=lambda: [],
        start_aws=FakeAws,  # type: ignore[arg-type]
        fetch_json=fetch,
        sleep=lambda s: None,
        **kw,
    )


def test_kind_up_creates_applies_waits_for_a_mutated_probe_then_starts_aws(
    tmp_path: Path, fake: FakeTools
) -> None:
    lab = _up(tmp_path, fake, seed=7)
    verbs = [
        c[:3]
        if c[0] in ("kind", "docker")
        else ["kubectl", next(v for v in ("apply", "rollout", "create") if v in c)]
        for c in fake.calls
    ]
    assert verbs[:3] == [
        ["kind", "get", "clusters"],
        ["kind", "create", "cluster"],
        ["kubectl", "apply"],
    ]
    assert verbs[3] == ["kubectl", "rollout"]
    assert verbs[-3:] == [
        ["docker", "info", "--format"],
        ["docker", "network", "inspect"],
        ["kubectl", "apply"],  # the CA ConfigMap, once the stand-ins' CA exists
    ]
    (config_map,) = yaml.safe_load_all(fake.applies[-1])
    assert config_map["kind"] == "ConfigMap" and config_map["metadata"]["name"] == "irsa-lab-ca"
    assert config_map["data"]["ca.crt"] == (tmp_path / "ca.crt").read_text()
    dry_runs = [c for c in fake.calls if "--dry-run=server" in c]
    assert len(dry_runs) == 2, "an unmutated probe must be retried, not accepted"
    create = fake.calls[1]
    assert create[create.index("--kubeconfig") + 1] == str(tmp_path / "kubeconfig")
    config = yaml.safe_load(Path(create[create.index("--config") + 1]).read_text())
    assert config["nodes"][0]["extraMounts"][0]["hostPath"] == str(tmp_path / "kind" / "keys")
    kinds = [d["kind"] for d in yaml.safe_load_all(fake.applied)]
    assert kinds[:2] == ["ClusterRoleBinding", "ServiceAccount"]
    assert "MutatingWebhookConfiguration" in kinds
    aws = lab.aws
    assert isinstance(aws, FakeAws)
    assert aws.kwargs == {
        "state_dir": tmp_path,
        "issuer": KIND_ISSUER,
        "discovery_url": KIND_DISCOVERY_URL,
        "ca_pem_for_discovery": fake.ca_pem,
        "seed": 7,
        # Linux: pods reach the host at the kind network's IPv4 gateway.
        "pod_host": "172.18.0.1",
        "pod_bind": "172.18.0.1",
    }
    endpoints = json.loads((tmp_path / "endpoints.json").read_text())
    assert endpoints["backend"] == "kind"
    assert endpoints["issuer"] == KIND_ISSUER and endpoints["oidc"] == KIND_API_SERVER_URL
    assert endpoints["sts"] == "https://127.0.0.1:1001"
    assert endpoints["kubeconfig"] == str(tmp_path / "kubeconfig")
    assert (tmp_path / "kind" / "manifests.yaml").stat().st_mode & 0o077 == 0

    kind_down(tmp_path, lab=lab, runner=fake)  # type: ignore[arg-type]
    assert aws.stopped
    assert fake.calls[-1][:3] == ["kind", "delete", "cluster"]
    assert not (tmp_path / "endpoints.json").exists()


def test_kind_up_stops_with_the_logs_command_when_the_probe_never_mutates(
    tmp_path: Path, fake: FakeTools, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.unmutated_tries = 10**6
    monkeypatch.setattr(cluster, "MUTATION_TIMEOUT_S", 0)
    with pytest.raises(KindError) as err:
        _up(tmp_path, fake)
    text = str(err.value)
    assert "did not mutate the probe pod" in text and "AWS_ROLE_ARN" in text
    assert "logs deployment/pod-identity-webhook" in text
    assert "irsa-lab kind down" in text


# --- the real thing -------------------------------------------------------------------------
@pytest.mark.kind
def test_seed_walkthrough_on_a_real_kind_cluster(tmp_path: Path) -> None:
    if not _kind_machine():
        pytest.skip(NEEDS)
    import boto3
    import jwt

    lab = kind_up(tmp_path, seed=20240327, progress=print)
    try:
        ep = lab.endpoints
        kubectl = ["kubectl", "--kubeconfig", ep["kubeconfig"], "--namespace", "default"]
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "mypod"},
            "spec": {
                "serviceAccountName": "s3-readonly-sa",
                "containers": [
                    {"name": "app", "image": "busybox:1.36.1", "command": ["sleep", "3600"]}
                ],
            },
        }
        subprocess.run(
            [*kubectl, "apply", "-f", "-"], input=json.dumps(pod), text=True, check=True, timeout=60
        )
        subprocess.run(
            [*kubectl, "wait", "--for=condition=Ready", "pod/mypod", "--timeout=300s"],
            check=True,
            timeout=320,
        )
        live = json.loads(
            subprocess.run(
                [*kubectl, "get", "pod", "mypod", "-o", "json"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        env = {e["name"]: e.get("value") for e in live["spec"]["containers"][0]["env"]}
        assert env["AWS_ROLE_ARN"] == ROLE_ARN and env["AWS_WEB_IDENTITY_TOKEN_FILE"] == TOKEN_FILE

        token = subprocess.run(
            [*kubectl, "exec", "mypod", "--", "cat", TOKEN_FILE],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["iss"] == KIND_ISSUER and claims["aud"] == [DEFAULT_AUDIENCE]
        assert claims["sub"] == "system:serviceaccount:default:s3-readonly-sa"

        common = {"region_name": ep["region"], "verify": ep["ca_bundle"]}
        sts = boto3.client(
            "sts",
            endpoint_url=ep["sts"],
            aws_access_key_id="unused",
            aws_secret_access_key="unused",
            **common,
        )
        creds = sts.assume_role_with_web_identity(
            RoleArn=ROLE_ARN, RoleSessionName="irsa-lab-kind-e2e", WebIdentityToken=token
        )["Credentials"]
        s3 = boto3.client(
            "s3",
            endpoint_url=ep["s3"],
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            **common,
        )
        assert BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]

        # Defect 3: the issuer's discovery URL verifies against oidc_ca_bundle.
        doc = cluster.fetch_json_anonymously(
            KIND_DISCOVERY_URL, Path(ep["oidc_ca_bundle"]).read_bytes()
        )
        assert doc["issuer"] == KIND_ISSUER

        # Defects 2 and 7: in the real container, the SDK reaches the stand-ins at the
        # pod-side address with the CA from the ConfigMap.
        aws_pod = with_lab_ca(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "awspod"},
                "spec": {
                    "serviceAccountName": "s3-readonly-sa",
                    "containers": [
                        {"name": "aws", "image": "amazon/aws-cli", "command": ["sleep", "3600"]}
                    ],
                },
            }
        )
        subprocess.run(
            [*kubectl, "apply", "-f", "-"],
            input=json.dumps(aws_pod),
            text=True,
            check=True,
            timeout=60,
        )
        subprocess.run(
            [*kubectl, "wait", "--for=condition=Ready", "pod/awspod", "--timeout=300s"],
            check=True,
            timeout=320,
        )

        def caller_arn(endpoints: dict[str, Any], wait_s: float = 0) -> str:
            # After a resume the stand-ins have a new CA; the kubelet refreshes the
            # mounted ConfigMap within about a minute.
            deadline = time.monotonic() + wait_s
            while True:
                p = exec_in_kind_pod(
                    endpoints,
                    namespace="default",
                    pod="awspod",
                    container=None,
                    argv=["aws", "sts", "get-caller-identity", "--output", "json"],
                )
                if p.returncode == 0 or time.monotonic() >= deadline:
                    break
                time.sleep(5)
            assert p.returncode == 0, p.stderr
            return str(json.loads(p.stdout)["Arn"])

        assert "assumed-role/AmazonEKSPodS3ReadOnlyAccessRole/" in caller_arn(ep)
        assert read_pod_file(ep, namespace="default", pod="awspod", path=TOKEN_FILE).count(".") == 2

        # Defect 5: stop the stand-ins (Ctrl-C), then resume the same cluster.
        lab.stop_aws()
        assert not (tmp_path / "endpoints.json").exists()
        lab = kind_up(tmp_path, seed=20240327, progress=print)
        assert any(step.startswith("resuming") for step in lab.steps)
        assert "assumed-role/AmazonEKSPodS3ReadOnlyAccessRole/" in caller_arn(lab.endpoints, 150)
    finally:
        kind_down(tmp_path, lab=lab)
    clusters = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True).stdout
    assert "irsa-lab" not in clusters.split()
