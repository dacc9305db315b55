"""Break-and-fix labs: each exercise breaks one link of the IRSA chain on purpose.

In a lab notebook::

    from irsa_lab import labs
    ex = labs.start("01")   # the chain, broken; prints the story's set-up and the goal
    ex.whoami()             # what the pod sees: aws sts get-caller-identity inside it
    ...                     # the learner's fix, with the kubernetes client and boto3
    ex.check()              # ✔ solved, or ✘ not solved yet [hint name]: why
    ex.hints()              # three folded hints: a nudge, the concept, the solution
    labs.progress()         # the table of all labs, kept in <state dir>/progress.json

``labs.show_solution("01")`` prints the hidden solution (``labs/solutions/``),
``labs.apply_solution("01")`` runs it; ``labs.reset("01")`` rebuilds the broken state.
"""

from __future__ import annotations

from .catalog import EXERCISES
from .exercise import CheckResult, Exercise, Hints, NotSolved
from .probes import Identity, modify_instance_metadata_options
from .progress import Progress, progress_path
from .runner import (
    LabExercise,
    apply_solution,
    check,
    get,
    hint,
    progress,
    reset,
    show_solution,
    start,
    whoami,
)

__all__ = [
    "EXERCISES",
    "CheckResult",
    "Exercise",
    "Hints",
    "Identity",
    "LabExercise",
    "NotSolved",
    "Progress",
    "apply_solution",
    "check",
    "get",
    "hint",
    "modify_instance_metadata_options",
    "progress",
    "progress_path",
    "reset",
    "show_solution",
    "start",
    "whoami",
]
