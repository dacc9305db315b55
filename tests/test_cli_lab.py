"""`irsa-lab lab` (make lab): the JupyterLab command it runs, without starting it."""

from __future__ import annotations

import argparse

import pytest

from irsa_lab import cli


def test_lab_opens_the_first_notebook_on_loopback_with_extra_options_last() -> None:
    cmd = cli.jupyter_lab_command(["--ServerApp.port=8899"])
    assert cmd[1:3] == ["-m", "jupyterlab"]
    assert "--ServerApp.ip=127.0.0.1" in cmd
    assert "--LabApp.default_url=/lab/tree/notebooks/00-start-here.ipynb" in cmd
    assert cmd[-1] == "--ServerApp.port=8899"


def test_lab_passes_unknown_options_to_jupyter_and_selects_the_embedded_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, object] = {}

    def fake_call(cmd: list[str], env: dict[str, str]) -> int:
        seen["cmd"], seen["backend"] = cmd, env["IRSA_LAB_BACKEND"]
        return 0

    monkeypatch.setattr(cli.subprocess, "call", fake_call)
    monkeypatch.delenv("IRSA_LAB_BACKEND", raising=False)
    assert cli.main(["lab", "--ServerApp.port=8899"]) == 0
    assert seen["backend"] == "embedded"
    assert isinstance(seen["cmd"], list) and seen["cmd"][-1] == "--ServerApp.port=8899"


def test_other_commands_still_refuse_unknown_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["env", "--bogus"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert isinstance(cli.build_parser(), argparse.ArgumentParser)
