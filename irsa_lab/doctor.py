"""``irsa-lab doctor``: checks the machine and names the command that fixes each problem."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .pki import LOOPBACK

__all__ = [
    "SUPPORTED_PYTHON",
    "Check",
    "attempt",
    "check_k8s_programs",
    "check_kind_backend",
    "check_kubectl",
    "check_loopback",
    "check_packages",
    "check_python",
    "check_state_dir",
    "check_tools",
    "print_checks",
    "run_checks",
]


@dataclass(frozen=True)
class Check:
    """One line of ``irsa-lab doctor``: what was checked, whether it passed, what was
    found, and the command that fixes it when it did not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _major_minor(v: str) -> tuple[int, int]:
    parts = (v.split(".") + ["0", "0"])[:2]
    return int("".join(c for c in parts[0] if c.isdigit()) or 0), int(
        "".join(c for c in parts[1] if c.isdigit()) or 0
    )


SUPPORTED_PYTHON = ((3, 11), (3, 13))  # pyproject.toml: requires-python = ">=3.11,<3.14"


def check_python(version: tuple[int, int, int] | None = None) -> Check:
    """Python 3.11, 3.12 or 3.13 runs the lab (``version``: this interpreter's)."""
    major, minor, micro = version or sys.version_info[:3]
    low, high = SUPPORTED_PYTHON
    ok = low <= (major, minor) <= high
    return Check(
        "python",
        ok,
        f"{major}.{minor}.{micro} at {sys.executable}"
        + ("" if ok else f" (the lab supports {low[0]}.{low[1]} to {high[0]}.{high[1]})"),
        "" if ok else "install Python 3.11, 3.12 or 3.13 and run `make install` with it",
    )


def check_packages() -> list[Check]:
    """The Python packages the lab needs, each in its supported range, and the optional ones."""
    reinstall = "make install   (or: .venv/bin/pip install -e '.[test]')"
    out = []
    wanted = {
        "kubernetes": lambda v: (35, 0) <= _major_minor(v) < (37, 0),
        "botocore": lambda v: _major_minor(v) >= (1, 31),  # endpoint env vars arrived in 1.31
        "boto3": lambda v: True,
        "awscli": lambda v: True,
        "jupyterlab": lambda v: _major_minor(v)[0] == 4,
        "ipywidgets": lambda v: _major_minor(v)[0] == 8,
        "aiohttp": lambda v: True,
        "PyJWT": lambda v: True,
        "cryptography": lambda v: True,
    }
    for dist, good in wanted.items():
        v = _version(dist)
        if v is None:
            out.append(Check(f"package {dist}", False, "not installed", reinstall))
        elif not good(v):
            out.append(
                Check(f"package {dist}", False, f"{v} is outside the supported range", reinstall)
            )
        else:
            out.append(Check(f"package {dist}", True, v))
    optional = {"nbval": "only `make test` (make install-test) and instructors' CI need it"}
    for dist, why in optional.items():
        v = _version(dist)
        out.append(Check(f"package {dist}", True, v or f"not installed ({why})"))
    # The widget front end (jupyterlab_widgets) must belong to the same ipywidgets
    # generation as the kernel side, or JupyterLab shows "Error displaying widget".
    front = _version("jupyterlab_widgets")
    kernel = _version("ipywidgets")
    if front and kernel:
        ok = _major_minor(front)[0] == 3 and _major_minor(kernel)[0] == 8
        out.append(
            Check(
                "widgets front end",
                ok,
                f"jupyterlab_widgets {front} with ipywidgets {kernel}",
                "" if ok else "pip install 'ipywidgets>=8,<9' 'jupyterlab_widgets>=3,<4'",
            )
        )
    return out


def check_kubectl() -> Check:
    """kubectl (optional: the notebooks' ``!kubectl`` cells and the kubectl tests use it);
    when missing, the fix is the pinned, checksummed download for this platform."""
    from .kubectl_pin import KUBECTL_VERSION, install_command

    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return Check(
            "kubectl",
            False,
            "not found (optional: the lab works without it, `!kubectl` cells and the "
            f"kubectl tests do not; the lab pins {KUBECTL_VERSION})",
            install_command() + "   (or, beside the lab's Python: python -m irsa_lab.kubectl_pin)",
        )
    return Check("kubectl", True, kubectl)


