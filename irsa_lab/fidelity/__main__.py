"""``make fidelity``: run every differential suite and write ``docs/fidelity.md``.

``python -m irsa_lab.fidelity [OUT]`` exits 1 when a suite found a difference that is
not accepted (a defect), 2 when the real programs are missing (the message names
``make k8s-bin``), else 0. ``python -m irsa_lab.fidelity --aws-section [OUT]`` rewrites
only the AWS section of an existing ``OUT`` (it needs no real program: nothing in it is
measured).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..backends import binaries
from .report import SuiteResult, aws_section, lab_section, render

AWS_HEADING = "\n## The AWS stand-ins against AWS\n"
LAB_HEADING = "\n## Inside a pod, and the records of it, against EKS\n"

__all__ = ["main", "run_suites"]


def run_suites() -> list[SuiteResult]:
    """Run the webhook suite, then the API server suite; print each one's summary."""
    from . import apiserver, webhook

    results = []
    for suite in (webhook, apiserver):
        started = time.monotonic()
        result = suite.run()
        result.seconds = time.monotonic() - started
        print(result.summary(), flush=True)
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    """``python -m irsa_lab.fidelity [OUT]``; the exit code is the module docstring's."""
    args = sys.argv[1:] if argv is None else argv
    aws_only = "--aws-section" in args
    args = [a for a in args if a != "--aws-section"]
    out = Path(args[0]) if args else Path("docs/fidelity.md")
    if aws_only:
        text = out.read_text()
        cut = LAB_HEADING if LAB_HEADING in text else AWS_HEADING
        measured = text.split(cut)[0].rstrip("\n")
        out.write_text(measured + "\n" + "\n".join(lab_section() + aws_section()) + "\n")
        print(f"fidelity: rewrote the sections that are not measured in {out}")
        return 0
    absent = binaries.missing()
    if absent:
        print(f"fidelity: {binaries.not_built(absent)}", file=sys.stderr)
        return 2
    results = run_suites()
    out.write_text(render(results))
    print(f"fidelity: wrote {out}")
    return 1 if any(r.unexplained for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
