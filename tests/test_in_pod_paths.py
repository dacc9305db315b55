"""In-pod paths resolve: ``irsa-lab exec mypod -- cat <the pod's token path>`` prints the
token, by a mount namespace where the kernel allows it and by rewriting elsewhere; and
a pod without a role gets the node's region, as the AWS CLI v2 gets it from IMDS on EKS.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from irsa_lab import constants as C
from irsa_lab.backends import binaries
from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.kube.container import (
    MOUNT_NAMESPACE,
    MOUNTS_ENV,
    REWRITE,
    ExecPlan,
    Mechanism,
    PodProcess,
    exec_mechanism,
    run,
)
from irsa_lab.lessons.without_irsa import POD_WITHOUT_ROLE
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab

ROOT = Path(__file__).resolve().parents[1]
MYPOD = yaml.safe_load((ROOT / "examples" / "mypod.yaml").read_text())
CAT_TOKEN = ["cat", C.TOKEN_FILE]

needs_mount_namespace = pytest.mark.skipif(
    not exec_mechanism({}).mounts,
    reason=f"no mount namespace here ({exec_mechanism({}).reason}): run on Linux with "
    "unprivileged user namespaces allowed (`unshare -Urm true` must succeed; on Ubuntu "
    "24.04: `sysctl kernel.apparmor_restrict_unprivileged_userns=0`)",
)


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[Lab]:
    stack = EmbeddedLab(
        state_dir=tmp_path / "state", seed=DEFAULT_SEED, clock=ManualClock(LAB_EPOCH)
    ).start()
    handle = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    try:
        yield handle
    finally:
        handle.close()


def _cli(lab: Lab, *args: str) -> int:
    from irsa_lab import cli

    # `irsa-lab exec` in this process, against the lab this process serves.
    (lab.state_dir / "lab.pid").write_text(f"{os.getpid()}\n")
    return cli.main(["exec", "--state-dir", str(lab.state_dir), *args])


def _notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("irsa-lab: ")]


# --- the pod's token path, through exec ---------------------------------------------------


def test_irsa_lab_exec_cat_of_the_pods_token_path_prints_the_token(
    lab: Lab, capfd: pytest.CaptureFixture[str]
) -> None:
    lab.create_pod(MYPOD)
    capfd.readouterr()
    assert _cli(lab, "mypod", "--", *CAT_TOKEN) == 0
    out, err = capfd.readouterr()
    assert out == lab.read_token()
    assert out.count(".") == 2  # a JWS, not an error text
    mechanism = [n for n in _notes(err) if n.startswith("irsa-lab: mechanism: ")]
    expected = "mount namespace" if exec_mechanism().mounts else "path rewriting"
    assert len(mechanism) == 1 and expected in mechanism[0]


def test_lab_exec_cat_of_the_pods_token_path_equals_read_token(lab: Lab) -> None:
    lab.create_pod(MYPOD)
    done = lab.exec("mypod", CAT_TOKEN)
    assert done.returncode == 0, done.stderr
    assert done.stdout == lab.read_token()
    assert isinstance(done, PodProcess)
    assert done.notes[0] == done.mechanism.note()


@needs_mount_namespace
def test_in_the_mount_namespace_the_pod_keeps_its_paths_read_only_and_the_host_is_untouched(
    lab: Lab,
) -> None:
    lab.create_pod(MYPOD)
    run_dir = Path("/var/run").resolve()
    before = sorted(os.listdir(run_dir))
    script = (
        "import json, os\n"
        "path = os.environ['AWS_WEB_IDENTITY_TOKEN_FILE']\n"
        "try:\n"
        "    open(path + '.new', 'w')\n"
        "    wrote = 'yes'\n"
        "except OSError as exc:\n"
        "    wrote = exc.strerror\n"
        "print(json.dumps({'path': path, 'wrote': wrote, 'run': sorted(os.listdir('/var/run')),\n"
        "    'sa': sorted(os.listdir('/var/run/secrets/kubernetes.io/serviceaccount'))}))\n"
    )
    done = lab.exec("mypod", ["python", "-c", script])
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert isinstance(done, PodProcess) and done.mechanism.name == MOUNT_NAMESPACE
    assert seen["path"] == C.TOKEN_FILE  # the pod's own path, as on EKS
    host = str(lab.volume_path(lab.get_pod("mypod")))
    assert any(
        n.startswith(f"AWS_WEB_IDENTITY_TOKEN_FILE={C.TOKEN_FILE}:") and host in n
        for n in done.notes
    )
    assert seen["wrote"] == "Read-only file system"  # the kubelet mounts it read-only
    assert {"ca.crt", "namespace", "token"} <= set(seen["sa"])
    # What was under /run stays visible inside (only the mount points are added) ...
    assert set(before) <= set(seen["run"])
    # ... and nothing was created on the host.
    assert sorted(os.listdir(run_dir)) == before


@needs_mount_namespace
def test_a_mount_the_namespace_cannot_make_falls_back_to_rewriting_before_anything_ran(
    tmp_path: Path,
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "token").write_text("the-token")
    target = f"/irsa-lab-test-{os.getpid()}"  # directly under /: not supported
    assert not Path(target).exists()
    plan = ExecPlan("c", {"TOKEN": f"{target}/token"}, {target: volume})
    seen: list[str] = []
    done = run(
        plan,
        ["sh", "-c", f'cat "$TOKEN" {target}/token; echo ran >> {tmp_path}/count'],
        extra_env={},
        mechanism=Mechanism(MOUNT_NAMESPACE, "test"),
        notify=seen.append,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "the-tokenthe-token"  # via the env and via the argument
    assert (tmp_path / "count").read_text() == "ran\n"  # the command ran once
    assert done.mechanism.name == REWRITE
    assert "mount namespace could not be set up" in done.mechanism.reason
    assert seen == done.notes and seen[0].startswith("mechanism: mount namespace")
    assert any(n.startswith("mechanism: path rewriting") for n in seen)
    assert not Path(target).exists()


# --- the fallback: rewriting, forced with IRSA_LAB_EXEC_MOUNTS=0 -----------------------

REFUSED_CHILD = """
import json, sys
from pathlib import Path
from irsa_lab.kube.container import ExecPlan, exec_mechanism, run
mechanism = exec_mechanism()
plan = ExecPlan("c", {}, {"/var/run/secrets/x": Path(sys.argv[1])})
done = run(plan, ["cat", "/var/run/secrets/x/token"], extra_env={}, timeout=30)
print(json.dumps({"name": mechanism.name, "reason": mechanism.reason, "out": done.stdout}))
"""


@needs_mount_namespace
@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux's unshare")
def test_where_user_namespaces_are_refused_the_probe_picks_rewriting(tmp_path: Path) -> None:
    # A user namespace whose own limit on nested user namespaces is 0 refuses them as
    # Ubuntu 24.04's AppArmor default does for unprivileged programs; the host is untouched.
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "token").write_text("the-token")
    script = f'echo 0 > /proc/sys/user/max_user_namespaces && exec "{sys.executable}" -c "$0" "$1"'
    done = subprocess.run(
        ["unshare", "-Ur", "sh", "-c", script, REFUSED_CHILD, str(volume)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["name"] == REWRITE
    assert seen["reason"].startswith("user namespaces are refused here: unshare:")
    assert seen["out"] == "the-token"


def test_forced_fallback_rewrites_the_pods_paths_in_arguments_and_env(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(MOUNTS_ENV, "0")
    lab.create_pod(MYPOD)
    host_token = str(lab.token_path())

    done = lab.exec("mypod", CAT_TOKEN)
    assert done.returncode == 0, done.stderr
    assert done.stdout == lab.read_token()
    assert isinstance(done, PodProcess) and done.mechanism.name == REWRITE
    assert done.args[1] == host_token  # the argument now names the host file
    assert any("argument 1" in n and host_token in n for n in done.notes)
    assert any("AWS_WEB_IDENTITY_TOKEN_FILE" in n and host_token in n for n in done.notes)
    env = lab.exec("mypod", ["sh", "-c", "echo $AWS_WEB_IDENTITY_TOKEN_FILE"])
    assert env.stdout.strip() == host_token

    capfd.readouterr()
    assert _cli(lab, "mypod", "--", *CAT_TOKEN) == 0
    out, err = capfd.readouterr()
    assert out == lab.read_token()
    notes = _notes(err)
    assert notes[0].startswith(f"irsa-lab: mechanism: path rewriting ({MOUNTS_ENV}=0 asks")
    assert any("argument 1" in n for n in notes)


def test_a_path_the_command_builds_itself_is_not_rewritten_by_the_fallback(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The documented limit of rewriting (docs/in-pod.md): only whole spellings move.
    monkeypatch.setenv(MOUNTS_ENV, "0")
    lab.create_pod(MYPOD)
    done = lab.exec("mypod", ["sh", "-c", "cd /var/run/secrets 2>/dev/null || echo missing"])
    assert done.stdout.strip() == ("" if Path("/var/run/secrets").is_dir() else "missing")


# --- a pod without a role: the node's region and the node's role ---------------------------


def test_a_pod_without_a_role_gets_the_nodes_region_and_the_node_role(
    lab: Lab, capfd: pytest.CaptureFixture[str]
) -> None:
    stored = lab.create_pod(POD_WITHOUT_ROLE)
    env = [e["name"] for e in stored["spec"]["containers"][0].get("env") or []]
    assert C.ENV_REGION not in env and C.ENV_DEFAULT_REGION not in env  # not mutated
    capfd.readouterr()
    code = _cli(lab, "norole-pod", "--", "aws", "sts", "get-caller-identity")
    out, err = capfd.readouterr()
    assert code == 0, err
    arn = json.loads(out)["Arn"]
    assert arn.startswith(f"arn:aws:sts::{C.ACCOUNT_ID}:assumed-role/{C.NODE_ROLE_NAME}/i-")
    assert any(f"{C.ENV_DEFAULT_REGION}={C.REGION} added" in n for n in _notes(err))


def test_a_mutated_pod_keeps_its_own_region_and_gets_no_region_note(lab: Lab) -> None:
    lab.create_pod(MYPOD)
    done = lab.exec("mypod", ["sh", "-c", "echo $AWS_DEFAULT_REGION $AWS_REGION"])
    assert done.stdout.split() == [C.REGION, C.REGION]
    assert isinstance(done, PodProcess)
    assert not any("names no region" in n for n in done.notes)


def test_the_callers_region_wins_over_the_nodes(lab: Lab) -> None:
    lab.create_pod(POD_WITHOUT_ROLE)
    done = lab.exec(
        "norole-pod",
        ["sh", "-c", "echo $AWS_DEFAULT_REGION"],
        extra_env={C.ENV_DEFAULT_REGION: "us-east-2"},
    )
    assert done.stdout.strip() == "us-east-2"


# --- the k8s backend: the real API server, the kubelet stand-in -----------------------------


@pytest.mark.skipif(
    bool(binaries.missing()),
    reason=f"{', '.join(binaries.missing())} not built: run `make k8s-bin` (needs Go)",
)
def test_on_the_k8s_backend_cat_of_the_pods_token_path_equals_read_token(tmp_path: Path) -> None:
    import irsa_lab
    from irsa_lab.session import reset_lab

    reset_lab()
    lab = irsa_lab.lab("k8s", state_dir=tmp_path)
    try:
        lab.create_pod(MYPOD)
        deadline = time.monotonic() + 60
        while True:
            try:
                token = lab.read_token()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        done = lab.exec("mypod", CAT_TOKEN)
        assert done.returncode == 0, done.stderr
        assert done.stdout == token
    finally:
        reset_lab()
