"""The pre-flight check of notebook 00: is this machine ready for the lab?

It reuses :mod:`irsa_lab.doctor`'s checks and prints one line per item with ``ok``
or ``FAIL`` and, for a failure, the command that fixes it. Optional items (kubectl,
the kind backend) never fail the check: the embedded lab runs without them.
Versions and paths are printed only with ``verbose=True``, so the report of a ready
machine reads the same everywhere.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import doctor
from ..doctor import Check

__all__ = ["Item", "Report", "check", "default_checks", "lab_settings", "run"]

# Packages a learner's kernel needs; the rest of doctor's list (nbval) is for CI.
LEARNER_PACKAGES = (
    "kubernetes",
    "botocore",
    "boto3",
    "awscli",
    "jupyterlab",
    "ipywidgets",
    "aiohttp",
    "PyJWT",
    "cryptography",
)
OPTIONAL = ("kubectl",)
TITLES = {
    "python": "Python 3.11 to 3.13",
    "widgets front end": "ipywidgets front end matches the kernel side",
    "kubectl": "kubectl (optional)",
    "aws CLI": "aws CLI",
    "loopback ports": "loopback ports can be opened",
    "temporary folder": "temporary folder is writable",
}


@dataclass(frozen=True)
class Item:
    """One line of the report: a doctor check, its title, and whether it is optional."""

    check: Check
    optional: bool = False

    @property
    def title(self) -> str:
        name = self.check.name
        if name.startswith("package "):
            return f"package {name.removeprefix('package ')}"
        return TITLES.get(name, name)

    @property
    def status(self) -> str:
        """``ok``, ``FAIL``, or ``note`` for an optional item that is missing."""
        if self.check.ok:
            return "ok"
        return "note" if self.optional else "FAIL"

    def lines(self, *, verbose: bool = False) -> list[str]:
        out = [f"[{self.status:<4}] {self.title}"]
        if verbose or not self.check.ok:
            out[0] += f": {self.check.detail}"
        if not self.check.ok and self.check.fix:
            out.append(f"       fix: {self.check.fix}")
        return out


@dataclass(frozen=True)
class Report:
    """Every item checked; ``ok`` when no required item failed."""

    items: list[Item]

    @property
    def ok(self) -> bool:
        return all(i.check.ok or i.optional for i in self.items)

    @property
    def failures(self) -> list[Item]:
        return [i for i in self.items if i.status == "FAIL"]

    def fixes(self) -> dict[str, str]:
        """Title -> the command that fixes it, for every item that is not ok."""
        return {i.title: i.check.fix for i in self.items if not i.check.ok and i.check.fix}

    def text(self, *, verbose: bool = False) -> str:
        lines = [line for i in self.items for line in i.lines(verbose=verbose)]
        if self.ok:
            lines.append("=> ready: every required check passed")
        else:
            n = len(self.failures)
            lines.append(
                f"=> not ready: {n} check{'s' if n != 1 else ''} failed; run the fix above"
            )
        return "\n".join(lines)


def check_temp_folder() -> Check:
    """The embedded lab keeps its files in a fresh temporary folder."""

    def write() -> str:
        with tempfile.TemporaryDirectory(prefix="irsa-lab-check-") as folder:
            (Path(folder) / "probe").write_text("ok")
        return f"{tempfile.gettempdir()} is writable"

    return doctor.attempt(
        "temporary folder",
        write,
        failed=tempfile.gettempdir(),
        fix="point TMPDIR at a writable folder, e.g. `export TMPDIR=$HOME/tmp`",
    )


def _packages() -> list[Check]:
    wanted = {f"package {p}" for p in LEARNER_PACKAGES} | {"widgets front end"}
    return [c for c in doctor.check_packages() if c.name in wanted]


CheckFn = Callable[[], Check | Sequence[Check]]


def default_checks() -> list[CheckFn]:
    """The checks notebook 00 runs, in the order they are printed."""
    return [
        doctor.check_python,
        _packages,
        doctor.check_tools,
        doctor.check_loopback,
        check_temp_folder,
    ]


def run(checks: Iterable[CheckFn] | None = None, *, optional: Sequence[str] = OPTIONAL) -> Report:
    """Run ``checks`` (default: :func:`default_checks`) and collect the report."""
    items: list[Item] = []
    for fn in default_checks() if checks is None else checks:
        result = fn()
        for c in [result] if isinstance(result, Check) else result:
            items.append(Item(c, optional=c.name in optional))
    return Report(items)


def check(
    checks: Iterable[CheckFn] | None = None, *, verbose: bool = False, show: bool = True
) -> Report:
    """Run the pre-flight checks, print one line per item, and return the report."""
    report = run(checks)
    if show:
        print(report.text(verbose=verbose))
    return report


def lab_settings(lab: Any) -> str:
    """The settings that point real clients at the lab: the one place it differs from EKS.

    Ports and the lab's temporary folder change on every run; they are written as
    ``127.0.0.1:PORT``-style URLs and ``<lab folder>`` here only where they are paths.
    """
    folder = str(lab.state_dir)
    lines = ["kubectl and the kubernetes client:", "  KUBECONFIG=<lab folder>/kubeconfig"]
    lines.append("boto3 and the aws CLI (botocore >= 1.31 reads these):")
    for key, value in lab.aws_env(admin=False).items():
        lines.append(f"  {key}={str(value).replace(folder, '<lab folder>')}")
    lines.append("the cluster's OIDC issuer (as on EKS) and where the lab serves it:")
    lines.append(f"  issuer: {lab.endpoints['issuer']}")
    lines.append(f"  served: {lab.endpoints['oidc']}")
    return "\n".join(lines)
