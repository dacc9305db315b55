"""``irsa-lab exec`` explains itself once per state directory: the mechanism and where the
pod's paths are on this machine print on the first exec, not on every one; a note about a
problem with the pod prints every time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from irsa_lab import constants as C
from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.in_pod import NOTES_SHOWN_FILE, note_printer
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab

ROOT = Path(__file__).resolve().parents[1]
MYPOD = yaml.safe_load((ROOT / "examples" / "mypod.yaml").read_text())
MECHANISM = (
    "mechanism: mount namespace: the pod's volumes are bind-mounted read-only at their "
    "mountPath in a private user+mount namespace, so the pod's own paths resolve (docs/in-pod.md)"
)
WHERE = (
    f"AWS_WEB_IDENTITY_TOKEN_FILE={C.TOKEN_FILE}: the pod's own path; {C.TOKEN_MOUNT_PATH} is the "
    "kubelet's host folder /tmp/x/kubelet/pods/1234/volumes/aws-iam-token, mounted read-only"
)
PROBLEM = "envFrom is not supported by the lab: those variables are not set"


def _lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("irsa-lab: ")]


def test_explanatory_notes_print_on_the_first_exec_of_a_state_dir_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = note_printer(tmp_path)
    first(MECHANISM)
    first(WHERE)
    shown = _lines(capsys.readouterr().err)
    assert shown[0] == f"irsa-lab: {MECHANISM}"
    assert f"irsa-lab: {WHERE}" in shown
    assert any("once per state directory" in ln and NOTES_SHOWN_FILE in ln for ln in shown)

    again = note_printer(tmp_path)  # the next `irsa-lab exec`, a new process
    again(MECHANISM)
    again(WHERE)
    assert capsys.readouterr().err == ""


def test_a_note_about_a_problem_prints_every_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for _ in range(2):
        note_printer(tmp_path)(PROBLEM)
        assert _lines(capsys.readouterr().err) == [f"irsa-lab: {PROBLEM}"]


def test_another_state_dir_or_another_mechanism_is_explained_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    note_printer(tmp_path / "a")(MECHANISM)
    capsys.readouterr()
    (tmp_path / "b").mkdir()
    note_printer(tmp_path / "b")(MECHANISM)
    assert f"irsa-lab: {MECHANISM}" in _lines(capsys.readouterr().err)
    rewriting = "mechanism: path rewriting (IRSA_LAB_MOUNTS=0 asks for it): pod paths ..."
    note_printer(tmp_path / "b")(rewriting)
    assert f"irsa-lab: {rewriting}" in _lines(capsys.readouterr().err)


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[Lab]:
    stack = EmbeddedLab(
        state_dir=tmp_path / "state", seed=DEFAULT_SEED, clock=ManualClock(LAB_EPOCH)
    ).start()
    handle = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    try:
        yield handle
    finally:
        handle.close()


def test_irsa_lab_exec_twice_prints_its_notes_the_first_time_only(
    lab: Lab, capfd: pytest.CaptureFixture[str]
) -> None:
    from irsa_lab import cli

    lab.create_pod(MYPOD)
    (lab.state_dir / "lab.pid").write_text(f"{os.getpid()}\n")
    argv = ["exec", "--state-dir", str(lab.state_dir), "mypod", "--", "cat", C.TOKEN_FILE]
    capfd.readouterr()
    assert cli.main(argv) == 0
    out, err = capfd.readouterr()
    assert out == lab.read_token()
    notes = _lines(err)
    assert any(n.startswith("irsa-lab: mechanism: ") for n in notes)
    assert any("AWS_WEB_IDENTITY_TOKEN_FILE" in n for n in notes)

    assert cli.main(argv) == 0
    out, err = capfd.readouterr()
    assert out == lab.read_token()
    assert _lines(err) == []
