"""The pre-flight check of notebook 00: one line per item, a fix for every failure."""

from __future__ import annotations

import pytest

from irsa_lab.doctor import Check
from irsa_lab.lessons import start_here


def _ok() -> Check:
    return Check("python", True, "3.11.9 at /usr/bin/python3")


def _broken_loopback() -> Check:
    return Check("loopback ports", False, "cannot bind 127.0.0.1", "ip link set lo up")


def _no_kubectl() -> Check:
    return Check(
        "kubectl", False, "not found", "install kubectl: https://kubernetes.io/docs/tasks/tools/"
    )


def test_a_failing_check_is_printed_as_fail_with_the_command_that_fixes_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = start_here.check([_ok, _broken_loopback])
    out = capsys.readouterr().out
    assert not report.ok
    assert "[FAIL] loopback ports can be opened: cannot bind 127.0.0.1" in out
    assert "       fix: ip link set lo up" in out
    assert "not ready: 1 check failed" in out
    assert report.fixes() == {"loopback ports can be opened": "ip link set lo up"}


def test_a_missing_optional_tool_is_a_note_and_does_not_fail_the_check() -> None:
    report = start_here.run([_ok, _no_kubectl])
    assert report.ok
    assert report.failures == []
    assert "[note] kubectl (optional): not found" in report.text()
    assert "fix: install kubectl" in report.text()


def test_details_such_as_versions_and_paths_are_printed_only_when_verbose() -> None:
    report = start_here.run([_ok])
    assert report.text().splitlines()[0] == "[ok  ] Python 3.11 to 3.13"
    assert "/usr/bin/python3" in report.text(verbose=True)


def test_a_check_function_may_return_several_checks() -> None:
    report = start_here.run([lambda: [_ok(), _broken_loopback()]])
    assert [i.status for i in report.items] == ["ok", "FAIL"]


def test_an_unwritable_temporary_folder_fails_with_a_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(start_here.tempfile, "TemporaryDirectory", refuse)
    check = start_here.check_temp_folder()
    assert not check.ok
    assert "Permission denied" in check.detail
    assert "TMPDIR" in check.fix


def test_this_environment_passes_every_required_check() -> None:
    report = start_here.run()
    assert report.ok, report.text(verbose=True)
    titles = [i.title for i in report.items]
    assert "ipywidgets front end matches the kernel side" in titles
    assert "loopback ports can be opened" in titles
