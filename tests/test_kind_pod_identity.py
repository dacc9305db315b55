"""EKS Pod Identity on the kind backend, without Docker (``irsa_lab.kind.pod_identity``).

What runs here: the webhook Deployment's flags and its ``hostPath`` directory, the agent's
pod-side listener and the URL pods are given, the node's DNAT script (run by ``sh`` with a
fake ``iptables``), the identities file's atomic replacement (the ``docker exec`` script
run locally), the wait on the webhook's log with a fake ``kubectl logs``, and ``kind up``
wiring them to a real AWS side. What the real node and webhook do with them is the e2e
test's (tests/test_kind_e2e.py, needs Docker).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.utils import ContainerMetadataFetcher
from kind_fixtures import GATEWAY, gateway_aws

from irsa_lab import constants as C
from irsa_lab.aws.eks.associations import Associations
from irsa_lab.kind import cluster
from irsa_lab.kind.manifests import webhook_args, webhook_manifests
from irsa_lab.kind.network import pod_endpoint_fields
from irsa_lab.kind.pod_identity import (
    AGENT_CHAIN,
    NODE_CONFIG_FILE,
    POD_AGENT_URL,
    ConfigLoads,
    ConfigLoadWaiter,
    NodeConfigSync,
    agent_route_script,
    config_loads,
    route_agent,
    write_config_argv,
)
from irsa_lab.pki import LabCA
from irsa_lab.stack import AwsHandle
from irsa_lab.webhook.container_credentials import parse_identities

LOADED = "I1130 21:00:00.000000       1 config.go:80] Successfully loaded container credentials config file"
EMPTY = "I1130 21:00:00.000000       1 config.go:70] Container credentials config file is empty, clearing cache"


# --- the webhook Deployment in Pod Identity mode ----------------------------------------------
@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    ca = LabCA.create("webhook CA")
    docs = webhook_manifests(ca=ca, serving=ca.issue(("pod-identity-webhook.x.svc",)))
    return next(d for d in docs if d["kind"] == "Deployment")


def _flags(argv: Sequence[str]) -> dict[str, str]:
    return dict(a.split("=", 1) for a in argv if "=" in a)


def test_the_webhook_watches_the_identities_file_and_injects_the_agents_eks_address(
    deployment: dict[str, Any],
) -> None:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    flags = _flags(container["command"])
    assert flags["--watch-container-credentials-config"] == NODE_CONFIG_FILE
    # the watcher matches events on the exact name given: absolute and clean (§5.3)
    assert (
        os.path.isabs(NODE_CONFIG_FILE) and os.path.normpath(NODE_CONFIG_FILE) == NODE_CONFIG_FILE
    )
    assert flags["--container-credentials-full-uri"] == "http://169.254.170.23/v1/credentials"


def test_the_files_directory_is_the_nodes_own_through_hostpath_not_a_configmap(
    deployment: dict[str, Any],
) -> None:
    pod = deployment["spec"]["template"]["spec"]
    folder = os.path.dirname(NODE_CONFIG_FILE)
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == folder]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["hostPath"] == {"path": folder, "type": "DirectoryOrCreate"}
    assert mount["readOnly"] is True
    # a ConfigMap's update is a ..data symlink swap, an event naming ..data (§5.3)
    assert not any("configMap" in v for v in pod["volumes"])


def test_webhook_args_leave_pod_identity_off_unless_asked_for_the_k8s_backend_adds_its_own() -> (
    None
):
    off = _flags(webhook_args())
    assert "--watch-container-credentials-config" not in off
    assert "--container-credentials-full-uri" not in off
    on = webhook_args(container_credentials=("/x/identities.json", "http://127.0.0.1:9/v1/c"))
    assert _flags(on)["--watch-container-credentials-config"] == "/x/identities.json"
    assert _flags(on)["--container-credentials-full-uri"] == "http://127.0.0.1:9/v1/c"


# --- where pods reach the agent -------------------------------------------------------------------
def test_the_agents_pod_side_url_keeps_its_path() -> None:
    urls = {
        "sts": "https://127.0.0.1:5001",
        "pod-identity-agent": "http://127.0.0.1:5009/v1/credentials",
    }
    out = pod_endpoint_fields(urls, host="172.18.0.1", ports={"pod-identity-agent": 6009})
    assert out["pod_identity_agent_pod"] == "http://172.18.0.1:6009/v1/credentials"
    assert out["sts_pod"] == "https://172.18.0.1:5001"
    desktop = pod_endpoint_fields(urls, host="host.docker.internal")
    assert desktop["pod_identity_agent_pod"] == "http://host.docker.internal:5009/v1/credentials"
    v6 = pod_endpoint_fields(urls, host="fd00::1", ports={"pod-identity-agent": 7})
    assert v6["pod_identity_agent_pod"] == "http://[fd00::1]:7/v1/credentials"


def test_botocore_refuses_the_gateway_over_http_so_pods_get_the_agents_eks_address() -> None:
    # Why the node forwards 169.254.170.23 instead of pods being given the gateway (§4.2).
    fetcher = ContainerMetadataFetcher()
    with pytest.raises(ValueError, match="Unsupported host '172.18.0.1'"):
        fetcher.retrieve_full_uri("http://172.18.0.1:41009/v1/credentials")
    assert fetcher._check_if_whitelisted_host("169.254.170.23")
    assert POD_AGENT_URL == C.CONTAINER_CREDENTIALS_FULL_URI


@pytest.fixture(scope="module")
def aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsHandle]:
    with gateway_aws(tmp_path_factory.mktemp("aws-pod-identity")) as handle:
        yield handle


def _get(url: str, host: str) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Host": host})  # noqa: S310 - http, the lab
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_the_agent_listens_for_pods_at_the_gateway_and_takes_its_eks_address_as_host(
    aws: AwsHandle,
) -> None:
    url = aws.endpoints["pod_identity_agent_pod"]
    assert url.startswith(f"http://{GATEWAY}:") and url.endswith("/v1/credentials")
    assert url != aws.endpoints["pod_identity_agent"]
    # After the node's DNAT the request still names 169.254.170.23: past the host check,
    # stopped at the missing token, as the real agent does.
    assert _get(url, "169.254.170.23") == (400, "Service account token cannot be empty\n")
    # Called by its gateway address the real agent answers 403, and so does this one.
    status, body = _get(url, url.split("/")[2])
    assert status == 403 and "Called agent through invalid address" in body


# --- the node's DNAT rule, run by sh with a fake iptables ---------------------------------------
@pytest.fixture
def fake_node(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A bin folder with ``iptables`` (logs its args; ``-C`` fails until ``-I`` ran) and
    ``getent`` (Docker Desktop's answer for host.docker.internal)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "iptables.log"
    (bin_dir / "iptables").write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {log}\n'
        'case "$*" in *" -C "*) grep -q -- " -I PREROUTING" ' + f"{log}" + " ;; esac\n"
    )
    (bin_dir / "getent").write_text(
        "#!/bin/sh\n"
        '[ "$2" = host.docker.internal ] && echo "192.168.65.254  STREAM host.docker.internal"\n'
    )
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return log, env


def _sh(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=30, check=False
    )


def test_the_dnat_rule_sends_the_agents_address_to_the_gateway_listener_once(
    fake_node: tuple[Path, dict[str, str]],
) -> None:
    log, env = fake_node
    script = agent_route_script("172.18.0.1", 41009)
    assert _sh(script, env).returncode == 0
    assert _sh(script, env).returncode == 0  # a resumed cluster: the chain is flushed first
    lines = log.read_text().splitlines()
    dnat = (
        f"-w -t nat -A {AGENT_CHAIN} -d 169.254.170.23/32 -p tcp --dport 80 "
        "-j DNAT --to-destination 172.18.0.1:41009"
    )
    assert lines.count(dnat) == 2
    assert lines.count(f"-w -t nat -F {AGENT_CHAIN}") == 2
    # the jump from PREROUTING is added once, however often the script runs
    assert lines.count(f"-w -t nat -I PREROUTING 1 -j {AGENT_CHAIN}") == 1
    assert lines.index(f"-w -t nat -F {AGENT_CHAIN}") < lines.index(dnat)


def test_on_docker_desktop_the_node_resolves_the_host_name_for_the_rule(
    fake_node: tuple[Path, dict[str, str]],
) -> None:
    log, env = fake_node
    assert _sh(agent_route_script("host.docker.internal", 5009), env).returncode == 0
    assert "--to-destination 192.168.65.254:5009" in log.read_text()
    unresolved = _sh(agent_route_script("nowhere.invalid", 5009), env)
    assert unresolved.returncode != 0 and "cannot resolve nowhere.invalid" in unresolved.stderr


def test_route_agent_runs_the_script_in_the_node_for_the_pod_side_url() -> None:
    calls: list[list[str]] = []

    def run(argv: Sequence[str], **kw: Any) -> str:
        calls.append(list(argv))
        return ""

    route_agent(
        run, node="irsa-lab-control-plane", pod_url="http://172.18.0.1:41009/v1/credentials"
    )
    (argv,) = calls
    assert argv[:5] == ["docker", "exec", "irsa-lab-control-plane", "sh", "-c"]
    assert argv[5] == agent_route_script("172.18.0.1", 41009)
    with pytest.raises(ValueError, match="no host and port"):
        route_agent(run, node="n", pod_url="http://172.18.0.1/v1/credentials")


# --- the identities file, replaced in the node by a rename ------------------------------------------
class LocalDocker:
    """Runs ``docker exec -i NODE sh -c SCRIPT`` here, with its stdin, and records it."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str | None]] = []
        self.events: list[str] = []

    def __call__(
        self, argv: Sequence[str], *, timeout: float, input: str | None = None, **kw: Any
    ) -> str:
        argv = list(argv)
        self.calls.append((argv, input))
        self.events.append("write")
        assert argv[:4] == ["docker", "exec", "-i", "irsa-lab-control-plane"]
        p = subprocess.run(argv[4:], input=input, capture_output=True, text=True, check=True)
        return p.stdout


