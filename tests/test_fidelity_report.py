"""docs/fidelity.md as make fidelity writes it: every section, and the AWS section kept true."""

from __future__ import annotations

from pathlib import Path

from irsa_lab.fidelity.aws_differences import AWS_DIFFERENCES
from irsa_lab.fidelity.report import Difference, SuiteResult, render

DOC = Path(__file__).resolve().parent.parent / "docs" / "fidelity.md"


def _result(differences: list[Difference]) -> SuiteResult:
    return SuiteResult(
        name="s", title="Suite", standin="a", real="b", cases=3, differences=differences
    )


def test_the_report_counts_and_flags_what_is_not_accepted() -> None:
    text = render(
        [_result([Difference("c", "body.x", "1", "2", ""), Difference("d", "y", "1", "2", "ok")])],
        deviations=[("w", "here", "there", "why")],
    )
    assert "**3 cases compared, 2 differences, 1 not accepted.**" in text
    assert "**not accepted: a defect to fix**" in text
    assert "| w | here | there | why |" in text


def test_every_aws_difference_names_its_source_and_its_reason() -> None:
    assert AWS_DIFFERENCES
    for d in AWS_DIFFERENCES:
        assert d.what and d.lab and d.aws and d.source and d.why, d
    text = render([_result([])], deviations=[])
    assert "## The AWS stand-ins against AWS" in text
    for d in AWS_DIFFERENCES:
        assert f"| {d.what} |" in text


def test_the_committed_document_has_the_current_aws_section() -> None:
    # make fidelity regenerates the whole file; this catches a list edited without it.
    committed = DOC.read_text()
    section = "\n".join(render([_result([])], deviations=[]).split("\n## The AWS stand-ins")[1:])
    assert section and section in committed, "run `make fidelity` to rewrite docs/fidelity.md"
