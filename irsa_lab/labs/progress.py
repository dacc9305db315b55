"""The learner's progress across the labs, kept in ``progress.json`` in the state directory.

The file lives in ``$IRSA_LAB_STATE_DIR`` (else ``~/.irsa-lab``), not in the embedded
stack's private temp folder, so it survives a kernel restart. What it prints has no
timestamps: notebooks that show the table stay deterministic.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FORMAT_VERSION", "PROGRESS_FILE", "Entry", "Progress", "progress_path"]

PROGRESS_FILE = "progress.json"
FORMAT_VERSION = 1


def progress_path(state_dir: Path | None = None) -> Path:
    """``<state dir>/progress.json``; the state dir follows the CLI contract."""
    from ..stack import default_state_dir

    return (state_dir or default_state_dir()) / PROGRESS_FILE


@dataclass
class Entry:
    """One exercise's record: how many checks, whether it passed, what help was used."""

    checks: int = 0
    solved: bool = False
    last_hint: str = ""
    solution_viewed: bool = False
    solution_applied: bool = False

    @property
    def status(self) -> str:
        if self.solved:
            return "solved (with the solution)" if self.solution_applied else "solved"
        return "in progress" if self.checks else "not started"


@dataclass
class Progress:
    """Read, update and show ``progress.json``; every change is written at once."""

    path: Path = field(default_factory=progress_path)
    entries: dict[str, Entry] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> Progress:
        """The progress saved at ``path``; a missing or unreadable file is a fresh start."""
        target = path or progress_path()
        entries: dict[str, Entry] = {}
        try:
            raw = json.loads(target.read_text())
            for key, value in dict(raw.get("exercises", {})).items():
                known = {k: v for k, v in dict(value).items() if k in Entry.__dataclass_fields__}
                entries[str(key)] = Entry(**known)
        except (OSError, ValueError, TypeError, AttributeError):
            entries = {}
        return cls(target, entries)

    def entry(self, exercise_id: str) -> Entry:
        return self.entries.setdefault(exercise_id, Entry())

    def record_check(self, exercise_id: str, passed: bool, hint: str = "") -> None:
        e = self.entry(exercise_id)
        e.checks += 1
        e.solved = e.solved or passed
        if not passed:
            e.last_hint = hint
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
        }
        fd, tmp = tempfile.mkstemp(prefix=".progress-", dir=self.path.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, self.path)

    def table(self, exercises: Iterable[tuple[str, str]]) -> str:
        """A plain-text table of ``(id, title)`` rows with each one's status."""
        rows = [("lab", "exercise", "status", "checks", "last hint")]
        done = 0
        total = 0
        for ex_id, title in exercises:
            e = self.entries.get(ex_id, Entry())
            total += 1
            done += e.solved
            rows.append((ex_id, title, e.status, str(e.checks), e.last_hint or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.append(f"{done} of {total} solved")
        return "\n".join(lines)