def _associations() -> Associations:
    return Associations(
        cluster_name=C.CLUSTER_NAME,
        region=C.REGION,
        account_id=C.ACCOUNT_ID,
        wall_clock=lambda: 0.0,
    )


def test_the_sync_writes_the_identities_and_rewrites_them_on_every_change(tmp_path: Path) -> None:
    path = tmp_path / "pod-identity" / "identities.json"
    associations, docker = _associations(), LocalDocker()
    sync = NodeConfigSync(
        associations,
        docker,
        node="irsa-lab-control-plane",
        path=str(path),
        before_write=lambda: docker.events.append("mark"),
    ).start()
    assert parse_identities(path.read_bytes()) == frozenset()
    first = associations.create("team-a", "reader", C.ROLE_ARN)
    assert parse_identities(path.read_bytes()) == {("team-a", "reader")}
    assert sync.written == path.read_bytes() and sync.generation == 2
    associations.delete(first.association_id)
    assert parse_identities(path.read_bytes()) == frozenset()
    # the waiter counts the webhook's loads just before each replacement
    assert docker.events == ["mark", "write"] * 3
    sync.stop()
    associations.create("team-b", "writer", C.ROLE_ARN)
    assert parse_identities(path.read_bytes()) == frozenset() and sync.generation == 3


