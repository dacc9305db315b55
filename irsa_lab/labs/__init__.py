"""Break-and-fix labs: each exercise breaks one link of the IRSA chain on purpose.

In a lab notebook::

    from irsa_lab import labs
    ex = labs.start("01")   # the chain, broken; prints the story's set-up and the goal
    ex.whoami()             # what the pod sees: aws sts get-caller-identity inside it
    ...                     # the learner's fix, with the kubernetes client and boto3
    ex.check()              # ✔ solved, or ✘ not solved yet [hint name]: why
    ex.hints()              # three folded hints: a nudge, the concept, the solution
    ex.hint(2)              # prints one hint; the progress table notes the highest opened
    labs.progress()         # the tables of the guided notebooks and all labs, kept in
                            # <state dir>/progress.json

``labs.show_solution("01")`` prints the hidden solution (``labs/solutions/``),
``labs.apply_solution("01")`` runs it; ``labs.reset("01")`` rebuilds the broken state.

A guided notebook records itself: ``labs.notebook_started("02")`` near its top,
``labs.notebook_finished("02")`` in its last cell.
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
    notebook_finished,
    notebook_started,
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
    "notebook_finished",
    "notebook_started",
    "progress",
    "progress_path",
    "reset",
    "show_solution",
    "start",
    "whoami",
]
