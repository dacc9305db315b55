"""The hidden solutions: ``labs/solutions/<id>-<slug>.py``, shown or run only on request.

They live next to the lab notebooks, not in them, so a learner sees one only when
asking for it (the jupyter-widgets tutorial's ``solutions/*.py`` habit); each is a
plain script a learner could paste into the fix cell, and tests run every one.
"""

from __future__ import annotations

import os
from pathlib import Path

from .exercise import Exercise

__all__ = ["SolutionMissing", "labs_dir", "run_solution", "solution_path", "solution_source"]


class SolutionMissing(FileNotFoundError):
    """Raised when an exercise's solution file cannot be found."""


def labs_dir() -> Path:
    """``$IRSA_LAB_LABS_DIR``, else the ``labs/`` folder of the checkout."""
    env = os.environ.get("IRSA_LAB_LABS_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "labs"


def solution_path(exercise: Exercise) -> Path:
    path = labs_dir() / "solutions" / f"{exercise.name}.py"
    if not path.is_file():
        raise SolutionMissing(
            f"no solution file {path}: set IRSA_LAB_LABS_DIR to the labs/ folder of irsa-lab"
        )
    return path


def solution_source(exercise: Exercise) -> str:
    return solution_path(exercise).read_text()


def run_solution(exercise: Exercise) -> None:
    """Execute the solution script as a notebook cell would (its own globals)."""
    path = solution_path(exercise)
    code = compile(path.read_text(), str(path), "exec")
    exec(code, {"__name__": "__irsa_lab_solution__", "__file__": str(path)})  # noqa: S102 - our own file