def test_each_write_is_a_rename_in_the_files_own_directory(tmp_path: Path) -> None:
    path = tmp_path / "pod-identity" / "identities.json"
    associations, docker = _associations(), LocalDocker()
    NodeConfigSync(associations, docker, node="irsa-lab-control-plane", path=str(path)).start()
    before = path.stat().st_ino
    associations.create("default", "app", C.ROLE_ARN)
    # a new inode at the path: replaced by rename(2), never rewritten in place
    assert path.stat().st_ino != before
    assert sorted(p.name for p in path.parent.iterdir()) == ["identities.json"]
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    script = write_config_argv("irsa-lab-control-plane", str(path))[-1]
    assert f"mv -f {path.parent}/.identities.json.tmp {path}" in script


# --- waiting for the reload: the webhook's log -------------------------------------------------------
class FakeLogs:
    """``kubectl logs deployment/... --prefix`` answering from a list of log texts in turn
    (the last one repeats); a text that is an exception is raised."""

    def __init__(self, *answers: str | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def __call__(self, args: Sequence[str], timeout: float) -> str:
        self.calls.append(list(args))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def _log(pod: str, *lines: str) -> str:
    return "".join(f"[pod/{pod}/pod-identity-webhook] {line}\n" for line in lines)


def test_config_loads_counts_both_load_lines_of_the_pod_the_log_came_from() -> None:
    logs = FakeLogs(_log("webhook-a", EMPTY, "I1130 other line", LOADED, LOADED))
    assert config_loads(logs) == ConfigLoads("webhook-a", 3)
    assert logs.calls == [
        [
            "--namespace",
            "pod-identity-webhook",
            "logs",
            "deployment/pod-identity-webhook",
            "--prefix",
        ]
    ]


def _waiter(logs: FakeLogs, *, running: bool = True) -> tuple[ConfigLoadWaiter, list[float]]:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    waiter = ConfigLoadWaiter(
        logs, running=lambda: running, sleep=sleep, monotonic=lambda: now[0], interval=0.5
    )
    return waiter, slept


def test_the_wait_returns_once_a_load_is_logged_after_the_write() -> None:
    one, two = _log("webhook-a", EMPTY), _log("webhook-a", EMPTY, LOADED)
    logs = FakeLogs(one, one, one, two)
    waiter, slept = _waiter(logs)
    waiter.mark()  # before the write: one load so far
    waiter.wait(timeout=10)
    assert slept == [0.5, 0.5] and len(logs.calls) == 4


def test_the_wait_times_out_naming_the_log_to_read() -> None:
    logs = FakeLogs(_log("webhook-a", LOADED))
    waiter, slept = _waiter(logs)
    waiter.mark()
    with pytest.raises(TimeoutError, match="kubectl -n pod-identity-webhook logs"):
        waiter.wait(timeout=2)
    assert sum(slept) == 2.0


def test_a_new_webhook_pod_that_loaded_the_file_counts_and_kubectl_failures_are_retried() -> None:
    logs = FakeLogs(
        _log("webhook-a", LOADED, LOADED),
        RuntimeError("container not ready"),
        _log("webhook-b"),
        _log("webhook-b", EMPTY),
    )
    waiter, slept = _waiter(logs)
    waiter.mark()
    waiter.wait(timeout=10)
    assert len(logs.calls) == 4 and len(slept) == 2


def test_a_stopped_webhook_is_not_waited_for() -> None:
    logs = FakeLogs(_log("webhook-a", LOADED))
    waiter, slept = _waiter(logs, running=False)
    waiter.wait(timeout=10)
    assert logs.calls == [] and slept == []


# --- kind up wires it all to a real AWS side ---------------------------------------------------------
class FakeCluster:
    """docker, kind and kubectl as a healthy Docker Desktop cluster answers them; the
    webhook's log gains a load line after each write of the identities file."""

    def __init__(self, ca_pem: bytes) -> None:
        self.ca_pem = ca_pem
        self.calls: list[list[str]] = []
        self.files: list[str] = []

    def run(self, argv: Any, *, timeout: float, input: str | None = None, fix: str = "") -> str:
        argv = list(argv)
        self.calls.append(argv)
        if argv[:3] == ["kind", "get", "clusters"]:
            return ""
        if argv[:3] == ["kind", "create", "cluster"]:
            kubeconfig = Path(argv[argv.index("--kubeconfig") + 1])
            ca = base64.b64encode(self.ca_pem).decode()
            entry = {"name": "kind-irsa-lab", "cluster": {"certificate-authority-data": ca}}
            kubeconfig.write_text(yaml.safe_dump({"clusters": [entry]}))
            return ""
        if argv[:2] == ["docker", "info"]:
            return json.dumps({"OperatingSystem": "Docker Desktop"})
        if argv[:3] == ["docker", "exec", "-i"]:
            self.files.append(input or "")
            return ""
        if "--dry-run=server" in argv:
            pod = yaml.safe_load(input or "")
            pod["spec"]["containers"][0]["env"] = [
                {"name": "AWS_ROLE_ARN", "value": C.ROLE_ARN},
                {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": "/t"},
            ]
            pod["spec"]["volumes"] = [{"name": "aws-iam-token", "projected": {}}]
            return json.dumps(pod)
        if "logs" in argv:
            return _log("webhook-a", *[LOADED] * len(self.files))
        if "jsonpath={.status.readyReplicas}" in argv:
            return "1"
        return ""


def test_kind_up_routes_the_agent_and_keeps_the_nodes_file_in_step_with_eks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cluster, "_port_in_use", lambda host, port: False)
    fake = FakeCluster(LabCA.create().cert_pem)

    def fetch(url: str, ca_pem: bytes) -> dict[str, Any]:
        if url == C.KIND_DISCOVERY_URL:
            return {"issuer": C.KIND_ISSUER, "jwks_uri": "https://127.0.0.1:6443/openid/v1/jwks"}
        return dict(json.loads((tmp_path / "kind/keys/jwks.json").read_text()))

    lab = cluster.kind_up(
        tmp_path, runner=fake, checks=lambda: [], fetch_json=fetch, sleep=lambda s: None
    )  # type: ignore[arg-type]
    try:
        ep = lab.endpoints
        agent_port = int(ep["pod_identity_agent"].split(":")[2].split("/")[0])
        assert ep["pod_identity_agent_pod"] == (
            f"http://host.docker.internal:{agent_port}/v1/credentials"
        )
        (route,) = [c for c in fake.calls if c[:2] == ["docker", "exec"] and "-i" not in c]
        assert route[2] == "irsa-lab-control-plane"
        assert route[5] == agent_route_script("host.docker.internal", agent_port)
        assert [json.loads(f) for f in fake.files] == [{"identities": []}]

        admin = boto3.session.Session(
            aws_access_key_id=ep["admin_access_key_id"],
            aws_secret_access_key=ep["admin_secret_access_key"],
            region_name=C.REGION,
        )
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "pods.eks.amazonaws.com"},
                    "Action": ["sts:AssumeRole", "sts:TagSession"],
                }
            ],
        }
        role = admin.client("iam", endpoint_url=ep["iam"], verify=ep["ca_bundle"]).create_role(
            RoleName="pod-identity-app", AssumeRolePolicyDocument=json.dumps(trust)
        )
        eks = admin.client("eks", endpoint_url=ep["eks"], verify=ep["ca_bundle"])
        eks.create_pod_identity_association(
            clusterName=C.CLUSTER_NAME,
            namespace="default",
            serviceAccount="app",
            roleArn=role["Role"]["Arn"],
        )
        assert json.loads(fake.files[-1]) == {
            "identities": [{"namespace": "default", "serviceAccount": "app"}]
        }
        # the EKS API answered after the webhook's log showed the reload
        kinds = ["logs" if "logs" in c else "write" for c in fake.calls if "logs" in c or "-i" in c]
        assert kinds == ["logs", "write", "logs", "write", "logs"]  # mark, write; mark, write, wait
    finally:
        lab.stop_aws()
    assert lab.pod_identity is None


def test_the_kind_control_waits_on_the_webhooks_log_and_skips_a_stopped_webhook(
    aws: AwsHandle, tmp_path: Path
) -> None:
    from irsa_lab.kind.control import KindControl

    ready = ["1"]
    logs = FakeLogs(_log("webhook-a"), _log("webhook-a", LOADED))
    calls: list[list[str]] = []

    def kubectl(args: Sequence[str], timeout: float) -> str:
        calls.append(list(args))
        if "jsonpath={.status.readyReplicas}" in args:
            return ready[0]
        return logs(args, timeout)

    control = KindControl(aws.side, kubectl=kubectl, signing_key_file=tmp_path / "sa.key")
    control.config_waiter.interval = 0.01
    control.wait_for_pod_identity_config(timeout=5)
    assert len(logs.calls) == 2
    ready[0] = "0"
    control.wait_for_pod_identity_config(timeout=5)
    assert len(logs.calls) == 2 and calls[-1][-1] == "jsonpath={.status.readyReplicas}"
