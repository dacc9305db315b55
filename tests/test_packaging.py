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


TEST_TOOLS = ("pytest", "nbval", "hypothesis", "ruff", "mypy", "playwright", "grpcio-tools")


def _name(req: str) -> str:
    return req.split(";")[0].split("[")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower()


def test_the_runtime_set_holds_no_test_tool_and_the_test_extras_hold_them_all() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(d) for d in project["dependencies"]}
    extras = {_name(d) for d in project["optional-dependencies"]["test"]}
    assert not runtime & set(TEST_TOOLS)
    assert set(TEST_TOOLS) <= extras


def _recipe(makefile: str, target: str) -> tuple[str, list[str]]:
    """A make rule's prerequisites and recipe lines."""
    lines = makefile.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return lines[start].split(":", 1)[1].strip(), recipe


def test_make_lab_installs_the_runtime_set_and_only_make_test_adds_the_extras() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert _recipe(makefile, "lab")[0] == "install"
    stamp_deps, install = _recipe(makefile, "$(STAMP)")
    assert stamp_deps == "pyproject.toml"
    pip = [line for line in install if "pip install" in line]
    assert len(pip) == 1 and pip[0].endswith("-e .")
    assert _recipe(makefile, "test")[0] == "lint"
    assert _recipe(makefile, "lint")[0] == "install-test"
    extras = [line for line in _recipe(makefile, "$(TEST_STAMP)")[1] if "pip install" in line]
    assert len(extras) == 1 and extras[0].endswith("-e '.[test]'")
