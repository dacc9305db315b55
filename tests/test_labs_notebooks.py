"""The lab notebooks run in a fresh kernel: as shipped (every check says "not solved yet",
no cell errors) and with the solution injected before the check cell (every check passes),
on the embedded backend and on the ``k8s`` one (the real kube-apiserver and upstream
webhook), with the same notebooks: the lab code never asks which backend it runs on.

Kernels run a few at a time (each starts its own lab on loopback), so the eighteen runs
of a backend take about as long as a handful would one after the other.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from irsa_lab.backends import binaries
from irsa_lab.labs import EXERCISES

LABS = Path(__file__).resolve().parents[1] / "labs"
CELL_TIMEOUT_S = 90
PARALLEL = 3


def _tagged(nb: Any, tag: str) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", [])]


def _check_cell(nb: Any) -> int:
    found = [i for i in _tagged(nb, "check") if nb.cells[i].cell_type == "code"]
    assert len(found) == 1, "a lab notebook has exactly one check cell"
    return found[0]


def _with_solution(nb: Any, exercise_id: str) -> Any:
    solved = nbformat.from_dict(nb)
    cell = nbformat.v4.new_code_cell(f'labs.apply_solution("{exercise_id}")')
    solved.cells.insert(_check_cell(solved), cell)
    return solved


def _text(cell: Any) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") == "error":
            parts.append(f"ERROR {out.get('ename')}: {out.get('evalue')}")
        else:
            parts.append(str(out.get("data", {}).get("text/plain", "")))
    return "".join(parts)


BACKENDS = [
    "embedded",
    pytest.param(
        "k8s",
        marks=pytest.mark.skipif(
            bool(binaries.missing()),
            reason=f"{', '.join(binaries.missing())} not built: run `make k8s-bin` (needs Go)",
        ),
    ),
]


async def _run(nb: Any, state_dir: Path, backend: str, gate: asyncio.Semaphore) -> Any:
    async with gate:
        env = {**os.environ, "IRSA_LAB_STATE_DIR": str(state_dir), "IRSA_LAB_BACKEND": backend}
        client = NotebookClient(
            nb,
            timeout=CELL_TIMEOUT_S,
            startup_timeout=120,
            kernel_name="python3",
            allow_errors=False,
            resources={"metadata": {"path": str(LABS)}},
        )
        await client.async_execute(env=env)
        return nb


def _run_all(jobs: list[tuple[Any, Path]], backend: str) -> list[Any]:
    async def main() -> list[Any]:
        gate = asyncio.Semaphore(PARALLEL)
        return list(await asyncio.gather(*(_run(nb, d, backend, gate) for nb, d in jobs)))

    return asyncio.run(main())


@pytest.fixture(scope="module", params=BACKENDS)
def executed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[tuple[str, str], Any]:
    backend = str(request.param)
    jobs: list[tuple[Any, Path]] = []
    keys: list[tuple[str, str]] = []
    for ex in EXERCISES:
        shipped = nbformat.read(LABS / f"{ex.name}.ipynb", as_version=4)
        for variant, nb in (("shipped", shipped), ("solved", _with_solution(shipped, ex.id))):
            keys.append((ex.id, variant))
            jobs.append((nb, tmp_path_factory.mktemp(f"state-{backend}-{ex.id}-{variant}")))
    return dict(zip(keys, _run_all(jobs, backend), strict=True))


@pytest.mark.parametrize("exercise_id", [ex.id for ex in EXERCISES])
def test_a_lab_notebook_as_shipped_runs_cleanly_and_its_check_says_not_solved_yet(
    executed: dict[tuple[str, str], Any], exercise_id: str
) -> None:
    nb = executed[(exercise_id, "shipped")]
    check = _text(nb.cells[_check_cell(nb)])
    assert f"lab {exercise_id} not solved yet [" in check, check
    assert "could not check" not in check


@pytest.mark.parametrize("exercise_id", [ex.id for ex in EXERCISES])
def test_a_lab_notebook_with_the_solution_applied_passes_its_check(
    executed: dict[tuple[str, str], Any], exercise_id: str
) -> None:
    nb = executed[(exercise_id, "solved")]
    check = _text(nb.cells[_check_cell(nb)])
    assert f"✔ lab {exercise_id} solved" in check, check


@pytest.mark.parametrize("exercise", EXERCISES, ids=lambda ex: ex.id)
def test_the_shipped_notebooks_hold_outputs_of_a_clean_run(exercise: Any) -> None:
    nb = nbformat.read(LABS / f"{exercise.name}.ipynb", as_version=4)
    assert nb.metadata["irsa_lab"]["exercise"] == exercise.id
    assert "not solved yet" in _text(nb.cells[_check_cell(nb)])
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", cell.source
    fix = [nb.cells[i] for i in _tagged(nb, "fix") if nb.cells[i].cell_type == "code"]
    assert len(fix) == 1 and all(line.startswith("#") for line in fix[0].source.splitlines())
    live = [
        line
        for c in nb.cells
        if c.cell_type == "code"
        for line in c.source.splitlines()
        if not line.lstrip().startswith("#")
    ]
    assert not any("solution" in line for line in live), "solutions stay hidden until asked for"
