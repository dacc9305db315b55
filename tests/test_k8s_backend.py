"""The ``k8s`` backend, driven as a user would: the real etcd, kube-apiserver, controller
manager, scheduler and upstream webhook started by ``irsa-lab up --backend k8s --detach``,
then the article's walkthrough with kubectl and ``irsa-lab exec``, then ``irsa-lab down``
with nothing left running. Also the kind backend's AWS side (``start_aws_for_issuer``)
against the real API server, with no fakes: the path a kind cluster takes, minus Docker.

Skipped, naming ``make k8s-bin``, where the real programs are not built.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import yaml

from irsa_lab.backends import binaries

ROOT = Path(__file__).resolve().parents[1]
IRSA_LAB = [sys.executable, "-m", "irsa_lab.cli"]
ROLE_ARN = "arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole"

pytestmark = pytest.mark.skipif(
    bool(binaries.missing()),
    reason=f"{', '.join(binaries.missing())} not built: run `make k8s-bin` (needs Go)",
)


def run(
    args: list[str], *, env: dict[str, str] | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=ROOT
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def k8s(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    state = tmp_path_factory.mktemp("k8s-state")
    up = run(
        [*IRSA_LAB, "up", "--backend", "k8s", "--detach", "--state-dir", str(state)], timeout=240
    )
    assert "running in the background" in up.stdout
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        for line in run([*IRSA_LAB, "env", "--state-dir", str(state)]).stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = shlex.split(value)[0]
        env["HOME"] = str(tmp_path_factory.mktemp("home"))
        env["TZ"] = "UTC"
        # The kubectl built with the API server, so client and server are one version.
        kubectl = binaries.find("kubectl")
        assert kubectl is not None
        env["PATH"] = f"{kubectl.path.parent}:{env['PATH']}"
        yield state, env
    finally:
        run([*IRSA_LAB, "down", "--state-dir", str(state)], check=False)


def kubectl(
    env: dict[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run(["kubectl", *args], env=env, check=check)


def test_endpoints_name_the_backend_and_the_real_versions(k8s: tuple[Path, dict[str, str]]) -> None:
    state, env = k8s
    ep = json.loads((state / "endpoints.json").read_text())
    assert ep["backend"] == "k8s"
    assert ep["issuer"].startswith("https://oidc.eks.eu-west-1.amazonaws.com/id/")
    version = json.loads(kubectl(env, "version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == binaries.KUBERNETES_VERSION
    assert version["clientVersion"]["gitVersion"] == binaries.KUBERNETES_VERSION


def test_kubectl_describes_the_annotated_service_account(k8s: tuple[Path, dict[str, str]]) -> None:
    _, env = k8s
    out = kubectl(env, "describe", "sa", "s3-readonly-sa").stdout
    assert "Name:                s3-readonly-sa" in out
    assert f"eks.amazonaws.com/role-arn: {ROLE_ARN}" in out


def test_the_controller_manager_gives_each_new_namespace_its_default_service_account(
    k8s: tuple[Path, dict[str, str]],
) -> None:
    _, env = k8s
    kubectl(env, "create", "namespace", "irsa-lab-test")
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = kubectl(env, "-n", "irsa-lab-test", "get", "sa", "default", check=False)
            if got.returncode == 0:
                break
            time.sleep(0.2)
        assert got.returncode == 0, got.stderr
    finally:
        kubectl(env, "delete", "namespace", "irsa-lab-test", "--wait=false")


def test_kubectl_creates_a_token_the_real_api_server_signed_for_sts(
    k8s: tuple[Path, dict[str, str]],
) -> None:
    state, env = k8s
    ep = json.loads((state / "endpoints.json").read_text())
    token = kubectl(env, "create", "token", "s3-readonly-sa", "--audience", "sts.amazonaws.com")
    claims = jwt.decode(token.stdout.strip(), options={"verify_signature": False})
    assert claims["iss"] == ep["issuer"]
    assert claims["aud"] == ["sts.amazonaws.com"]
    assert claims["sub"] == "system:serviceaccount:default:s3-readonly-sa"


def test_the_articles_walkthrough_on_the_real_api_server_and_upstream_webhook(
    k8s: tuple[Path, dict[str, str]],
) -> None:
    state, env = k8s
    applied = kubectl(env, "apply", "-f", str(ROOT / "examples" / "mypod.yaml"))
    assert applied.stdout.strip() == "pod/mypod created"
    try:
        pod = yaml.safe_load(kubectl(env, "get", "pod", "mypod", "-o", "yaml").stdout)
        container = pod["spec"]["containers"][0]
        env_names = [e["name"] for e in container["env"]]
        assert env_names == [
            "AWS_STS_REGIONAL_ENDPOINTS",
            "AWS_DEFAULT_REGION",
            "AWS_REGION",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
        ]
        volumes = [v["name"] for v in pod["spec"]["volumes"]]
        assert volumes[0] == "aws-iam-token" and volumes[1].startswith("kube-api-access-")
        # The scheduler bound it to the lab's node, whose kubelet stand-in started it.
        assert pod["spec"]["nodeName"] == "ip-192-168-12-34.eu-west-1.compute.internal"
        kubectl(env, "wait", "--for=condition=Ready", "pod/mypod", "--timeout=60s")

        # The audit log holds the real webhook's JSONPatch for this pod.
        audit = (state / "k8s" / "audit" / "audit.log").read_text().splitlines()
        creates = [
            json.loads(line)
            for line in audit
            if '"verb":"create"' in line and '"name":"mypod"' in line
        ]
        annotations = {k: v for e in creates for k, v in (e.get("annotations") or {}).items()}
        patch = json.loads(annotations["patch.webhook.admission.k8s.io/round_0_index_0"])
        assert patch["configuration"] == "pod-identity-webhook"
        assert patch["webhook"] == "iam-for-pods.amazonaws.com"
        assert patch["patchType"] == "JSONPatch"

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
        assert identity["Arn"].startswith(
            "arn:aws:sts::123456789012:assumed-role/AmazonEKSPodS3ReadOnlyAccessRole/botocore-session-"
        )
        ls = run(
            [*IRSA_LAB, "exec", "--state-dir", str(state), "mypod", "--", "aws", "s3", "ls"],
            env=env,
        )
        assert ls.stdout == "2024-03-27 13:46:58 aws-codebuild-output-test\n"
    finally:
        started = time.monotonic()
        deleted = kubectl(env, "delete", "pod", "mypod")
        # kubectl 1.36 names the namespace; older ones print just 'pod "mypod" deleted'.
        assert deleted.stdout.strip() == 'pod "mypod" deleted from default namespace'
        # The kubelet stand-in confirms the deletion, as a kubelet does.
        assert time.monotonic() - started < 15


def test_kind_up_aws_side_assumes_the_role_with_a_token_the_real_api_server_signed(
    k8s: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    # What `irsa-lab kind up` runs on the host, with no fakes: start_aws_for_issuer, the
    # issuer-to-URL resolution and the CA STS trusts for discovery, against a real API
    # server whose issuer has a path (/id/<ID>) but serves discovery at its root.
    import boto3

    from irsa_lab.kind.cluster import cluster_ca_pem
    from irsa_lab.stack import start_aws_for_issuer

    state, env = k8s
    ep = json.loads((state / "endpoints.json").read_text())
    ca_pem = cluster_ca_pem(Path(ep["kubeconfig"]).read_text(), "irsa-lab")
    handle = start_aws_for_issuer(
        state_dir=tmp_path,
        issuer=ep["issuer"],
        discovery_url=ep["apiserver"] + "/.well-known/openid-configuration",
        ca_pem_for_discovery=ca_pem,
    )
    try:
        token = kubectl(env, "create", "token", "s3-readonly-sa", "--audience", "sts.amazonaws.com")
        sts = boto3.client(
            "sts",
            region_name="eu-west-1",
            endpoint_url=handle.endpoints["sts"],
            verify=handle.endpoints["ca_bundle"],
            aws_access_key_id="",
            aws_secret_access_key="",
        )
        resp = sts.assume_role_with_web_identity(
            RoleArn=ROLE_ARN, RoleSessionName="kind-path", WebIdentityToken=token.stdout.strip()
        )
        assert resp["AssumedRoleUser"]["Arn"] == (
            "arn:aws:sts::123456789012:assumed-role/AmazonEKSPodS3ReadOnlyAccessRole/kind-path"
        )
        assert resp["Provider"].startswith("arn:aws:iam::123456789012:oidc-provider/oidc.eks.")
    finally:
        handle.stop()


def test_the_real_api_server_accepts_every_kind_manifest(
    k8s: tuple[Path, dict[str, str]],
) -> None:
    # What `irsa-lab kind up` applies, judged by kube-apiserver v1.36.1 itself: schema,
    # defaulting, RBAC and admission (a server-side dry run changes nothing).
    from irsa_lab.kind.manifests import (
        discovery_rbac,
        issue_serving_cert,
        probe_pod,
        scenario_manifests,
        to_yaml,
        webhook_manifests,
    )
    from irsa_lab.pki import LabCA

    ca = LabCA.create()
    manifests = [
        *discovery_rbac(),
        *scenario_manifests(),
        *webhook_manifests(ca=ca, serving=issue_serving_cert(ca)),
        probe_pod(),
    ]
    # The backend's own configuration (clientConfig.url) has this name; the kind one
    # (clientConfig.service) is judged under another, so apply does not merge the two.
    for m in manifests:
        if m["kind"] == "MutatingWebhookConfiguration":
            m["metadata"]["name"] = "pod-identity-webhook-kind"
    _, env = k8s
    p = subprocess.run(
        ["kubectl", "apply", "--dry-run=server", "-o", "name", "-f", "-"],
        input=to_yaml(manifests),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    names = p.stdout.split()
    assert len(names) == len(manifests)
    assert "deployment.apps/pod-identity-webhook" in names
    assert (
        "mutatingwebhookconfiguration.admissionregistration.k8s.io/pod-identity-webhook-kind"
        in names
    )


def test_down_stops_every_process_and_frees_every_port(tmp_path: Path) -> None:
    run(
        [*IRSA_LAB, "up", "--backend", "k8s", "--detach", "--state-dir", str(tmp_path)], timeout=240
    )
    lab_pid = int((tmp_path / "lab.pid").read_text())
    pids = json.loads((tmp_path / "k8s" / "pids.json").read_text())
    assert set(pids) == {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "amazon-eks-pod-identity-webhook",
    }
    ep = json.loads((tmp_path / "endpoints.json").read_text())
    ports = [int(ep[k].rsplit(":", 1)[1].split("/")[0]) for k in ("apiserver", "webhook", "sts")]
    run([*IRSA_LAB, "down", "--state-dir", str(tmp_path)])
    for pid in [lab_pid, *pids.values()]:
        assert not _alive(pid), f"pid {pid} still runs"
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    assert not (tmp_path / "k8s" / "etcd").exists()
    assert not (tmp_path / "endpoints.json").exists()


def test_a_missing_program_is_one_line_naming_make_k8s_bin(tmp_path: Path) -> None:
    env = {**os.environ, "IRSA_LAB_BIN_DIR": str(tmp_path / "empty"), "IRSA_LAB_BACKEND": "k8s"}
    env.pop("KUBEBUILDER_ASSETS", None)
    result = run([*IRSA_LAB, "up", "--state-dir", str(tmp_path / "s")], env=env, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "kube-apiserver" in line and "`make k8s-bin`" in line


def test_an_etcd_data_dir_left_behind_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    (tmp_path / "k8s" / "etcd" / "member").mkdir(parents=True)
    result = run([*IRSA_LAB, "up", "--backend", "k8s", "--state-dir", str(tmp_path)], check=False)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "etcd data dir is left behind" in line and "irsa-lab down" in line
    run([*IRSA_LAB, "down", "--state-dir", str(tmp_path)])
    assert not (tmp_path / "k8s" / "etcd").exists()


def test_kubebuilder_assets_supply_kube_apiserver_and_etcd(tmp_path: Path) -> None:
    for name in ("kube-apiserver", "etcd"):
        found = binaries.find(name)
        assert found is not None
        os.symlink(found.path, tmp_path / name)
    old = os.environ.get("KUBEBUILDER_ASSETS")
    os.environ["KUBEBUILDER_ASSETS"] = str(tmp_path)
    try:
        for name in ("kube-apiserver", "etcd"):
            found = binaries.find(name)
            assert found is not None and found.source == "KUBEBUILDER_ASSETS"
        # The webhook is never taken from there: envtest does not ship it.
        webhook = binaries.find("amazon-eks-pod-identity-webhook")
        assert webhook is not None and webhook.source == "cache"
    finally:
        if old is None:
            del os.environ["KUBEBUILDER_ASSETS"]
        else:
            os.environ["KUBEBUILDER_ASSETS"] = old


def test_a_second_build_does_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert binaries.build() == []
    out = capsys.readouterr().out
    assert out.count("up to date") == len(binaries.PROGRAMS)


def test_a_port_in_use_is_one_line_naming_the_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from irsa_lab.backends import k8s as k8s_mod

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    taken = holder.getsockname()[1]
    calls = iter(range(100))
    real_free_port = k8s_mod._free_port

    def free_port() -> int:
        # etcd's two ports, then the API server's: that one is taken.
        return taken if next(calls) == 2 else real_free_port()

    monkeypatch.setattr(k8s_mod, "_free_port", free_port)
    try:
        with pytest.raises(k8s_mod.K8sError) as err:
            k8s_mod.K8sLab(state_dir=tmp_path).start()
    finally:
        holder.close()
    (line,) = str(err.value).splitlines()
    assert f"kube-apiserver could not listen on 127.0.0.1:{taken}: the port is in use" in line
    assert not (tmp_path / "k8s" / "etcd").exists()  # what started was stopped


def test_a_notebook_gets_the_k8s_backend_from_one_call(tmp_path: Path) -> None:
    import irsa_lab
    from irsa_lab.session import reset_lab

    reset_lab()
    lab = irsa_lab.lab("k8s", state_dir=tmp_path)
    try:
        assert lab.backend == "k8s"
        names = {
            sa.metadata.name for sa in lab.core.list_namespaced_service_account("default").items
        }
        assert names == {"default", "s3-readonly-sa"}
        pids = json.loads((tmp_path / "k8s" / "pids.json").read_text())
    finally:
        reset_lab()
    assert not any(_alive(pid) for pid in pids.values())