def check_tools() -> list[Check]:
    """kubectl (optional) and the aws CLI."""
    out = [check_kubectl()]
    venv_aws = Path(sys.executable).with_name("aws")
    aws = str(venv_aws) if venv_aws.exists() else shutil.which("aws")
    out.append(
        Check(
            "aws CLI",
            aws is not None,
            aws or "not found",
            "" if aws else "make install   (awscli is a dependency)",
        )
    )
    return out


def attempt(name: str, action: Callable[[], str], *, failed: str, fix: str) -> Check:
    """A check that tries something the lab will do: passed with the detail ``action``
    returns, or failed with ``"{failed}: {the OSError}"`` and ``fix``."""
    try:
        return Check(name, True, action())
    except OSError as err:
        return Check(name, False, f"{failed}: {err}", fix)


def check_loopback() -> Check:
    """A port on the loopback address can be bound: every server of the lab binds one."""

    def bind() -> str:
        with socket.socket() as s:
            s.bind((LOOPBACK, 0))
            port = s.getsockname()[1]
        return f"can bind {LOOPBACK} (e.g. port {port})"

    return attempt(
        "loopback ports",
        bind,
        failed=f"cannot bind {LOOPBACK}",
        fix="check that the loopback interface is up: `ip link set lo up`",
    )


def check_state_dir(state: Path) -> Check:
    """``state`` can be created and written to."""

    def write() -> str:
        state.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=state):
            pass
        return f"{state} is writable"

    now = os.environ.get("IRSA_LAB_STATE_DIR", "unset")
    return attempt(
        "state directory",
        write,
        failed=str(state),
        fix=f"choose another with --state-dir or IRSA_LAB_STATE_DIR (now {now})",
    )


def check_kind_backend(backend: str | None = None) -> list[Check]:
    """The kind backend's checks: all of them when it is the backend in use
    (``IRSA_LAB_BACKEND=kind``), else one informational line, since the embedded
    backend needs no Docker and a machine without it is not broken."""
    from .kind.checks import backend_summary, kind_checks

    checks = kind_checks()
    if (backend or os.environ.get("IRSA_LAB_BACKEND", "embedded")) == "kind":
        return checks
    return [backend_summary(checks)]


def check_k8s_programs(backend: str | None = None) -> list[Check]:
    """Each real program of the ``k8s`` backend: found or not, its version, where.

    A missing program fails only when ``k8s`` is the backend in use; otherwise the
    line says what it is for and the command that gets it.
    """
    from .backends import binaries

    needed = (backend or os.environ.get("IRSA_LAB_BACKEND", "embedded")) == "k8s"
    out = []
    for name, program in binaries.PROGRAMS.items():
        found = binaries.find(name)
        label = f"k8s backend: {name}"
        if found is None:
            detail = f"{program.version} not built (`{binaries.GET_COMMAND}` builds it"
            detail += (
                ", needs Go)" if needed else "; only the k8s backend and make fidelity use it)"
            )
            out.append(Check(label, not needed, detail, binaries.GET_COMMAND))
            continue
        version = found.version_text()
        ok = program.version.lstrip("v") in version
        detail = f"{version} at {found.path}" + (
            " (from KUBEBUILDER_ASSETS)" if found.source == "KUBEBUILDER_ASSETS" else ""
        )
        if not ok:
            detail += f"; the lab pins {program.version}"
        out.append(Check(label, ok or not needed, detail, binaries.GET_COMMAND))
    return out


def print_checks(checks: list[Check]) -> int:
    """Print checks as ``irsa-lab doctor`` does; 1 if any failed, else 0."""
    problems = 0
    for check in checks:
        print(f"[{'ok  ' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
        if not check.ok:
            problems += 1
            if check.fix:
                print(f"       fix: {check.fix}")
    return 1 if problems else 0


def run_checks(state: Path) -> list[Check]:
    """Every check of ``irsa-lab doctor``, in the order it prints them."""
    return [
        check_python(),
        *check_packages(),
        *check_tools(),
        check_loopback(),
        check_state_dir(state),
        *check_k8s_programs(),
        *check_kind_backend(),
    ]
