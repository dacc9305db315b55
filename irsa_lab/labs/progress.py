"""The learner's progress across the guided notebooks and the labs, kept in
``progress.json`` in the state directory.

The file lives in ``$IRSA_LAB_STATE_DIR`` (else ``~/.irsa-lab``), not in the embedded
stack's private temp folder, so it survives a kernel restart. What it prints has no
timestamps: notebooks that show the table stay deterministic.

A lab's record is written by its own calls (``check``, ``hint``, ``show_solution``...).
A guided notebook's comes from two calls its cells make: :func:`notebook_started` near
the top and :func:`notebook_finished` in its last cell. Each notebook kernel of the
embedded backend runs a lab of its own, so nothing in one lab shows what another
notebook did: the record in this shared file is the evidence.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "GUIDED_NOTEBOOKS",
    "HINT_COUNT",
    "PROGRESS_FILE",
    "Entry",
    "NotebookEntry",
    "Progress",
    "progress_path",
]

PROGRESS_FILE = "progress.json"
FORMAT_VERSION = 1
HINT_COUNT = 3
# The guided notebooks (notebooks/NN-*.ipynb), by id, with a short name.
GUIDED_NOTEBOOKS: tuple[tuple[str, str], ...] = (
    ("00", "Start here"),
    ("01", "Pod mutation"),
    ("02", "The token"),
    ("03", "The trust-policy playground"),
    ("04", "The STS call"),
    ("05", "Without IRSA"),
    ("06", "IRSA or Pod Identity"),
)


def progress_path(state_dir: Path | None = None) -> Path:
    """``<state dir>/progress.json``; the state dir follows the CLI contract."""
    from ..stack import default_state_dir

    return (state_dir or default_state_dir()) / PROGRESS_FILE


@dataclass
class Entry:
    """One exercise's record: how many checks, whether it passed, what help was used."""

    checks: int = 0
    solved: bool = False
    last_hint: str = ""  # the name the last failed check gave (``node-role`` ...)
    solution_viewed: bool = False
    solution_applied: bool = False
    hint_level: int = 0  # the highest hint opened, 0 to 3

    @property
    def status(self) -> str:
        if self.solved:
            return "solved (with the solution)" if self.solution_applied else "solved"
        return "in progress" if self.checks or self.hint_level else "not started"

    @property
    def hints_shown(self) -> str:
        """``2 of 3`` (the highest level opened), ``-`` for none; the solution noted."""
        shown = f"{self.hint_level} of {HINT_COUNT}" if self.hint_level else "-"
        return f"{shown}, solution seen" if self.solution_viewed else shown


@dataclass
class NotebookEntry:
    """A guided notebook's record: started (its first cells ran), finished (its last)."""

    started: bool = False
    finished: bool = False

    @property
    def status(self) -> str:
        if self.finished:
            return "finished"
        return "started" if self.started else "not started"


@dataclass
class Progress:
    """Read, update and show ``progress.json``; every change is written at once."""

    path: Path = field(default_factory=progress_path)
    entries: dict[str, Entry] = field(default_factory=dict)
    notebooks: dict[str, NotebookEntry] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> Progress:
        """The progress saved at ``path``; a missing or unreadable file is a fresh start."""
        target = path or progress_path()
        entries: dict[str, Entry] = {}
        notebooks: dict[str, NotebookEntry] = {}
        try:
            raw = json.loads(target.read_text())
            for key, value in dict(raw.get("exercises", {})).items():
                known = {k: v for k, v in dict(value).items() if k in Entry.__dataclass_fields__}
                entries[str(key)] = Entry(**known)
            for key, value in dict(raw.get("notebooks", {})).items():
                fields = NotebookEntry.__dataclass_fields__
                notebooks[str(key)] = NotebookEntry(
                    **{k: bool(v) for k, v in dict(value).items() if k in fields}
                )
        except (OSError, ValueError, TypeError, AttributeError):
            entries, notebooks = {}, {}
        return cls(target, entries, notebooks)

    def entry(self, exercise_id: str) -> Entry:
        return self.entries.setdefault(exercise_id, Entry())

    def record_check(self, exercise_id: str, passed: bool, hint: str = "") -> None:
        e = self.entry(exercise_id)
        e.checks += 1
        e.solved = e.solved or passed
        if not passed:
            e.last_hint = hint
        self.save()

    def record_hint(self, exercise_id: str, level: int) -> None:
        """Hint ``level`` was opened; the highest one opened is kept."""
        e = self.entry(exercise_id)
        e.hint_level = max(e.hint_level, level)
        self.save()

    def record_notebook(self, notebook_id: str, *, finished: bool) -> None:
        """A guided notebook was started, or (``finished``) its last cell ran."""
        n = self.notebooks.setdefault(notebook_id, NotebookEntry())
        n.started = True
        n.finished = n.finished or finished
        self.save()

    def record_solution(self, exercise_id: str, *, applied: bool) -> None:
        e = self.entry(exercise_id)
        e.solution_viewed = True
        e.solution_applied = e.solution_applied or applied
        self.save()

    def forget(self, exercise_id: str) -> None:
        """Start an exercise over: its record is dropped."""
        self.entries.pop(exercise_id, None)
        self.save()

    def save(self) -> None:
        """Write atomically (a rename), so a crash never leaves half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "exercises": {k: asdict(v) for k, v in sorted(self.entries.items())},
            "notebooks": {k: asdict(v) for k, v in sorted(self.notebooks.items())},
        }
        fd, tmp = tempfile.mkstemp(prefix=".progress-", dir=self.path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, self.path)

    def table(self, exercises: Iterable[tuple[str, str]]) -> str:
        """A plain-text table of ``(id, title)`` rows with each one's status.

        ``hints`` is the highest hint level opened (``2 of 3``); ``last check`` the
        name the last failed check gave.
        """
        rows = [("lab", "exercise", "status", "checks", "hints", "last check")]
        done = 0
        total = 0
        for ex_id, title in exercises:
            e = self.entries.get(ex_id, Entry())
            total += 1
            done += e.solved
            rows.append((ex_id, title, e.status, str(e.checks), e.hints_shown, e.last_hint or "-"))
        return _aligned(rows) + f"\n{done} of {total} solved"

    def notebooks_table(self, notebooks: Iterable[tuple[str, str]] = GUIDED_NOTEBOOKS) -> str:
        """The guided notebooks' table: each one not started, started or finished."""
        rows = [("notebook", "title", "status")]
        done = 0
        total = 0
        for nb_id, title in notebooks:
            n = self.notebooks.get(nb_id, NotebookEntry())
            total += 1
            done += n.finished
            rows.append((nb_id, title, n.status))
        return _aligned(rows) + f"\n{done} of {total} finished"


def _aligned(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
