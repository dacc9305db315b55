"""The real Kubernetes programs the ``k8s`` backend runs: where they are, how to build them.

Each program is pinned to one version and built from its published Go module by
``make k8s-bin`` (``python -m irsa_lab.backends.binaries build``), through the wrapper
modules under ``k8s-bin/`` whose ``go.sum`` checks every dependency:

- ``k8s.io/kubernetes`` at the kind node image's version (``kind-config.yaml``):
  kube-apiserver, kube-controller-manager, kube-scheduler and kubectl. Its go.mod
  requires the staging modules at v0.0.0, so the wrapper replaces each with its
  published ``v0.<minor>.<patch>`` tag; the version is stamped with ``-ldflags -X``
  so that ``/version`` and ``kubectl version`` do not say ``v0.0.0-master``.
- etcd, at the version kubeadm pairs with that Kubernetes release.
- the upstream pod identity webhook, at the tag the kind manifests deploy.

Built programs live outside the repository, in ``$IRSA_LAB_BIN_DIR/<name>-<version>/``
(default ``~/.cache/irsa-lab/bin``), so every clone and CI run on the machine reuses
them. ``KUBEBUILDER_ASSETS`` (the envtest convention) is honoured for kube-apiserver,
etcd and kubectl: a program found there is used and not built.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..constants import KIND_WEBHOOK_IMAGE

__all__ = [
    "ETCD_VERSION",
    "GET_COMMAND",
    "KUBERNETES_VERSION",
    "PROGRAMS",
    "WEBHOOK_VERSION",
    "BuildError",
    "Found",
    "Program",
    "bin_root",
    "build",
    "cache_path",
    "find",
    "find_all",
    "get_command",
    "missing",
    "not_built",
    "require",
]

KUBERNETES_VERSION = "v1.36.1"  # the kind node image's version (constants.KIND_NODE_IMAGE)
ETCD_VERSION = "v3.6.8"  # kubeadm's DefaultEtcdVersion for Kubernetes 1.36
WEBHOOK_VERSION = KIND_WEBHOOK_IMAGE.rsplit(":", 1)[1]  # the tag the kind manifests deploy

GET_COMMAND = "make k8s-bin"
_SOURCE_ROOT = Path(__file__).resolve().parents[2] / "k8s-bin"


def _kube_ldflags(version: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    stamp = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        stamp += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            # The module proxy does not carry the tag's commit; say so rather than
            # leave the "$Format:%H$" placeholder.
            f"-X {pkg}.gitCommit=unknown",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    return tuple(stamp)


@dataclass(frozen=True)
class Program:
    """One pinned program: its name, version, wrapper module and Go package."""

    name: str
    version: str
    module: str  # folder under k8s-bin/
    package: str
    ldflags: tuple[str, ...] = ()
    envtest: bool = False  # may come from KUBEBUILDER_ASSETS
    version_args: tuple[str, ...] = ("--version",)

    @property
    def folder_name(self) -> str:
        return f"{self.name}-{self.version}"


PROGRAMS: dict[str, Program] = {
    p.name: p
    for p in (
        Program(
            "etcd",
            ETCD_VERSION,
            "etcd",
            "go.etcd.io/etcd/server/v3",
            envtest=True,
        ),
        *(
            Program(
                name,
                KUBERNETES_VERSION,
                "kubernetes",
                f"k8s.io/kubernetes/cmd/{name}",
                _kube_ldflags(KUBERNETES_VERSION),
                envtest=name in ("kube-apiserver", "kubectl"),
                version_args=("version", "--client") if name == "kubectl" else ("--version",),
            )
            for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
        ),
        Program(
            "amazon-eks-pod-identity-webhook",
            WEBHOOK_VERSION,
            "webhook",
            "github.com/aws/amazon-eks-pod-identity-webhook",
            (f"-X main.webhookVersion={WEBHOOK_VERSION}",),
        ),
    )
}


class BuildError(RuntimeError):
    """Raised when a program cannot be built; the message names the fix."""


@dataclass(frozen=True)
class Found:
    """Where a program was found and what it says its version is."""

    program: Program
    path: Path
    source: str  # "cache" or "KUBEBUILDER_ASSETS"

    def version_text(self) -> str:
        """The program's own version line (runs it; for ``doctor``)."""
        try:
            out = subprocess.run(
                [str(self.path), *self.program.version_args],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except OSError as err:
            return f"cannot run: {err.strerror}"
        text = (out.stdout or out.stderr).strip().splitlines()
        return text[0] if text else f"exit {out.returncode}"


def bin_root() -> Path:
    """``$IRSA_LAB_BIN_DIR``, else ``~/.cache/irsa-lab/bin``."""
    env = os.environ.get("IRSA_LAB_BIN_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "irsa-lab" / "bin"


def cache_path(program: Program) -> Path:
    """Where ``make k8s-bin`` puts ``program``."""
    return bin_root() / program.folder_name / program.name


def get_command(name: str) -> str:
    """The command that gets ``name``."""
    return GET_COMMAND if name in PROGRAMS else f"install {name}"


def find(name: str) -> Found | None:
    """The program called ``name``: from ``KUBEBUILDER_ASSETS`` where allowed, else the cache."""
    program = PROGRAMS[name]
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if program.envtest and assets:
        candidate = Path(assets).expanduser() / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return Found(program, candidate, "KUBEBUILDER_ASSETS")
    cached = cache_path(program)
    if cached.is_file() and os.access(cached, os.X_OK):
        return Found(program, cached, "cache")
    return None


def find_all() -> dict[str, Found | None]:
    """Every pinned program, found or ``None``."""
    return {name: find(name) for name in PROGRAMS}


def missing(names: Iterable[str] = PROGRAMS) -> list[str]:
    """Those of ``names`` that are not built."""
    return [n for n in names if find(n) is None]


def not_built(names: Iterable[str]) -> str:
    """What to tell a user whose ``names`` are missing: which, and the command that builds them."""
    return f"{', '.join(names)} not built: run `{GET_COMMAND}`"


def require(names: Iterable[str] = PROGRAMS) -> dict[str, Found]:
    """Each of ``names``, found; raises ``RuntimeError`` (:func:`not_built`) when one is not."""
    found = {n: find(n) for n in names}
    absent = [n for n, f in found.items() if f is None]
    if absent:
        raise RuntimeError(not_built(absent))
    return {n: f for n, f in found.items() if f is not None}


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BuildError(
            "`go` is not on PATH: the real Kubernetes programs are built from source with "
            "Go 1.26 or newer (https://go.dev/doc/install), or set KUBEBUILDER_ASSETS to a "
            "folder of envtest binaries for kube-apiserver and etcd"
        )
    return go


def build(
    names: Sequence[str] = tuple(PROGRAMS),
    *,
    source_root: Path = _SOURCE_ROOT,
    progress: Callable[[str], None] = print,
) -> list[Path]:
    """Build every program of ``names`` that is not found yet; returns the paths built.

    A program already in the cache (or in ``KUBEBUILDER_ASSETS``) is left alone, so a
    second run does nothing. Programs of one wrapper module are built in one ``go build``
    so they share its compilation.
    """
    todo = [PROGRAMS[n] for n in names if find(n) is None]
    for n in names:
        found = find(n)
        if found is not None:
            progress(f"{n} {PROGRAMS[n].version}: up to date ({found.path})")
    if not todo:
        return []
    go = _go()
    built: list[Path] = []
    by_module: dict[tuple[str, tuple[str, ...]], list[Program]] = {}
    for p in todo:
        by_module.setdefault((p.module, p.ldflags), []).append(p)
    for (module, ldflags), programs in by_module.items():
        folder = source_root / module
        if not (folder / "go.mod").is_file():
            raise BuildError(f"{folder}/go.mod is missing: run `make k8s-bin` from a clone")
        names_text = ", ".join(f"{p.name} {p.version}" for p in programs)
        progress(f"building {names_text} (go build in {folder}) ...")
        started = time.monotonic()
        root = bin_root()
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=".build-") as tmp:
            env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-mod=readonly")
            cmd = [go, "build", "-trimpath", "-ldflags", " ".join(("-s", "-w", *ldflags))]
            cmd += ["-o", tmp + "/", *(p.package for p in programs)]
            result = subprocess.run(cmd, cwd=folder, env=env, check=False)
            if result.returncode != 0:
                raise BuildError(f"go build failed for {names_text} (exit {result.returncode})")
            for p in programs:
                out = Path(tmp) / p.package.rsplit("/", 1)[-1]
                if re.fullmatch(r"v\d+", out.name):  # go.etcd.io/etcd/server/v3 -> server
                    out = Path(tmp) / p.package.rsplit("/", 2)[-2]
                dest = cache_path(p)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(out, dest)
                built.append(dest)
        progress(f"built {names_text} in {time.monotonic() - started:.0f} s")
    return built


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    action = args[0] if args else "list"
    if action == "build":
        try:
            build(args[1:] or tuple(PROGRAMS))
        except BuildError as err:
            print(f"k8s-bin: {err}", file=sys.stderr)
            return 2
        return 0
    if action == "list":
        for name, found in find_all().items():
            where = f"{found.path} ({found.source})" if found else f"missing: {GET_COMMAND}"
            print(f"{name:34} {PROGRAMS[name].version:9} {where}")
        return 0
    if action == "check":
        absent = missing()
        if absent:
            print(f"k8s-bin: {', '.join(absent)} not built: run `{GET_COMMAND}`", file=sys.stderr)
        return 1 if absent else 0
    print(
        "usage: python -m irsa_lab.backends.binaries [build [NAME...] | list | check]",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
