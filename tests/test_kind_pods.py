"""The kind in-pod story without Docker (issue 15, defects 2 and 7): where pods reach the
stand-ins, the stand-ins really listening and serving TLS there, the CA ConfigMap and
its mount judged by a real kube-apiserver, and ``kubectl exec`` command lines checked
with a fake ``kubectl`` on PATH. The first real run on kind is tests/test_kind_e2e.py's
``kind``-marked walkthrough."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kind_fixtures import GATEWAY, gateway_aws

from irsa_lab.backends import binaries
from irsa_lab.constants import KIND_DISCOVERY_URL, KIND_ISSUER, NAMESPACE, ROLE_ARN
from irsa_lab.kind.exec import exec_in_kind_pod, kind_exec_argv, pod_env, read_pod_file
from irsa_lab.kind.manifests import probe_pod, to_yaml, why_not_mutated
from irsa_lab.kind.network import (
    CA_CONFIGMAP,
    POD_CA_BUNDLE,
    POD_CA_DIR,
    ca_configmap,
    gateway_of,
    pod_network,
    with_lab_ca,
)
from irsa_lab.pki import LabCA
from irsa_lab.stack import AwsHandle, start_aws_for_issuer

# A second loopback address stands in for the kind network's gateway: an address of
# this host other than 127.0.0.1, as the docker bridge's is.


# --- where pods reach the host -----------------------------------------------------------------
def _docker(os_name: str, networks: list[dict[str, Any]]) -> Any:
    calls: list[list[str]] = []

    def run(argv: list[str], **_kw: Any) -> str:
        calls.append(list(argv))
        if argv[:2] == ["docker", "info"]:
            return json.dumps({"OperatingSystem": os_name})
        if argv[:3] == ["docker", "network", "inspect"]:
            return json.dumps(networks)
        raise AssertionError(argv)

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_on_linux_pods_reach_the_kind_networks_ipv4_gateway_and_it_is_bound() -> None:
    nets = [
        {
            "IPAM": {
                "Config": [
                    {"Subnet": "fc00:f853:ccd:e793::/64", "Gateway": "fc00:f853:ccd:e793::1"},
                    {"Subnet": "172.19.0.0/16", "Gateway": "172.19.0.1"},
                ]
            }
        }
    ]
    net = pod_network(_docker("Debian GNU/Linux 12 (bookworm)", nets))
    assert (net.host, net.bind) == ("172.19.0.1", "172.19.0.1")


def test_on_docker_desktop_pods_use_host_docker_internal_without_a_new_listener() -> None:
    run = _docker("Docker Desktop", [])
    net = pod_network(run)
    assert (net.host, net.bind) == ("host.docker.internal", None)
    assert run.calls == [["docker", "info", "--format", "{{json .}}"]]


def test_a_kind_network_without_an_ipv4_gateway_is_an_error() -> None:
    assert gateway_of({"IPAM": {"Config": [{"Gateway": "fc00::1"}]}}) is None
    with pytest.raises(ValueError, match="no IPv4 gateway"):
        pod_network(_docker("Ubuntu 24.04", [{"IPAM": {"Config": []}}]))


# --- the stand-ins, really listening for pods ----------------------------------------------
@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsHandle]:
    with gateway_aws(tmp_path_factory.mktemp("aws-for-pods")) as handle:
        yield handle


def test_the_pod_side_urls_name_the_gateway_on_ports_of_their_own(aws: AwsHandle) -> None:
    ep = aws.endpoints
    for key in ("sts", "iam", "s3"):
        assert ep[f"{key}_pod"].startswith(f"https://{GATEWAY}:"), ep[f"{key}_pod"]
        assert ep[key].startswith("https://127.0.0.1:")
    assert ep["imds_pod"].startswith(f"http://{GATEWAY}:")
    assert ep["ca_bundle_pod"] == POD_CA_BUNDLE


def test_only_the_pod_facing_stand_ins_listen_on_the_gateway(aws: AwsHandle) -> None:
    for name, served in aws.loop.served().items():
        hosts = {a[0] for a in served.server.addresses}
        expected = (
            {"127.0.0.1", GATEWAY}
            if name in ("sts", "iam", "s3", "imds-pod", "pod-identity-agent")
            else {"127.0.0.1"}
        )
        assert hosts == expected, name


def test_sts_at_the_gateway_verifies_against_the_lab_ca_with_its_address(aws: AwsHandle) -> None:
    import boto3

    ep = aws.endpoints
    sts = boto3.client(
        "sts",
        endpoint_url=ep["sts_pod"],
        region_name=ep["region"],
        verify=ep["ca_bundle"],
        aws_access_key_id=ep["admin_access_key_id"],
        aws_secret_access_key=ep["admin_secret_access_key"],
    )
    assert sts.get_caller_identity()["Account"] == ep["account_id"]


def test_imds_at_the_gateway_is_the_pods_imds(aws: AwsHandle) -> None:
    req = urllib.request.Request(  # noqa: S310 - an http URL from endpoints
        aws.endpoints["imds_pod"] + "/latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - http, as on EC2
        assert resp.status == 200 and resp.read()


def test_stopping_the_stand_ins_closes_the_gateway_listeners_too(tmp_path: Path) -> None:
    handle = start_aws_for_issuer(
        state_dir=tmp_path,
        issuer=KIND_ISSUER,
        discovery_url=KIND_DISCOVERY_URL,
        ca_pem_for_discovery=LabCA.create().cert_pem,
        pod_host=GATEWAY,
        pod_bind=GATEWAY,
    )
    port = int(handle.endpoints["sts_pod"].rsplit(":", 1)[1])
    socket.create_connection((GATEWAY, port), timeout=5).close()
    handle.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((GATEWAY, port), timeout=5).close()


def test_without_a_pod_host_everything_stays_on_loopback(tmp_path: Path) -> None:
    handle = start_aws_for_issuer(
        state_dir=tmp_path,
        issuer=KIND_ISSUER,
        discovery_url=KIND_DISCOVERY_URL,
        ca_pem_for_discovery=LabCA.create().cert_pem,
    )
    try:
        for name, served in handle.loop.served().items():
            assert {a[0] for a in served.server.addresses} == {"127.0.0.1"}, name
        assert not any(k.endswith("_pod") and k != "imds_pod" for k in handle.endpoints)
        ctx = ssl.create_default_context(cafile=handle.endpoints["ca_bundle"])
        with pytest.raises(ssl.SSLCertVerificationError):
            # The certificate names 127.0.0.1 and localhost only.
            with ctx.wrap_socket(socket.socket(), server_hostname=GATEWAY) as s:
                s.connect(("127.0.0.1", int(handle.endpoints["sts"].rsplit(":", 1)[1])))
    finally:
        handle.stop()


# --- kubectl exec, with a fake kubectl ------------------------------------------------------------
ENDPOINTS = {
    "backend": "kind",
    "kubeconfig": "/state/kubeconfig",
    "sts": "https://127.0.0.1:40001",
    "sts_pod": "https://172.18.0.1:41001",
    "iam": "https://127.0.0.1:40002",
    "iam_pod": "https://172.18.0.1:41002",
    "s3": "https://127.0.0.1:40003",
    "s3_pod": "https://172.18.0.1:41003",
    "imds": "http://127.0.0.1:40004",
    "imds_pod": "http://172.18.0.1:41004",
    "ca_bundle": "/state/ca.crt",
    "ca_bundle_pod": POD_CA_BUNDLE,
}


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``kubectl`` that prints its argv as JSON, or a file's text for ``-- cat PATH``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "kubectl"
    script.write_text(
        "#!/usr/bin/env python3\n"
        "import json, sys\n"
        "argv = sys.argv[1:]\n"
        "rest = argv[argv.index('--') + 1:]\n"
        "if rest[:1] == ['cat']:\n"
        "    if rest[1] == '/missing':\n"
        "        sys.stderr.write('cat: /missing: No such file or directory\\n')\n"
        "        sys.exit(1)\n"
        "    sys.stdout.write('token-from-' + rest[1])\n"
        "    sys.exit(0)\n"
        "print(json.dumps(argv))\n"
        "sys.exit(int(dict(a.split('=', 1) for a in rest if '=' in a).get('EXIT', 0)))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def test_exec_runs_in_the_container_with_the_pod_side_settings(fake_kubectl: Path) -> None:
    p = exec_in_kind_pod(
        ENDPOINTS,
        namespace="default",
        pod="mypod",
        container="app",
        argv=["aws", "sts", "get-caller-identity"],
    )
    assert p.returncode == 0, p.stderr
    argv = json.loads(p.stdout)
    assert argv[:7] == ["--kubeconfig", "/state/kubeconfig", "exec", "-n", "default", "mypod", "-c"]
    rest = argv[argv.index("--") + 1 :]
    assert rest[0] == "env" and rest[-3:] == ["aws", "sts", "get-caller-identity"]
    env = dict(a.split("=", 1) for a in rest[1:-3])
    assert env == {
        "AWS_ENDPOINT_URL_STS": "https://172.18.0.1:41001",
        "AWS_ENDPOINT_URL_IAM": "https://172.18.0.1:41002",
        "AWS_ENDPOINT_URL_S3": "https://172.18.0.1:41003",
        "AWS_CA_BUNDLE": POD_CA_BUNDLE,
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://172.18.0.1:41004",
    }
    assert "127.0.0.1" not in p.stdout, "inside a container 127.0.0.1 is the pod itself"


def test_exec_passes_the_commands_exit_code_and_extra_env_wins(fake_kubectl: Path) -> None:
    p = exec_in_kind_pod(
        ENDPOINTS,
        namespace="team-a",
        pod="p",
        container=None,
        argv=["true"],
        extra_env={"EXIT": "3", "AWS_CA_BUNDLE": "/elsewhere.pem"},
    )
    assert p.returncode == 3
    argv = json.loads(p.stdout)
    assert "-c" not in argv and argv[3:6] == ["-n", "team-a", "p"]
    assert "AWS_CA_BUNDLE=/elsewhere.pem" in argv
    assert f"AWS_CA_BUNDLE={POD_CA_BUNDLE}" not in argv


def test_read_pod_file_cats_inside_the_container(fake_kubectl: Path) -> None:
    token_file = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
    text = read_pod_file(ENDPOINTS, namespace="default", pod="mypod", path=token_file)
    assert text == "token-from-" + token_file
    with pytest.raises(FileNotFoundError, match="No such file"):
        read_pod_file(ENDPOINTS, namespace="default", pod="mypod", path="/missing")


def test_cat_gets_no_lab_settings_and_old_endpoints_get_none_guessed() -> None:
    argv = kind_exec_argv(
        ENDPOINTS, namespace="d", pod="p", container=None, argv=["cat", "/f"], with_lab_env=False
    )
    assert argv[-3:] == ["--", "cat", "/f"]
    old = {k: v for k, v in ENDPOINTS.items() if not k.endswith("_pod")}
    assert pod_env(old) == {}


# --- the CA ConfigMap and its mount, judged by a real kube-apiserver ----------------------------
@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if binaries.missing():
        pytest.skip(f"{', '.join(binaries.missing())} not built: run `make k8s-bin` (needs Go)")
    from irsa_lab.backends.k8s import K8sLab

    with K8sLab(state_dir=tmp_path_factory.mktemp("k8s-for-kind")) as lab:
        yield lab


def _kubectl(lab: Any, *args: str, input: str | None = None) -> str:
    kubectl = binaries.find("kubectl")
    assert kubectl is not None
    p = subprocess.run(
        [str(kubectl.path), "--kubeconfig", str(lab.state_dir / "kubeconfig"), *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_the_ca_configmap_and_a_probe_pod_mounting_it_pass_a_real_api_server(k8s: Any) -> None:
    ca = LabCA.create()
    pod = with_lab_ca(probe_pod())
    assert with_lab_ca(pod) == pod, "mounting twice changes nothing"

    def dry_run(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = json.loads(
            _kubectl(
                k8s, "create", "--dry-run=server", "-o", "json", "-f", "-", input=to_yaml(manifests)
            )
        )
        return list(out.get("items", [out]))

    (cm,) = dry_run([ca_configmap(ca.cert_pem)])
    assert cm["metadata"]["name"] == CA_CONFIGMAP and cm["metadata"]["namespace"] == NAMESPACE
    assert cm["data"]["ca.crt"] == ca.cert_pem.decode()

    (admitted,) = dry_run([pod])
    # The real webhook mutated it (kind up's probe check) and kept the CA mount.
    assert why_not_mutated(admitted, ROLE_ARN) is None
    (container,) = admitted["spec"]["containers"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[POD_CA_DIR]["readOnly"] is True
    volumes = {v["name"]: v for v in admitted["spec"]["volumes"]}
    assert volumes["irsa-lab-ca"]["configMap"] == {
        "name": CA_CONFIGMAP,
        "optional": True,
        "defaultMode": 0o644,
    }


def test_a_pod_at_the_gateway_assumes_the_role_with_a_token_the_real_api_server_signed(
    k8s: Any, tmp_path: Path
) -> None:
    # What a pod's SDK does on kind, minus Docker: STS at the pod-side address, verified
    # with the CA the ConfigMap carries, with a token kube-apiserver signed.
    import boto3

    from irsa_lab.kind.cluster import cluster_ca_pem

    ep = k8s.endpoints.as_dict()
    handle = start_aws_for_issuer(
        state_dir=tmp_path,
        issuer=ep["issuer"],
        discovery_url=ep["apiserver"] + "/.well-known/openid-configuration",
        ca_pem_for_discovery=cluster_ca_pem(Path(ep["kubeconfig"]).read_text(), "irsa-lab"),
        pod_host=GATEWAY,
        pod_bind=GATEWAY,
    )
    try:
        token = _kubectl(
            k8s, "create", "token", "s3-readonly-sa", "--audience", "sts.amazonaws.com"
        )
        pod_ca = tmp_path / "as-mounted-ca.crt"  # what the ConfigMap would carry
        pod_ca.write_text(
            ca_configmap(Path(handle.endpoints["ca_bundle"]).read_bytes())["data"]["ca.crt"]
        )
        sts = boto3.client(
            "sts",
            region_name="eu-west-1",
            endpoint_url=handle.endpoints["sts_pod"],
            verify=str(pod_ca),
            aws_access_key_id="",
            aws_secret_access_key="",
        )
        resp = sts.assume_role_with_web_identity(
            RoleArn=ROLE_ARN, RoleSessionName="kind-pod", WebIdentityToken=token.strip()
        )
        assert resp["AssumedRoleUser"]["Arn"].endswith("/AmazonEKSPodS3ReadOnlyAccessRole/kind-pod")
    finally:
        handle.stop()


def test_with_lab_ca_renders_as_yaml_kubectl_reads() -> None:
    pod = with_lab_ca(probe_pod())
    assert yaml.safe_load(to_yaml([pod]))["spec"]["volumes"][0]["name"] == "irsa-lab-ca"
