"""The lab on the command line inside a notebook: ``irsa_lab.lab()`` sets the kernel's
environment as ``irsa-lab env`` does for a shell, so ``!kubectl …`` and ``!aws …`` reach
the lab; closing the lab puts the previous values back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from irsa_lab import constants as C
from irsa_lab.cli import env_lines
from irsa_lab.client_env import lab_environment
from irsa_lab.session import Lab

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter, as a kernel would: lab(), then the commands a learner
# types after `!`, then close(); prints what it saw as JSON.
SCRIPT = r"""
import json, os, subprocess, sys
import irsa_lab
from irsa_lab.session import reset_lab

before = {k: os.environ.get(k) for k in ("KUBECONFIG", "AWS_ACCESS_KEY_ID", "PATH")}
lab = irsa_lab.lab("embedded", state_dir=sys.argv[1])
def run(argv):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return {"rc": done.returncode, "out": done.stdout, "err": done.stderr}
out = {
    "kubectl": run(["kubectl", "get", "sa", "-o", "name"]),
    "aws": run(["aws", "sts", "get-caller-identity", "--output", "json"]),
    "during": {k: os.environ.get(k) for k in ("KUBECONFIG", "AWS_ENDPOINT_URL_STS")},
    "endpoints": lab.endpoints,
}
reset_lab()
out["after"] = {k: os.environ.get(k) for k in ("KUBECONFIG", "AWS_ACCESS_KEY_ID", "PATH")}
out["before"] = before
print(json.dumps(out))
"""


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl on PATH")
def test_kubectl_and_the_aws_cli_run_from_a_process_with_a_lab_reach_that_lab(
    tmp_path: Path,
) -> None:
    # A kernel started without the venv activated: no lab variables, and the venv's
    # bin folder (where `aws` lives) not on PATH.
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(
        p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != venv_bin
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k not in ("KUBECONFIG", "PATH")
    }
    env["PATH"] = path
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "state")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    ep = seen["endpoints"]

    kubectl = seen["kubectl"]
    assert kubectl["rc"] == 0, kubectl["err"]
    assert f"serviceaccount/{C.SERVICE_ACCOUNT}" in kubectl["out"].split()

    aws = seen["aws"]
    assert aws["rc"] == 0, aws["err"]
    identity = json.loads(aws["out"])
    assert identity["Account"] == ep["account_id"]
    assert seen["during"] == {"KUBECONFIG": ep["kubeconfig"], "AWS_ENDPOINT_URL_STS": ep["sts"]}

    # Closing the lab gives the kernel its own environment back.
    assert seen["after"] == seen["before"]
    assert seen["after"]["KUBECONFIG"] is None and seen["after"]["PATH"] == path


def _endpoints(tmp: Path, name: str) -> dict[str, str]:
    return {
        "kubeconfig": str(tmp / name / "kubeconfig"),
        "sts": f"https://127.0.0.1:1{len(name)}/{name}",
        "iam": "https://127.0.0.1:2",
        "s3": "https://127.0.0.1:3",
        "ec2": "https://127.0.0.1:5",
        "ca_bundle": str(tmp / name / "ca.pem"),
        "imds": "http://127.0.0.1:4",
        "region": "eu-west-1",
        "admin_access_key_id": f"AKIA{name.upper()}",
        "admin_secret_access_key": "secret",
    }


def test_with_two_labs_the_last_one_wins_and_closing_it_hands_back_to_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", "/home/learner/.kube/config")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    first = Lab(_endpoints(tmp_path, "first"), tmp_path / "first", backend="running")
    second = Lab(_endpoints(tmp_path, "second"), tmp_path / "second", backend="running")

    first.set_environment()
    second.set_environment()
    assert os.environ["KUBECONFIG"] == second.endpoints["kubeconfig"]
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIASECOND"

    second.close()
    assert os.environ["KUBECONFIG"] == first.endpoints["kubeconfig"]
    assert os.environ["AWS_ACCESS_KEY_ID"] == "AKIAFIRST"

    first.close()
    assert os.environ["KUBECONFIG"] == "/home/learner/.kube/config"
    assert "AWS_ACCESS_KEY_ID" not in os.environ


def test_closing_the_first_of_two_labs_leaves_the_second_in_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    first = Lab(_endpoints(tmp_path, "first"), tmp_path / "first", backend="running")
    second = Lab(_endpoints(tmp_path, "second"), tmp_path / "second", backend="running")
    first.set_environment()
    second.set_environment()
    first.close()
    assert os.environ["KUBECONFIG"] == second.endpoints["kubeconfig"]
    second.close()
    assert "KUBECONFIG" not in os.environ


def test_the_shell_export_lines_and_the_kernel_environment_are_the_same_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = _endpoints(tmp_path, "one")
    lab = Lab(ep, tmp_path / "one", backend="running")
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    try:
        kernel = lab.set_environment()
    finally:
        lab.close()
    exported = [line.removeprefix("export ").split("=", 1)[0] for line in env_lines(ep)]
    assert exported == list(kernel) == list(lab_environment(ep))
    assert {*lab.aws_env()} == {*kernel} - {"KUBECONFIG"}
    assert "AWS_ACCESS_KEY_ID" not in lab.aws_env(admin=False)
