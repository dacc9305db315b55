"""The Binder launch path: what repo2docker reads, and the README's launch badge."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_no_binder_folder_hides_the_root_environment_file() -> None:
    # repo2docker reads only binder/ (or .binder/) when such a folder exists.
    assert not (ROOT / "binder").exists()
    assert not (ROOT / ".binder").exists()
    assert (ROOT / "environment.yml").is_file()


def test_post_build_installs_the_package_without_touching_the_pins() -> None:
    post = ROOT / "postBuild"
    assert os.access(post, os.X_OK)
    assert "pip install --no-cache-dir --no-deps -e ." in post.read_text()


def test_start_selects_the_embedded_backend_and_runs_the_given_command() -> None:
    env = {k: v for k, v in os.environ.items() if k != "IRSA_LAB_BACKEND"}
    out = subprocess.run(
        [str(ROOT / "start"), "sh", "-c", "echo $IRSA_LAB_BACKEND"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "embedded\n"


def test_the_readme_badge_opens_the_first_notebook_on_binder() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"\(https://mybinder\.org/v2/gh/[^)\s]+urlpath=lab/tree/([^)\s]+)\)", readme)
    assert match, "no Binder launch badge in the README"
    target = ROOT / match.group(1)
    assert target.is_file()
    assert target.name.startswith("00-")


def test_post_build_installs_the_pinned_kubectl_after_the_package() -> None:
    lines = [ln.strip() for ln in (ROOT / "postBuild").read_text().splitlines()]
    assert "python -m irsa_lab.kubectl_pin" in lines
    assert lines.index("python -m irsa_lab.kubectl_pin") > lines.index(
        "python -m pip install --no-cache-dir --no-deps -e ."
    )


def test_the_pinned_kubectl_is_within_one_minor_version_of_the_labs_api_server() -> None:
    from irsa_lab import constants
    from irsa_lab.kubectl_pin import KUBECTL_VERSION

    match = re.fullmatch(r"v1\.(\d+)\.\d+", KUBECTL_VERSION)
    assert match, KUBECTL_VERSION
    server_minor = int(constants.KUBERNETES_VERSION["minor"])
    assert constants.KUBERNETES_VERSION["gitVersion"].startswith(f"v1.{server_minor}.")
    assert abs(int(match.group(1)) - server_minor) <= 1


def test_every_pinned_platform_has_a_sha256_and_a_release_address_of_the_pinned_version() -> None:
    from irsa_lab.kubectl_pin import KUBECTL_SHA256, KUBECTL_VERSION, download_url

    assert {"linux/amd64", "linux/arm64"} <= set(KUBECTL_SHA256)  # Binder and hub nodes
    assert len(set(KUBECTL_SHA256.values())) == len(KUBECTL_SHA256)
    for plat, sha in KUBECTL_SHA256.items():
        assert re.fullmatch(r"[0-9a-f]{64}", sha), plat
        url = download_url(plat)
        assert url.startswith(f"https://dl.k8s.io/release/{KUBECTL_VERSION}/bin/{plat}/kubectl")


def test_the_installer_refuses_a_binary_whose_sha256_is_not_the_pinned_one(
    tmp_path: Path,
) -> None:
    from irsa_lab.kubectl_pin import ChecksumMismatch, install

    served = tmp_path / "served-kubectl"
    served.write_bytes(b"#!/bin/sh\necho 'Client Version: v1.32.4'\n")
    good = {"linux/amd64": hashlib.sha256(served.read_bytes()).hexdigest()}
    dest = tmp_path / "bin"
    with pytest.raises(ChecksumMismatch):
        install(dest, plat="linux/amd64", url=served.as_uri(), checksums={"linux/amd64": "0" * 64})
    assert not any(dest.iterdir()), "nothing is left behind after a mismatch"

    path = install(dest, plat="linux/amd64", url=served.as_uri(), checksums=good)
    assert path == dest / "kubectl" and os.access(path, os.X_OK)
    assert subprocess.run([str(path)], capture_output=True, text=True).stdout.startswith(
        "Client Version: v1.32.4"
    )


def test_the_launch_links_in_the_hub_guide_open_notebooks_that_exist() -> None:
    from urllib.parse import unquote

    guide = (ROOT / "docs" / "jupyterhub.md").read_text()
    binder = re.findall(r"mybinder\.org/v2/gh/\S+?urlpath=lab/tree/(\S+\.ipynb)", guide)
    puller = re.findall(r"git-pull\?\S*urlpath=([^&\s]+\.ipynb)", guide)
    assert binder and puller
    for path in binder:
        assert (ROOT / path).is_file(), path
    for encoded in puller:
        # nbgitpuller clones into a folder named after the repository: lab/tree/<repo>/...
        tree = unquote(encoded).removeprefix("lab/tree/")
        _, _, inside = tree.partition("/")
        assert (ROOT / inside).is_file(), tree
