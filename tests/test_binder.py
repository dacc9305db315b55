"""The Binder launch path: what repo2docker reads, and the README's launch badge."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

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
