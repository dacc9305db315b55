"""The README's EKS Pod Identity walkthrough, run line by line in bash as a learner would.

The commands are read from README.md itself, so the README cannot drift from what works:
the aws CLI creates the role and the association against the lab, ``irsa-lab exec`` shows
the pod's session (``eks-<cluster>-<pod>-<uuid>``, at most 64 characters), and the ABAC
policy lets the pod read its namespace's prefix of the bucket and nothing else.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from irsa_lab.backends import binaries

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def readme_commands() -> list[str]:
    """The Pod Identity block of README.md, one command per entry (continuations joined)."""
    text = (ROOT / "README.md").read_text()
    start = text.index("EKS Pod Identity, the other way to give a pod a role, from a shell")
    block = text[text.index("```\n", start) + 4 :]
    block = block[: block.index("```")]
    joined = block.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip()]


def test_the_readme_block_is_found_and_ends_with_down() -> None:
    commands = readme_commands()
    assert commands[0] == "irsa-lab up --detach" and commands[-1] == "irsa-lab down"
    assert any(c.startswith("aws eks create-pod-identity-association ") for c in commands)


K8S_MISSING = binaries.missing()


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        "embedded",
        pytest.param(
            "k8s",
            marks=pytest.mark.skipif(
                bool(K8S_MISSING),
                reason=f"{', '.join(K8S_MISSING)} not built: run `make k8s-bin` (needs Go)",
            ),
        ),
    ],
)
def test_the_readme_pod_identity_walkthrough_runs(tmp_path: Path, backend: str) -> None:
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    env = {
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "IRSA_LAB_STATE_DIR": str(tmp_path / "state"),
        "IRSA_LAB_BACKEND": backend,
        "IRSA_LAB_BIN_DIR": str(binaries.bin_root()),  # HOME is the test's own
    }
    shell = 'eval "$(irsa-lab env)" && '
    results: list[tuple[str, subprocess.CompletedProcess[str]]] = []
    try:
        for command in readme_commands():
            if command.startswith("eval "):
                continue  # each line below evaluates `irsa-lab env` itself
            line = command.split("  #", 1)[0].strip()
            prefix = "" if line.startswith("irsa-lab up") else shell
            done = subprocess.run(
                ["bash", "-c", prefix + line],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            results.append((command, done))
            if line.startswith("irsa-lab up"):
                assert done.returncode == 0, done.stderr
    finally:
        subprocess.run(
            [str(BIN / "irsa-lab"), "down"], env=env, capture_output=True, timeout=60, check=False
        )
    by_command = {c: r for c, r in results}
    failed = [(c, r.stderr[-400:]) for c, r in results if r.returncode != 0 and "403" not in c]
    assert failed == []
    [who] = [r for c, r in by_command.items() if "get-caller-identity" in c]
    arn = json.loads(who.stdout)["Arn"]
    session = arn.rsplit("/", 1)[1]
    assert arn.startswith("arn:aws:sts::123456789012:assumed-role/pod-identity-abac/")
    assert re.fullmatch(r"eks-irsa-lab-pi-pod-[0-9a-f-]{36}", session) and len(session) <= 64
    [own] = [r for c, r in by_command.items() if "default/hello.txt -" in c]
    assert own.stdout == "hello\n"
    [other] = [r for c, r in by_command.items() if "README.txt -" in c]
    assert other.returncode != 0 and "(403)" in other.stderr
