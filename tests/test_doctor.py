"""``irsa-lab doctor``: every failing check names its fix, and the exit code says so."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from irsa_lab import cli, doctor
from irsa_lab.doctor import Check
from irsa_lab.kind import checks

ROOT = Path(__file__).resolve().parents[1]


def _hide(monkeypatch: pytest.MonkeyPatch, *tools: str) -> None:
    real = shutil.which

    def which(name: str, *args: object, **kwargs: object) -> str | None:
        return None if name in tools else real(name)

    monkeypatch.setattr(shutil, "which", which)


def _fake_run(monkeypatch: pytest.MonkeyPatch, answers: dict[str, tuple[int, str, str]]) -> None:
    def run(argv: list[str], timeout: float = 20) -> tuple[int, str, str]:
        return answers.get(argv[0], (127, "", f"{argv[0]}: not found"))

    monkeypatch.setattr(checks, "_run", run)


def test_every_failing_check_names_a_fix_when_the_tools_are_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hide(monkeypatch, "docker", "kind", "kubectl", "aws")
    monkeypatch.setenv("IRSA_LAB_BACKEND", "kind")
    results = doctor.run_checks(tmp_path)
    failed = {c.name: c for c in results if not c.ok}
    assert {"kind: docker engine", "kind: kind CLI", "kind: kubectl", "kubectl"} <= set(failed)
    assert all(c.fix for c in failed.values()), [c for c in failed.values() if not c.fix]
    assert "kind.sigs.k8s.io" in failed["kind: kind CLI"].fix
    assert "docs.docker.com" in failed["kind: docker engine"].fix


def test_a_docker_engine_that_does_not_answer_fails_with_the_command_that_starts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")
    _fake_run(
        monkeypatch,
        {"docker": (1, "", "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.")},
    )
    result = checks.check_docker(checks.docker_info())
    assert not result.ok
    assert "Cannot connect" in result.detail
    assert "systemctl start docker" in result.fix and "docker info" in result.fix


def test_a_running_docker_engine_passes_and_its_cgroup_version_is_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")
    info = {"ServerVersion": "27.1.0", "OperatingSystem": "Ubuntu", "CgroupVersion": "1"}
    _fake_run(monkeypatch, {"docker": (0, json.dumps(info), "")})
    found = checks.docker_info()
    assert checks.check_docker(found).ok
    cgroups = checks.check_cgroups(found)
    assert not cgroups.ok and "cgroup v1" in cgroups.detail
    assert "systemd.unified_cgroup_hierarchy=1" in cgroups.fix
    assert checks.check_cgroups({**info, "CgroupVersion": "2"}).ok


@pytest.mark.parametrize(
    ("output", "ok"),
    [
        ("kind v0.32.0 go1.24.2 linux/amd64", True),
        ("kind v0.33.1 go1.25 darwin/arm64", True),
        ("kind v0.27.0 go1.23.6 linux/amd64", False),
    ],
)
def test_kind_older_than_v0_32_fails_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, output: str, ok: bool
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: f"/usr/bin/{name}")
    _fake_run(monkeypatch, {"kind": (0, output, "")})
    result = checks.check_kind()
    assert result.ok is ok
    assert ok or "go install sigs.k8s.io/kind@v0.32.0" in result.fix


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify limits are Linux only")
def test_inotify_limits_below_kinds_minimum_fail_with_the_sysctl_that_raises_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "max_user_watches").write_text("8192\n")
    (tmp_path / "max_user_instances").write_text("1024\n")
    monkeypatch.setattr(checks, "PROC_INOTIFY", tmp_path)
    watches, instances = checks.check_inotify()
    assert not watches.ok
    assert watches.fix.startswith("sudo sysctl fs.inotify.max_user_watches=524288")
    assert instances.ok and not instances.fix


def test_without_the_kind_backend_doctor_reports_kind_as_optional(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _hide(monkeypatch, "docker", "kind")
    monkeypatch.delenv("IRSA_LAB_BACKEND", raising=False)
    (summary,) = doctor.check_kind_backend()
    assert summary.ok
    assert "docker engine" in summary.detail and "irsa-lab kind doctor" in summary.detail


def test_cli_doctor_exits_0_when_every_check_passes_and_1_when_one_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    good = [Check("a", True, "fine")]
    monkeypatch.setattr(doctor, "run_checks", lambda state: good)
    assert cli.main(["doctor", "--state-dir", str(tmp_path)]) == 0
    monkeypatch.setattr(
        doctor, "run_checks", lambda state: [*good, Check("b", False, "broken", "do x")]
    )
    assert cli.main(["doctor", "--state-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] b: broken" in out and "fix: do x" in out


def test_the_real_doctor_command_exits_1_exactly_when_it_prints_a_failure(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "irsa_lab.cli", "doctor", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    lines = p.stdout.splitlines()
    assert lines and all(ln.startswith(("[ok  ]", "[FAIL]", "       fix: ")) for ln in lines), (
        p.stdout
    )
    assert p.returncode == (1 if any(ln.startswith("[FAIL]") for ln in lines) else 0), p.stderr
    assert any("kind backend" in ln for ln in lines)


def test_kind_doctor_lists_the_kind_checks_and_fails_while_one_blocks(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _hide(monkeypatch, "kind")
    assert cli.main(["kind", "doctor", "--state-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] kind: kind CLI: kind is not on PATH" in out
    assert "fix: install kind v0.32.0" in out


def test_without_kubectl_on_path_doctor_names_the_pinned_checksummed_download(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from irsa_lab import kubectl_pin

    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no kubectl anywhere
    monkeypatch.setattr(kubectl_pin, "this_platform", lambda: "linux/amd64")
    check = doctor.check_kubectl()
    assert not check.ok
    assert kubectl_pin.KUBECTL_VERSION in check.detail
    assert kubectl_pin.download_url("linux/amd64") in check.fix
    assert (
        f'echo "{kubectl_pin.KUBECTL_SHA256["linux/amd64"]}  kubectl" | sha256sum -c' in check.fix
    )
    assert "python -m irsa_lab.kubectl_pin" in check.fix


def test_the_pinned_download_command_uses_each_platforms_checksum_tool() -> None:
    from irsa_lab.kubectl_pin import KUBECTL_SHA256, install_command

    assert "shasum -a 256 -c" in install_command("darwin/arm64")
    assert KUBECTL_SHA256["darwin/arm64"] in install_command("darwin/arm64")
    assert "Get-FileHash" in install_command("windows/amd64")
    assert "kubernetes.io/docs/tasks/tools" in install_command("plan9/386")


@pytest.mark.parametrize(
    ("version", "ok"),
    [((3, 10, 12), False), ((3, 11, 0), True), ((3, 13, 1), True), ((3, 14, 0), False)],
)
def test_doctor_accepts_exactly_the_python_versions_pyproject_allows(
    version: tuple[int, int, int], ok: bool
) -> None:
    import tomllib

    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11,<3.14"
    check = doctor.check_python(version)
    assert check.ok is ok
    if not ok:
        assert "3.11, 3.12 or 3.13" in check.fix
