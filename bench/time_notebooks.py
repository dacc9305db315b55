"""Machine time of each guided notebook and each lab notebook, for docs/workshop.md.

Each notebook runs alone in a fresh kernel with nbclient on the embedded backend (its own
state directory), one after the other; a lab runs twice: as shipped (the learner's first
attempt, its check says "not solved yet") and with the solution applied before the check
(the run that passes). The figures are wall-clock seconds from kernel start to the last
cell, so they include starting the lab in the kernel. Usage::

    .venv/bin/python bench/time_notebooks.py [--out timings.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def _run(nb: Any, folder: Path) -> float:
    with tempfile.TemporaryDirectory(prefix="irsa-lab-timing-") as state:
        env = {**os.environ, "IRSA_LAB_STATE_DIR": state, "IRSA_LAB_BACKEND": "embedded"}
        client = NotebookClient(
            nb,
            timeout=180,
            startup_timeout=120,
            kernel_name="python3",
            allow_errors=False,
            resources={"metadata": {"path": str(folder)}},
        )
        start = time.monotonic()
        client.execute(env=env)
        return time.monotonic() - start


def _with_solution(nb: Any, exercise_id: str) -> Any:
    solved = nbformat.from_dict(nb)
    check = next(
        i
        for i, c in enumerate(solved.cells)
        if c.cell_type == "code" and "check" in c.metadata.get("tags", [])
    )
    solved.cells.insert(check, nbformat.v4.new_code_cell(f'labs.apply_solution("{exercise_id}")'))
    return solved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from irsa_lab.labs import EXERCISES

    rows: list[dict[str, Any]] = []
    for path in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        seconds = _run(nb, path.parent)
        rows.append({"notebook": f"notebooks/{path.name}", "seconds": round(seconds, 1)})
        print(f"{rows[-1]['notebook']}: {seconds:.1f} s", flush=True)
    for ex in EXERCISES:
        path = ROOT / "labs" / f"{ex.name}.ipynb"
        shipped = nbformat.read(path, as_version=4)
        first = _run(shipped, path.parent)
        solved = _run(_with_solution(shipped, ex.id), path.parent)
        rows.append(
            {
                "notebook": f"labs/{path.name}",
                "seconds": round(first, 1),
                "solved_seconds": round(solved, 1),
            }
        )
        print(f"labs/{path.name}: {first:.1f} s as shipped, {solved:.1f} s solved", flush=True)
    report = {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_after": list(os.getloadavg()),
        "rows": rows,
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
