"""``kind up`` the second time: resume an existing cluster, never trust a stale
``endpoints.json``, never leave one behind, retry failed kubectl calls, and wait long
enough when detached (issue 15, defects 3, 5 and 8). Docker is faked (FakeTools)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_kind_e2e import FakeAws, FakeTools

from irsa_lab import cli
from irsa_lab.constants import KIND_DISCOVERY_URL, KIND_ISSUER
from irsa_lab.kind import cluster
from irsa_lab.kind.cluster import (
    UP_DEADLINE_S,
    KindError,
    KindLab,
    _until,
    kind_up,
    remove_stale_endpoints,
    step_timeouts,
    write_endpoints,
)
from irsa_lab.pki import LabCA

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeTools:
    monkeypatch.setattr(cluster, "_port_in_use", lambda host, port: False)
    return FakeTools(LabCA.create().cert_pem)


def _up(tmp_path: Path, fake: FakeTools, **kw: Any) -> KindLab:
    def fetch(url: str, ca_pem: bytes) -> dict[str, Any]:
        if url == KIND_DISCOVERY_URL:
            return {"issuer": KIND_ISSUER, "jwks_uri": "https://127.0.0.1:6443/openid/v1/jwks"}
        return dict(json.loads((tmp_path / "kind/keys/jwks.json").read_text()))

    kw.setdefault("start_aws", FakeAws)
    return kind_up(
        tmp_path,
        runner=fake,  # type: ignore[arg-type]
        checks=lambda: [],
        fetch_json=fetch,
        sleep=lambda s: None,
        **kw,
    )


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- defect 5: resume -----------------------------------------------------------------------
def test_kind_up_resumes_an_existing_cluster_instead_of_refusing(
    tmp_path: Path, fake: FakeTools
) -> None:
    fake.clusters = ["irsa-lab"]
    lab = _up(tmp_path, fake)
    words = [c[:3] for c in fake.calls]
    assert ["kind", "create", "cluster"] not in words
    assert ["docker", "start", "irsa-lab-control-plane"] in words
    assert ["kind", "export", "kubeconfig"] in words
    assert any("--dry-run=server" in c for c in fake.calls), "a resumed cluster is re-checked"
    assert json.loads((tmp_path / "endpoints.json").read_text()) == lab.endpoints
    assert lab.steps[1].startswith("resuming kind cluster 'irsa-lab'")


def test_a_resumed_cluster_keeps_its_webhook_certificate(tmp_path: Path, fake: FakeTools) -> None:
    first = _up(tmp_path, fake)
    first.stop_aws()
    applied_first = fake.applies[0]
    fake.clusters, fake.applies = ["irsa-lab"], []
    _up(tmp_path, fake)
    assert fake.applies[0] == applied_first, "the webhook's Secret and caBundle must not change"


# --- defect 8c: a stale endpoints.json is replaced, never merged ----------------------------
def test_a_stale_endpoints_json_is_replaced_not_merged(tmp_path: Path, fake: FakeTools) -> None:
    port = _closed_port()
    stale = {"backend": "kind", "sts": f"https://127.0.0.1:{port}", "left_over": "from before"}
    (tmp_path / "endpoints.json").write_text(json.dumps(stale))
    lab = _up(tmp_path, fake)
    written = json.loads((tmp_path / "endpoints.json").read_text())
    assert "left_over" not in written
    assert written == lab.endpoints
    assert written["sts"] == "https://127.0.0.1:1001"


def test_a_live_endpoints_json_stops_kind_up_before_anything_runs(
    tmp_path: Path, fake: FakeTools, listening: int
) -> None:
    live = {"backend": "embedded", "sts": f"https://127.0.0.1:{listening}"}
    (tmp_path / "endpoints.json").write_text(json.dumps(live))
    with pytest.raises(KindError, match="running"):
        _up(tmp_path, fake)
    assert fake.calls == []
    assert json.loads((tmp_path / "endpoints.json").read_text()) == live


def test_remove_stale_endpoints_probes_the_ports(tmp_path: Path, listening: int) -> None:
    path = tmp_path / "endpoints.json"
    assert remove_stale_endpoints(tmp_path) is False
    path.write_text(json.dumps({"imds": f"http://127.0.0.1:{listening}"}))
    with pytest.raises(KindError):
        remove_stale_endpoints(tmp_path)
    path.write_text(json.dumps({"imds": f"http://127.0.0.1:{_closed_port()}"}))
    assert remove_stale_endpoints(tmp_path) is True and not path.exists()


# --- defect 5: endpoints.json never points at closed ports ------------------------------------
def test_endpoints_json_is_private_and_goes_when_the_stand_ins_stop(
    tmp_path: Path, fake: FakeTools
) -> None:
    lab = _up(tmp_path, fake)
    path = tmp_path / "endpoints.json"
    assert path.stat().st_mode & 0o077 == 0, "it holds the admin's secret access key"
    aws = lab.aws
    assert isinstance(aws, FakeAws)
    lab.stop_aws()
    assert aws.stopped and not path.exists()


def test_stop_aws_leaves_an_endpoints_json_another_lab_wrote(
    tmp_path: Path, fake: FakeTools
) -> None:
    lab = _up(tmp_path, fake)
    write_endpoints(tmp_path, {"backend": "embedded", "sts": "https://127.0.0.1:9"})
    lab.stop_aws()
    assert json.loads((tmp_path / "endpoints.json").read_text())["backend"] == "embedded"


def test_a_failure_after_the_stand_ins_started_stops_them_and_writes_nothing(
    tmp_path: Path, fake: FakeTools
) -> None:
    started: list[FakeAws] = []

    def start(**kwargs: Any) -> FakeAws:
        started.append(FakeAws(**kwargs))
        # The CA ConfigMap apply is the only apply after this point.
        fake.fail_next["apply"] = 10**6
        return started[-1]

    with pytest.raises(KindError, match="connection refused") as err:
        _up(tmp_path, fake, start_aws=start)
    assert started and started[0].stopped
    assert not (tmp_path / "endpoints.json").exists()
    assert "`irsa-lab kind up` resumes it" in str(err.value)


# --- defect 3: the CA the issuer's discovery URL chains to ------------------------------------
def test_endpoints_name_the_cluster_ca_for_oidc_discovery(tmp_path: Path, fake: FakeTools) -> None:
    lab = _up(tmp_path, fake)
    path = Path(lab.endpoints["oidc_ca_bundle"])
    assert path.read_bytes() == fake.ca_pem, "the CA from the kind kubeconfig"
    assert path != Path(lab.endpoints["ca_bundle"])


# --- defect 7: the stand-ins where pods reach them ----------------------------------------------
def test_docker_desktop_pods_use_host_docker_internal_and_nothing_else_is_bound(
    tmp_path: Path, fake: FakeTools
) -> None:
    fake.docker_os = "Docker Desktop"
    lab = _up(tmp_path, fake)
    aws = lab.aws
    assert isinstance(aws, FakeAws)
    assert aws.kwargs["pod_host"] == "host.docker.internal" and aws.kwargs["pod_bind"] is None
    assert ["docker", "network", "inspect", "kind"] not in fake.calls


# --- defect 8a: _until retries a failed kubectl call --------------------------------------------
def test_until_retries_an_attempt_that_raises_until_it_succeeds() -> None:
    tries: list[int] = []

    def attempt() -> str | None:
        tries.append(1)
        if len(tries) < 3:
            raise KindError("`kubectl create --dry-run=server` failed (exit 1): EOF")
        return None

    assert _until(60, attempt, sleep=lambda s: None, interval=1) is None
    assert len(tries) == 3


def test_until_returns_the_last_failure_when_the_time_is_up() -> None:
    def attempt() -> str | None:
        raise KindError("the server is currently unable to handle the request")

    assert _until(0, attempt, sleep=lambda s: None, interval=1) == (
        "the server is currently unable to handle the request"
    )


def test_kind_up_survives_a_failed_dry_run_while_the_webhook_starts(
    tmp_path: Path, fake: FakeTools
) -> None:
    fake.fail_next["--dry-run=server"] = 2
    lab = _up(tmp_path, fake)
    assert lab.steps[-1] == "ready"
    assert sum("--dry-run=server" in c for c in fake.calls) == 4  # 2 failed, 1 unmutated, 1 ok


# --- defect 8b: the detached deadline covers every step -------------------------------------------
def test_the_detached_deadline_is_the_sum_of_the_step_timeouts() -> None:
    steps = step_timeouts()
    assert UP_DEADLINE_S == sum(steps.values())
    longest_waits = (
        cluster.CREATE_TIMEOUT_S
        + cluster.ROLLOUT_TIMEOUT_S
        + cluster.MUTATION_TIMEOUT_S
        + cluster.DISCOVERY_TIMEOUT_S
    )
    assert UP_DEADLINE_S > longest_waits


def test_kind_up_detach_waits_the_whole_deadline_before_giving_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import irsa_lab.kind.checks as checks

    now = [0.0]
    terminated: list[bool] = []

    class NeverReady:
        pid = 4242

        def poll(self) -> int | None:
            return None

        def terminate(self) -> None:
            terminated.append(True)

    monkeypatch.setattr(checks, "kind_checks", lambda: [])
    monkeypatch.setattr(cli.subprocess, "Popen", lambda *a, **k: NeverReady())
    monkeypatch.setattr(cli.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(cli.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    args = cli.build_parser().parse_args(["kind", "up", "--detach", "--state-dir", str(tmp_path)])
    with pytest.raises(cli.CliError, match="did not finish"):
        cli._kind_up_detached(tmp_path, args)
    assert terminated
    assert now[0] >= sum(step_timeouts().values())


# --- the foreground CLI: SIGTERM and SIGINT remove endpoints.json -----------------------------------
_CHILD = """
import json, socket, sys, time
from pathlib import Path
from irsa_lab import cli
from irsa_lab.kind import cluster

