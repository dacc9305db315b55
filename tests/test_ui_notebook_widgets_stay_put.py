"""A widget displayed in a guided notebook still shows, after Run All, the state the text
beside it describes: no later cell changes a widget displayed above it.

Notebook 03 runs in a fresh kernel (nbclient) with one cell added after each cell that
displays a playground or a decoder, which records the widget's inputs and verdict, and
one cell at the end that compares them with the widget's state after every cell ran.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 120
MARK = "widgets displayed above, unchanged:"
# display(name) of a widget with StaticFallback (a readable summary) and state().
DISPLAYED = re.compile(r"^display\((\w+)\)\s*$", re.MULTILINE)


def _record(name: str) -> str:
    return (
        f"__shown = globals().setdefault('__shown', {{}})\n"
        f"__shown[{name!r}] = ({name}.static_text(), {name}.state(), "
        f"getattr({name}, 'snapshot', dict)())"
    )


COMPARE = f"""\
__now = {{
    name: (w.static_text(), w.state(), getattr(w, 'snapshot', dict)())
    for name, w in ((name, globals()[name]) for name in __shown)
}}
__changed = [name for name in __shown if __now[name] != __shown[name]]
print({MARK!r}, sorted(__shown), 'changed:', __changed)
"""


def _instrumented(nb: Any) -> tuple[Any, list[str]]:
    out = nbformat.from_dict(nb)
    cells, names = [], []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type != "code":
            continue
        for name in DISPLAYED.findall(cell.source):
            names.append(name)
            cells.append(nbformat.v4.new_code_cell(_record(name)))
    cells.append(nbformat.v4.new_code_cell(COMPARE))
    out.cells = cells
    return out, names


def _stream(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if "text" in o)


@pytest.mark.parametrize("notebook", ["03-trust-policy-playground.ipynb"])
def test_after_run_all_the_displayed_widgets_are_in_the_state_they_were_displayed_in(
    notebook: str, tmp_path: Path
) -> None:
    nb, names = _instrumented(nbformat.read(NOTEBOOKS / notebook, as_version=4))
    assert names, f"{notebook} displays no widget"
    env = {**os.environ, "IRSA_LAB_STATE_DIR": str(tmp_path), "IRSA_LAB_BACKEND": "embedded"}
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=120,
        kernel_name="python3",
        allow_errors=False,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env=env)
    last = _stream(nb.cells[-1])
    assert MARK in last, last
    assert last.strip().endswith("changed: []"), last
    assert all(repr(name) in last for name in names), last
