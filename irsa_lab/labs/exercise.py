"""An exercise: a chain broken on purpose, a check of the real outcome, levelled hints.

A check never raises: it returns a :class:`CheckResult` and prints one line that is
either a pass or "not solved yet" with a named hint; anything unexpected becomes
"could not check: ..." with what to do next.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..session import Lab

__all__ = ["HINT_LEVELS", "CheckResult", "Exercise", "Hints", "NotSolved"]

HINT_LEVELS = ("a nudge", "the concept", "the solution")


class NotSolved(Exception):
    """Raised by an exercise's verify step: ``hint`` names what is still wrong."""

    def __init__(self, hint: str, message: str) -> None:
        super().__init__(message)
        self.hint = hint
        self.message = message


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check; ``hint`` is empty when it passed."""

    exercise: str
    passed: bool
    hint: str
    message: str
    error: bool = False

    def _ipython_display_(self) -> None:
        """Shown already: :func:`check` printed it; a notebook shows it only once."""

    def __str__(self) -> str:
        if self.passed:
            return f"✔ lab {self.exercise} solved: {self.message}"
        if self.error:
            return f"⚠ lab {self.exercise}: could not check: {self.message}"
        return f"✘ lab {self.exercise} not solved yet [{self.hint}]: {self.message}"


@dataclass(frozen=True)
class Exercise:
    """One break-and-fix exercise.

    ``setup`` breaks the default scenario; ``verify`` returns a success sentence or
    raises :class:`NotSolved`; ``hints`` are the three levels (nudge, concept with a
    pointer to the notebook section, solution in words).
    """

    id: str
    slug: str
    title: str
    stage: str
    story: str
    scene: str
    goal: str
    setup: Callable[[Lab], None]
    verify: Callable[[Lab], str]
    hints: tuple[str, str, str]
    pod: str = "mypod"
    namespace: str = "default"

    @property
    def name(self) -> str:
        return f"{self.id}-{self.slug}"


class Hints:
    """The three hints, folded: HTML ``<details>`` a learner opens one by one.

    The plain-text form names the levels without giving them away, so a notebook run
    from top to bottom does not print the answer.
    """

    def __init__(self, exercise: Exercise) -> None:
        self.exercise = exercise

    def __repr__(self) -> str:
        ex = self.exercise.id
        levels = ", ".join(f"hint({i}) {what}" for i, what in enumerate(HINT_LEVELS, 1))
        return (
            f"3 hints for lab {ex}: {levels}; open one at a time "
            "(ex.hint(1) prints the first and notes it in your progress)"
        )

    def _repr_html_(self) -> str:
        blocks = []
        for i, (what, text) in enumerate(zip(HINT_LEVELS, self.exercise.hints, strict=True), 1):
            body = html.escape(text).replace("\n", "<br>")
            blocks.append(
                f"<details><summary>Hint {i}: {what}</summary>"
                f'<div style="margin:0.3em 1.5em">{body}</div></details>'
            )
        return "\n".join(blocks)