class Aws:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
    def stop(self):
        self.sock.close()

def fake_up(state_dir, **kw):
    aws = Aws()
    endpoints = {"backend": "kind", "issuer": "https://x",
                 "sts": f"https://127.0.0.1:{aws.sock.getsockname()[1]}"}
    cluster.write_endpoints(state_dir, endpoints)
    return cluster.KindLab(state_dir, endpoints, aws=aws)

cluster.kind_up = fake_up
sys.exit(cli.main(["kind", "up", "--state-dir", sys.argv[1]]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_kind_up_in_the_foreground_removes_endpoints_json_on_a_signal(
    tmp_path: Path, signum: int
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "lab.pid").exists():
            assert child.poll() is None, child.communicate()[0]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        endpoints = json.loads((tmp_path / "endpoints.json").read_text())
        assert cluster.endpoints_alive(endpoints)
        os.kill(child.pid, signum)
        out, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, out
    assert not (tmp_path / "endpoints.json").exists(), out
    assert not (tmp_path / "lab.pid").exists()
    assert "AWS stand-ins stopped" in out


def test_the_kind_manifests_stay_yaml_after_a_resume(tmp_path: Path, fake: FakeTools) -> None:
    _up(tmp_path, fake).stop_aws()
    fake.clusters = ["irsa-lab"]
    _up(tmp_path, fake)
    kinds = [d["kind"] for d in yaml.safe_load_all(fake.applies[-2])]
    assert "MutatingWebhookConfiguration" in kinds
