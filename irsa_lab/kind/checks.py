"""Doctor checks for the kind backend, each with the command that fixes it.

``irsa-lab kind up`` refuses to start while a blocking check fails (docker engine,
kind, kubectl, cgroup v2) and warns about the others (inotify limits, which bite with
several clusters or many pods rather than at start-up).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..constants import (
    INOTIFY_MIN_MAX_USER_INSTANCES,
    INOTIFY_MIN_MAX_USER_WATCHES,
    KIND_MIN_VERSION,
    KIND_NODE_MINOR,
    KIND_VERSION_PINNED,
)
from ..doctor import Check

__all__ = [
    "BLOCKING",
    "CGROUPS",
    "CGROUP_ROOT",
    "DOCKER",
    "DOCKER_INSTALL_URL",
    "FIX_KIND",
    "FIX_START_DOCKER",
    "INSTANCES",
    "KIND",
    "KIND_INSTALL_URL",
    "KUBECTL",
    "KUBECTL_INSTALL_URL",
    "PROC_INOTIFY",
    "WATCHES",
    "backend_summary",
    "blocking",
    "check_cgroups",
    "check_docker",
    "check_inotify",
    "check_kind",
    "check_kubectl",
    "docker_info",
    "kind_checks",
    "parse_kind_version",
]

KIND_INSTALL_URL = "https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
KUBECTL_INSTALL_URL = "https://kubernetes.io/docs/tasks/tools/"
DOCKER_INSTALL_URL = "https://docs.docker.com/engine/install/"
PROC_INOTIFY = Path("/proc/sys/fs/inotify")
CGROUP_ROOT = Path("/sys/fs/cgroup")

DOCKER = "kind: docker engine"
KIND = "kind: kind CLI"
KUBECTL = "kind: kubectl"
CGROUPS = "kind: cgroup v2"
WATCHES = "kind: inotify max_user_watches"
INSTANCES = "kind: inotify max_user_instances"
BLOCKING = (DOCKER, KIND, KUBECTL, CGROUPS)

FIX_START_DOCKER = (
    "start the Docker engine (`sudo systemctl start docker`, or open Docker Desktop); "
    "if it runs, let your user reach it (`sudo usermod -aG docker $USER`, then log in "
    "again); `docker info` must succeed"
)
FIX_KIND = (
    f"install kind {KIND_VERSION_PINNED} or newer: `go install sigs.k8s.io/kind@{KIND_VERSION_PINNED}` "
    f"or a release binary ({KIND_INSTALL_URL})"
)


def _run(argv: Sequence[str], timeout: float = 20) -> tuple[int, str, str]:
    """Run a probe command; 127 if it is missing, 124 if it hangs (as a shell reports)."""
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, "", f"`{' '.join(argv)}` did not answer within {timeout:g} s"
    return p.returncode, p.stdout, p.stderr


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def docker_info() -> dict[str, Any] | str:
    """``docker info`` as a dict when an engine answers, else why not (one line)."""
    if shutil.which("docker") is None:
        return "the docker CLI is not on PATH"
    rc, out, err = _run(["docker", "info", "--format", "{{json .}}"])
    if rc != 0:
        return f"`docker info` failed: {_last_line(err or out)}"
    try:
        info = json.loads(out)
    except json.JSONDecodeError:
        return f"`docker info` answered something unexpected: {_last_line(out)}"
    if info.get("ServerErrors") or not info.get("ServerVersion"):
        return f"`docker info` failed: {'; '.join(info.get('ServerErrors') or ['no server'])}"
    return dict(info)


def check_docker(info: dict[str, Any] | str) -> Check:
    """The Docker engine answers ``docker info``."""
    if isinstance(info, str):
        fix = (
            f"install Docker ({DOCKER_INSTALL_URL}), then: {FIX_START_DOCKER}"
            if "not on PATH" in info
            else FIX_START_DOCKER
        )
        return Check(DOCKER, False, info, fix)
    return Check(
        DOCKER, True, f"Docker {info.get('ServerVersion')} on {info.get('OperatingSystem', '?')}"
    )


def parse_kind_version(text: str) -> tuple[int, int, int] | None:
    """``kind v0.32.0 go1.24.2 linux/amd64`` -> ``(0, 32, 0)``."""
    m = re.search(r"\bv(\d+)\.(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def check_kind() -> Check:
    """kind is on PATH and new enough for the unversioned kubeadm patch."""
    if shutil.which("kind") is None:
        return Check(KIND, False, "kind is not on PATH", FIX_KIND)
    rc, out, err = _run(["kind", "version"])
    version = parse_kind_version(out) if rc == 0 else None
    if version is None:
        return Check(KIND, False, f"`kind version` failed: {_last_line(err or out)}", FIX_KIND)
    shown = "v" + ".".join(map(str, version))
    if version < KIND_MIN_VERSION:
        return Check(
            KIND,
            False,
            f"kind {shown} is older than {KIND_VERSION_PINNED}, which the node image and "
            "kubeadm patch need",
            FIX_KIND,
        )
    return Check(KIND, True, f"kind {shown} at {shutil.which('kind')}")


def check_kubectl() -> Check:
    """kubectl is on PATH (``kind up`` applies manifests with it)."""
    path = shutil.which("kubectl")
    if path is None:
        return Check(
            KUBECTL, False, "kubectl is not on PATH", f"install kubectl: {KUBECTL_INSTALL_URL}"
        )
    rc, out, _ = _run(["kubectl", "version", "--client", "-o", "json"])
    detail = path
    if rc == 0:
        try:
            minor = int(re.sub(r"\D", "", json.loads(out)["clientVersion"]["minor"]) or 0)
        except (ValueError, KeyError, TypeError):
            minor = KIND_NODE_MINOR
        detail = f"v1.{minor} at {path}"
        if abs(minor - KIND_NODE_MINOR) > 1:
            # Works for what the lab does, but kubectl itself warns about the skew.
            detail += f" (the node runs v1.{KIND_NODE_MINOR}; kubectl supports +/-1 minor)"
    return Check(KUBECTL, True, detail)


def check_cgroups(info: dict[str, Any] | str) -> Check:
    """The engine runs on cgroup v2: Kubernetes >= 1.35 kubelets refuse cgroup v1."""
    fix = (
        "switch the host to cgroup v2: add `systemd.unified_cgroup_hierarchy=1` to "
        "GRUB_CMDLINE_LINUX in /etc/default/grub, run `sudo update-grub`, reboot"
    )
    if isinstance(info, dict) and info.get("CgroupVersion"):
        version = str(info["CgroupVersion"])
        where = "the Docker engine's host"
    elif sys.platform.startswith("linux"):
        version = "2" if (CGROUP_ROOT / "cgroup.controllers").exists() else "1"
        where = "this machine"
    else:
        return Check(CGROUPS, True, "not Linux: Docker Desktop's VM uses cgroup v2")
    ok = version == "2"
    return Check(CGROUPS, ok, f"{where} uses cgroup v{version}", "" if ok else fix)


def _inotify(name: str, minimum: int, label: str) -> Check:
    path = PROC_INOTIFY / name
    if not sys.platform.startswith("linux") or not path.exists():
        return Check(label, True, "not Linux: Docker Desktop's VM sets its own limit")
    value = int(path.read_text().split()[0])
    ok = value >= minimum
    fix = (
        f"sudo sysctl fs.inotify.{name}={minimum}   (keep it: echo fs.inotify.{name}={minimum} "
        "| sudo tee -a /etc/sysctl.d/99-kind.conf)"
    )
    return Check(label, ok, f"{value} (kind asks for >= {minimum})", "" if ok else fix)


def check_inotify() -> list[Check]:
    """The inotify limits kind's known-issues page asks for."""
    return [
        _inotify("max_user_watches", INOTIFY_MIN_MAX_USER_WATCHES, WATCHES),
        _inotify("max_user_instances", INOTIFY_MIN_MAX_USER_INSTANCES, INSTANCES),
    ]


def kind_checks() -> list[Check]:
    """Every check for the kind backend, in the order a learner fixes them."""
    info = docker_info()
    return [
        check_docker(info),
        check_kind(),
        check_kubectl(),
        check_cgroups(info),
        *check_inotify(),
    ]


def blocking(checks: Sequence[Check]) -> list[Check]:
    """The failed checks that stop ``irsa-lab kind up`` before it touches anything."""
    return [c for c in checks if not c.ok and c.name in BLOCKING]


def backend_summary(checks: Sequence[Check]) -> Check:
    """One line for ``irsa-lab doctor`` when the kind backend is not the one in use.

    Always ``ok``: the embedded backend needs none of this, so a machine without
    Docker is not broken; the detail says what ``irsa-lab kind up`` would need.
    """
    failed = blocking(checks)
    if not failed:
        return Check("kind backend (optional)", True, "available: `irsa-lab kind up` can run here")
    missing = ", ".join(c.name.removeprefix("kind: ") for c in failed)
    return Check(
        "kind backend (optional)",
        True,
        f"not available here ({missing}); the embedded backend does not need it. "
        "`irsa-lab kind doctor` lists the fixes",
    )
