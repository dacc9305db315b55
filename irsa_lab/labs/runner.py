"""Running an exercise: start (break), check, hints, reset, solutions, progress; and the
guided notebooks' own progress records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .baseline import restore_default
from .catalog import BY_ID, EXERCISES
from .exercise import CheckResult, Exercise, Hints, NotSolved
from .progress import GUIDED_NOTEBOOKS, Progress
from .solutions import run_solution, solution_source

if TYPE_CHECKING:
    from ..session import Lab

HELP = "run labs.reset({id!r}) to rebuild the exercise; irsa-lab doctor checks the machine"


def get(exercise: str | int) -> Exercise:
    """An exercise by id (``"01"``, ``1``), name (``"01-unmutated-pod"``) or slug."""
    key = str(exercise).strip()
    if key.isdigit():
        key = f"{int(key):02d}"
    for ex in EXERCISES:
        if key in (ex.id, ex.slug, ex.name):
            return ex
    known = ", ".join(ex.name for ex in EXERCISES)
    raise KeyError(f"no lab {exercise!r}; the labs are: {known}")


def _lab(lab: Lab | None) -> Lab:
    if lab is not None:
        return lab
    from ..session import lab as current

    return current()


def reset(exercise: str | int, lab: Lab | None = None) -> Exercise:
    """Rebuild an exercise's broken state from the default scenario, and say so."""
    ex = get(exercise)
    the_lab = _lab(lab)
    restore_default(the_lab)
    ex.setup(the_lab)
    return ex


def start(exercise: str | int, lab: Lab | None = None) -> LabExercise:
    """Break the chain for this exercise and return its handle; prints the scene."""
    ex = reset(exercise, lab)
    handle = LabExercise(ex, lab)
    print(f"Lab {ex.id}: {ex.title} ({ex.stage})")
    print(f"Set up: {ex.scene}")
    print(f"Your goal: {ex.goal}")
    return handle


def check(exercise: str | int, lab: Lab | None = None, *, quiet: bool = False) -> CheckResult:
    """Check the real outcome; prints a pass or a named hint and never raises."""
    ex_id = str(exercise)
    try:
        ex = get(exercise)
        ex_id = ex.id
        the_lab = _lab(lab)
        try:
            message = ex.verify(the_lab)
            result = CheckResult(ex.id, True, "", message)
        except NotSolved as err:
            result = CheckResult(ex.id, False, err.hint, err.message)
    except Exception as err:  # a check must never raise in a learner's notebook
        detail = f"{type(err).__name__}: {err}".splitlines()[0]
        result = CheckResult(
            ex_id, False, "could-not-check", f"{detail} ({HELP.format(id=ex_id)})", error=True
        )
    if not result.error:
        try:
            Progress.load().record_check(result.exercise, result.passed, result.hint)
        except OSError as err:
            if not quiet:
                print(f"(progress not saved: {err})")
    if not quiet:
        print(result)
    return result


def hint(exercise: str | int, level: int = 1) -> str:
    """Hint ``level`` (1 a nudge, 2 the concept with a pointer, 3 the solution in words)."""
    ex = get(exercise)
    if level not in (1, 2, 3):
        raise ValueError("hint levels are 1, 2 and 3")
    text = ex.hints[level - 1]
    if level == 3:
        text += f'\n(the code: labs.show_solution("{ex.id}"); to run it: labs.apply_solution("{ex.id}"))'
    print(f"Hint {level} for lab {ex.id}: {text}")
    try:
        Progress.load().record_hint(ex.id, level)
    except OSError as err:
        print(f"(progress not saved: {err})")
    return text


def show_solution(exercise: str | int) -> None:
    """Print the solution script of an exercise (and note that it was looked at)."""
    ex = get(exercise)
    source = solution_source(ex)
    Progress.load().record_solution(ex.id, applied=False)
    print(source)


def apply_solution(exercise: str | int) -> None:
    """Run the solution script of an exercise against this process's lab."""
    ex = get(exercise)
    run_solution(ex)
    Progress.load().record_solution(ex.id, applied=True)
    print(f"Applied the solution of lab {ex.id}; run the check to see the outcome.")


def progress() -> None:
    """Print the progress of the guided notebooks and of every lab (saved in the state
    directory): the overview an instructor asks for."""
    saved = Progress.load()
    print("Guided notebooks")
    print(saved.notebooks_table())
    print()
    print("Labs")
    print(saved.table((ex.id, ex.title) for ex in EXERCISES))


def _notebook_id(notebook: str | int) -> str:
    key = str(notebook).strip()
    key = f"{int(key):02d}" if key.isdigit() else key.split("-", 1)[0]
    known = [nb_id for nb_id, _ in GUIDED_NOTEBOOKS]
    if key not in known:
        raise KeyError(f"no guided notebook {notebook!r}; they are: {', '.join(known)}")
    return key


def notebook_started(notebook: str | int) -> None:
    """Note that guided notebook ``notebook`` (``"02"``, ``2``, ``"02-the-token"``) was
    started; its first cells call this. Prints nothing."""
    try:
        Progress.load().record_notebook(_notebook_id(notebook), finished=False)
    except OSError:
        pass  # progress is a convenience: a read-only home must not stop a lesson


def notebook_finished(notebook: str | int) -> None:
    """Note that guided notebook ``notebook`` ran to its end; its last cell calls this."""
    nb_id = _notebook_id(notebook)
    try:
        Progress.load().record_notebook(nb_id, finished=True)
    except OSError as err:
        print(f"(progress not saved: {err})")
        return
    print(f"Notebook {nb_id} done: labs.progress() shows every notebook and lab.")


def whoami(exercise: str | int, lab: Lab | None = None) -> str:
    """What the exercise's pod sees: ``aws sts get-caller-identity`` run inside it."""
    from .probes import PodMissing
    from .probes import whoami as probe

    ex = get(exercise)
    try:
        text = f"{ex.namespace}/{ex.pod}: {probe(_lab(lab), ex.pod, ex.namespace).summary}"
    except PodMissing as err:
        text = f"{ex.namespace}/{ex.pod}: {err}"
    print(text)
    return text


class LabExercise:
    """The handle a lab notebook holds: ``ex.check()``, ``ex.hints()``, ``ex.reset()``..."""

    def __init__(self, exercise: Exercise, lab: Lab | None = None) -> None:
        self.exercise = exercise
        self._lab = lab

    def __repr__(self) -> str:
        return f"<lab {self.exercise.name}: {self.exercise.title}>"

    @property
    def lab(self) -> Lab:
        return _lab(self._lab)

    def whoami(self) -> None:
        """Print what the pod sees (``aws sts get-caller-identity`` inside it)."""
        whoami(self.exercise.id, self._lab)

    def check(self) -> CheckResult:
        """Print a pass or a named hint; the result is returned for tests."""
        return check(self.exercise.id, self._lab)

    def hints(self) -> Hints:
        """The three hints, folded (open them one at a time)."""
        return Hints(self.exercise)

    def hint(self, level: int = 1) -> None:
        hint(self.exercise.id, level)

    def reset(self) -> None:
        """Rebuild the broken state, to try again."""
        reset(self.exercise.id, self._lab)
        print(f"Lab {self.exercise.id} is broken again, as at the start.")

    def show_solution(self) -> None:
        show_solution(self.exercise.id)

    def apply_solution(self) -> None:
        apply_solution(self.exercise.id)


__all__ = [
    "BY_ID",
    "LabExercise",
    "apply_solution",
    "check",
    "get",
    "hint",
    "notebook_finished",
    "notebook_started",
    "progress",
    "reset",
    "show_solution",
    "start",
    "whoami",
]
