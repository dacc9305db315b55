"""docs/workshop.md, the instructor's kit: an agenda that adds up to 90 minutes, a
measured machine time for every notebook and lab there is, and the README pointing to it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GUIDE = (ROOT / "docs" / "workshop.md").read_text()


def _rows(first_cell: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in GUIDE.splitlines()
        if re.match(rf"\|\s*{first_cell}", line)
    ]


def test_the_agenda_slots_add_up_to_ninety_minutes_and_follow_one_another() -> None:
    rows = _rows(r"\d:\d\d ")
    assert rows, "no agenda rows"
    elapsed = 0
    for row in rows:
        hours, minutes = (int(x) for x in row[0].split(":"))
        assert hours * 60 + minutes == elapsed, row
        slot = re.fullmatch(r"(\d+) min", row[-1])
        assert slot, row
        elapsed += int(slot.group(1))
    assert elapsed == 90


def test_every_guided_notebook_is_on_the_agenda_with_its_measured_time() -> None:
    agenda = {row[1].split("`")[1]: row[2] for row in _rows(r"\d:\d\d ") if "`" in row[1]}
    for nb in sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")):
        assert nb.stem in agenda, nb.stem
        assert re.fullmatch(r"\d+\.\d s / \d+\.\d s", agenda[nb.stem]), agenda[nb.stem]


def test_every_lab_has_its_measured_time_as_shipped_and_solved() -> None:
    rows = {row[0].strip("`"): row[1:] for row in _rows(r"`\d")}
    for nb in sorted((ROOT / "labs").glob("[0-9]*.ipynb")):
        assert nb.stem in rows, nb.stem
        assert all(re.fullmatch(r"\d+\.\d s", cell) for cell in rows[nb.stem]), rows[nb.stem]


def test_the_kit_names_the_check_the_reset_and_the_progress_commands() -> None:
    assert "irsa-lab doctor" in GUIDE
    assert "irsa-lab reset" in GUIDE
    assert "labs.progress()" in GUIDE
    assert "(docs/workshop.md)" in (ROOT / "README.md").read_text()
