"""The two install paths (pyproject for pip/make, environment.yml for conda/Binder) agree."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return req.replace(" ", "").lower()


def test_environment_yml_installs_exactly_the_pyproject_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(map(_norm, pip_section)) == sorted(map(_norm, project["dependencies"]))


def test_environment_yml_pins_the_python_the_project_supports() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    assert "conda-forge" in env["channels"]


def test_kubernetes_client_is_held_below_37_while_boto3_is_a_dependency() -> None:
    # kubernetes 37 needs python-dateutil>=3; botocore needs <3 (pip would backtrack for 15+ minutes between them).
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    kube = next(d for d in deps if d.startswith("kubernetes"))
    assert "<37" in kube


def test_console_script_points_at_the_cli() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"irsa-lab": "irsa_lab.cli:main"}
