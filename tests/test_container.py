"""podexec: a pod container's env and mounts mapped to the host, run without the caller's AWS identity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from token_fixtures import POD_UID, irsa_pod

from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.constants import (
    NODE_NAME,
    SA_MOUNT_PATH,
    TOKEN_FILE,
    TOKEN_MOUNT_PATH,
    TOKEN_VOLUME_NAME,
)
from irsa_lab.in_pod import exec_in_pod
from irsa_lab.kube.container import (
    ExecPlan,
    container_env,
    field_ref,
    minimal_env,
    rewrite_paths,
    run,
)
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab
from irsa_lab.trace import facts_path

API_VOLUME = "kube-api-access-x7k2p"
MYPOD = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "examples" / "mypod.yaml").read_text()
)
ROLE_ARN = "arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole"


def _hosts(tmp_path: Path) -> dict[str, Path]:
    return {TOKEN_VOLUME_NAME: tmp_path / "irsa", API_VOLUME: tmp_path / "sa"}


def test_env_keeps_spec_order_and_the_pods_own_token_path(tmp_path: Path) -> None:
    plan = container_env(irsa_pod(), None, host_paths=_hosts(tmp_path))
    assert plan.container == "aws-cli"
    assert list(plan.env) == [
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ]
    assert plan.env["AWS_WEB_IDENTITY_TOKEN_FILE"] == TOKEN_FILE
    assert plan.rewritten == []


def test_rewriting_moves_the_token_file_to_the_host(tmp_path: Path) -> None:
    plan, argv = rewrite_paths(container_env(irsa_pod(), None, host_paths=_hosts(tmp_path)), [])
    host_token = str(tmp_path / "irsa" / "token")
    assert argv == []
    assert plan.env["AWS_WEB_IDENTITY_TOKEN_FILE"] == host_token
    assert plan.rewritten == [
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "/var/run/secrets/eks.amazonaws.com/serviceaccount/token",
            host_token,
        )
    ]
    assert any("AWS_WEB_IDENTITY_TOKEN_FILE" in n and host_token in n for n in plan.notes)


def test_each_mount_path_maps_to_its_volume_host_folder(tmp_path: Path) -> None:
    plan = container_env(irsa_pod(), "aws-cli", host_paths=_hosts(tmp_path))
    assert plan.mounts == {SA_MOUNT_PATH: tmp_path / "sa", TOKEN_MOUNT_PATH: tmp_path / "irsa"}


def test_sub_path_mounts_point_inside_the_volume(tmp_path: Path) -> None:
    pod = irsa_pod()
    c = pod["spec"]["containers"][0]
    c["volumeMounts"].append(
        {"name": TOKEN_VOLUME_NAME, "mountPath": "/token-only", "subPath": "token"}
    )
    c["env"].append({"name": "TOKEN_COPY", "value": "/token-only"})
    plan = container_env(pod, None, host_paths=_hosts(tmp_path))
    assert plan.mounts["/token-only"] == tmp_path / "irsa" / "token"
    assert plan.env["TOKEN_COPY"] == "/token-only"
    moved, _ = rewrite_paths(plan, [])
    assert moved.env["TOKEN_COPY"] == str(tmp_path / "irsa" / "token")


def test_rewriting_finds_pod_paths_inside_arguments_but_not_lookalikes(tmp_path: Path) -> None:
    plan = container_env(irsa_pod(), None, host_paths=_hosts(tmp_path))
    irsa, sa = tmp_path / "irsa", tmp_path / "sa"
    argv = [
        "cat",
        TOKEN_FILE,
        f"--ca={SA_MOUNT_PATH}/ca.crt",
        f"{SA_MOUNT_PATH}-not-a-mount/x",
        f"/prefix{TOKEN_MOUNT_PATH}",
        f"cat {TOKEN_FILE} {SA_MOUNT_PATH}",
    ]
    moved, args = rewrite_paths(plan, argv)
    assert args == [
        "cat",
        f"{irsa}/token",
        f"--ca={sa}/ca.crt",
        f"{SA_MOUNT_PATH}-not-a-mount/x",
        f"/prefix{TOKEN_MOUNT_PATH}",
        f"cat {irsa}/token {sa}",
    ]
    assert [name for name, _, _ in moved.rewritten] == [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "argv[1]",
        "argv[2]",
        "argv[5]",
    ]
    assert any("argument 1" in n and str(irsa) in n for n in moved.notes)


def test_field_refs_give_pod_facts_and_unsupported_sources_become_notes(tmp_path: Path) -> None:
    pod = irsa_pod()
    pod["status"] = {"podIP": "127.0.0.1"}
    pod["spec"]["containers"][0]["env"] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "POD_UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
        {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        {"name": "GREETING", "value": "hi $(POD_NAME) in $(POD_NS), $$(POD_NAME) $(NOPE)"},
    ]
    plan = container_env(pod, None, host_paths={})
    assert plan.env == {
        "POD_NAME": "mypod",
        "POD_NS": "default",
        "POD_UID": POD_UID,
        "SA": "s3-readonly-sa",
        "NODE": NODE_NAME,
        "IP": "127.0.0.1",
        "GREETING": "hi mypod in default, $(POD_NAME) $(NOPE)",
    }
    assert any("SECRET" in n and "secretKeyRef" in n for n in plan.notes)
    assert any(TOKEN_VOLUME_NAME in n for n in plan.notes)  # no host folder given


def test_field_ref_of_labels_uses_the_downward_api_format() -> None:
    pod = {"metadata": {"labels": {"b": "2", "a": "1"}}}
    assert field_ref(pod, "metadata.labels") == 'a="1"\nb="2"'
    assert field_ref(pod, "metadata.labels['b']") == "2"
    assert field_ref(pod, "spec.containers") is None


def test_unknown_container_is_refused_and_the_default_annotation_is_honoured() -> None:
    pod = irsa_pod()
    pod["spec"]["containers"].append({"name": "sidecar", "image": "busybox"})
    with pytest.raises(ValueError, match="container nope is not valid for pod mypod"):
        container_env(pod, "nope", host_paths={})
    pod["metadata"]["annotations"] = {"kubectl.kubernetes.io/default-container": "sidecar"}
    assert container_env(pod, None, host_paths={}).container == "sidecar"


def test_minimal_env_drops_aws_names_and_uses_a_private_home(tmp_path: Path) -> None:
    env = minimal_env(tmp_path, {"PATH": "/bin", "AWS_PROFILE": "prod", "X": "1"})
    assert env == {"PATH": "/bin", "X": "1", "LANG": "C.UTF-8", "TZ": "UTC", "HOME": str(tmp_path)}


def test_the_child_gets_the_pod_env_and_never_the_callers_aws_identity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIACALLERCALLER0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "caller-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "caller-token")
    monkeypatch.setenv("AWS_PROFILE", "caller")
    plan = container_env(irsa_pod(), None, host_paths=_hosts(tmp_path))
    extra = {"AWS_ENDPOINT_URL_STS": "https://127.0.0.1:1", "AWS_CA_BUNDLE": "/ca.crt"}
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    done = run(plan, [sys.executable, "-c", script], extra_env=extra, timeout=30)
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout)
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ):
        assert name not in child
    for name, value in {**plan.env, **extra}.items():
        assert child[name] == value
    assert child["TZ"] == "UTC"
    home = Path(child["HOME"])
    assert home.name.startswith("irsa-lab-home-") and not home.exists()  # removed afterwards
    assert set(child) - {"PATH", "HOME", "LANG", "TZ", "LC_CTYPE", "PWD"} == {
        *plan.env,
        *extra,
    }


def test_extra_env_comes_last_and_wins(tmp_path: Path) -> None:
    plan = ExecPlan("c", {"A": "pod", "B": "pod"}, {})
    done = run(
        plan,
        [sys.executable, "-c", "import os; print(os.environ['A'], os.environ['B'])"],
        extra_env={"B": "stack"},
        base_env={"PATH": "/usr/bin:/bin", "A": "base"},
        cwd=tmp_path,
    )
    assert done.stdout.split() == ["pod", "stack"]


def test_a_plan_without_a_token_file_gets_no_hook_even_with_a_facts_file(tmp_path: Path) -> None:
    plan = ExecPlan("c", {"A": "1"}, {})
    script = "import json, os; print(json.dumps(dict(os.environ)))"
    facts = tmp_path / "facts.jsonl"
    done = run(plan, [sys.executable, "-c", script], extra_env={}, facts=facts, timeout=30)
    child = json.loads(done.stdout)
    assert "PYTHONPATH" not in child and not any(k.startswith("IRSA_LAB_") for k in child)
    assert not facts.exists()


def test_the_hook_goes_first_on_a_pythonpath_the_pod_sets(tmp_path: Path) -> None:
    plan = container_env(irsa_pod(), None, host_paths=_hosts(tmp_path))
    script = "import os; print(os.environ['PYTHONPATH'])"
    done = run(
        plan,
        [sys.executable, "-c", script],
        extra_env={"PYTHONPATH": "/opt/app"},
        facts=tmp_path / "facts.jsonl",
        timeout=30,
    )
    site, _, rest = done.stdout.strip().partition(os.pathsep)
    assert site.endswith(".irsa-lab-site") and rest == "/opt/app"


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


def test_lab_exec_irsa_lab_exec_and_exec_in_pod_all_start_the_pod_through_run(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    import irsa_lab.in_pod
    from irsa_lab import cli

    lab.create_pod(MYPOD)
    calls: list[tuple[ExecPlan, list[str], dict[str, Any]]] = []

    def spy(plan: ExecPlan, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append((plan, list(argv), kw))
        return run(plan, argv, **kw)

    monkeypatch.setattr(irsa_lab.in_pod, "run", spy)
    role = [sys.executable, "-c", "import os; print(os.environ['AWS_ROLE_ARN'])"]

    done = lab.exec("mypod", role)
    assert done.stdout.strip() == ROLE_ARN

    # `irsa-lab exec` in this process, against the lab this process serves.
    (lab.state_dir / "lab.pid").write_text(f"{os.getpid()}\n")
    assert cli.main(["exec", "--state-dir", str(lab.state_dir), "mypod", "--", *role]) == 0
    assert ROLE_ARN in capfd.readouterr().out

    direct = exec_in_pod(
        lab.endpoints, lab.state_dir, namespace="default", pod="mypod", container=None, argv=role
    )
    assert direct.stdout.strip() == ROLE_ARN

    assert [argv for _, argv, _ in calls] == [role, role, role]
    assert [kw["capture"] for _, _, kw in calls] == [True, False, True]
    for plan, _, kw in calls:
        assert plan.env["AWS_ROLE_ARN"] == ROLE_ARN
        assert kw["facts"] == facts_path(lab.state_dir)
        assert kw["context"]["pod"] == "mypod"
        assert kw["extra_env"]["AWS_ENDPOINT_URL_STS"] == lab.endpoints["sts"]
