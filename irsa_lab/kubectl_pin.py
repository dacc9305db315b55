"""The kubectl the lab pins: its version, the published SHA-256 of each platform's binary,
the command that gets it, and an installer (``python -m irsa_lab.kubectl_pin DIR``).

kubectl is supported within one minor version of the API server it talks to; the
embedded API server reports :data:`irsa_lab.constants.KUBERNETES_VERSION` (1.32), so
the pin is a 1.32 patch release. Binder and JupyterHub images have no kubectl: their
``postBuild`` runs the installer, which refuses a download whose SHA-256 differs from
the one published with the release (the ``.sha256`` file beside each binary on
dl.k8s.io). ``irsa-lab doctor`` prints :func:`install_command` when kubectl is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "KUBECTL_SHA256",
    "KUBECTL_VERSION",
    "ChecksumMismatch",
    "download_url",
    "install",
    "install_command",
    "main",
    "this_platform",
]

KUBECTL_VERSION = "v1.32.4"
# The SHA-256 published for KUBECTL_VERSION, per "<os>/<arch>" as dl.k8s.io names them.
KUBECTL_SHA256: Mapping[str, str] = {
    "linux/amd64": "10d739e9af8a59c9e7a730a2445916e04bc9cbb44bc79d22ce460cd329fa076c",
    "linux/arm64": "c6f96d0468d6976224f5f0d81b65e1a63b47195022646be83e49d38389d572c2",
    "darwin/amd64": "061f65fe5405538f6fe8edd3c3373f479a1d59944ebf6268905535a617151d16",
    "darwin/arm64": "01344900ac3c2c97a3290e9465d36f0dea20ca4533d226dfbe7c9a90e80ff9d4",
    "windows/amd64": "8e93d01f8efe80db614cf7dc422f9bb3fbad1b16f82d13f0ea70441441e486e4",
}
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class ChecksumMismatch(ValueError):
    """Raised when a downloaded kubectl is not the published binary (nothing is installed)."""


def this_platform() -> str:
    """This machine as ``"<os>/<arch>"`` in dl.k8s.io's names (``linux/amd64``, ...)."""
    system = {"linux": "linux", "darwin": "darwin", "win32": "windows"}.get(
        sys.platform, sys.platform
    )
    machine = platform.machine().lower()
    return f"{system}/{_ARCH.get(machine, machine)}"


def download_url(plat: str, version: str = KUBECTL_VERSION) -> str:
    """Where the release publishes kubectl for ``plat``."""
    exe = "kubectl.exe" if plat.startswith("windows/") else "kubectl"
    return f"https://dl.k8s.io/release/{version}/bin/{plat}/{exe}"


def install_command(plat: str | None = None) -> str:
    """The shell command that downloads the pinned kubectl for ``plat`` (default: this
    machine), checks its SHA-256 and puts it in ``~/.local/bin``."""
    plat = plat or this_platform()
    sha = KUBECTL_SHA256.get(plat)
    if sha is None:
        return (
            f"no pinned kubectl for {plat}: install kubectl {KUBECTL_VERSION.rsplit('.', 1)[0]}.x "
            "from https://kubernetes.io/docs/tasks/tools/"
        )
    if plat.startswith("windows/"):
        return (
            f"curl.exe -fLO {download_url(plat)} ; "
            f"(Get-FileHash kubectl.exe -Algorithm SHA256).Hash -eq '{sha}'"
        )
    check = "shasum -a 256 -c" if plat.startswith("darwin/") else "sha256sum -c"
    return (
        f"curl -fLo kubectl {download_url(plat)} && "
        f'echo "{sha}  kubectl" | {check} && '
        "chmod +x kubectl && mkdir -p ~/.local/bin && mv kubectl ~/.local/bin/"
    )


def install(
    dest_dir: Path,
    *,
    plat: str | None = None,
    url: str | None = None,
    checksums: Mapping[str, str] = KUBECTL_SHA256,
) -> Path:
    """Download the pinned kubectl into ``dest_dir``, executable, after checking its
    SHA-256 against ``checksums``; :class:`ChecksumMismatch` (nothing written) if it
    differs. ``url`` replaces the release's address (tests, mirrors)."""
    plat = plat or this_platform()
    if plat not in checksums:
        raise LookupError(f"no pinned kubectl for {plat} (pinned: {', '.join(checksums)})")
    source = url or download_url(plat)
    digest = hashlib.sha256()
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / ("kubectl.exe" if plat.startswith("windows/") else "kubectl")
    fd, tmp = tempfile.mkstemp(prefix=".kubectl-", dir=dest_dir)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(source, timeout=120) as resp:  # noqa: S310 - the release's https address, or a test's
            while chunk := resp.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != checksums[plat]:
            raise ChecksumMismatch(
                f"{source}: SHA-256 {digest.hexdigest()}, the release publishes {checksums[plat]}"
            )
        os.chmod(tmp, 0o755)  # noqa: S103 - a program everyone may run, as the release ships it
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m irsa_lab.kubectl_pin",
        description=f"Install kubectl {KUBECTL_VERSION}, checked against its published SHA-256.",
    )
    parser.add_argument(
        "dest",
        nargs="?",
        type=Path,
        default=Path(sys.executable).parent,
        help="folder to put it in (default: beside this Python, which is on a kernel's PATH)",
    )
    args = parser.parse_args(argv)
    try:
        path = install(args.dest)
    except (ChecksumMismatch, LookupError, OSError) as err:
        print(f"irsa-lab: kubectl not installed: {err}", file=sys.stderr)
        return 1
    print(f"irsa-lab: installed kubectl {KUBECTL_VERSION} at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
