"""The labs' machinery without a running lab: progress, hints, ids, solutions, checks that never raise."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest

from irsa_lab import labs
from irsa_lab.labs import runner
from irsa_lab.labs.progress import Progress, progress_path
from irsa_lab.labs.solutions import labs_dir, solution_source

LABS = Path(__file__).resolve().parents[1] / "labs"


def test_public_api_matches_all() -> None:
    public = {
        n
        for n in dir(labs)
        if not n.startswith("_")
        and n != "annotations"  # the __future__ import
        and not isinstance(getattr(labs, n), types.ModuleType)
    }
    assert public == set(labs.__all__)


def test_there_are_at_least_seven_exercises_with_unique_ids_and_three_hints() -> None:
    ids = [ex.id for ex in labs.EXERCISES]
    assert len(ids) >= 7 and len(set(ids)) == len(ids)
    for ex in labs.EXERCISES:
        assert len(ex.hints) == 3 and all(h.strip() for h in ex.hints)
        assert "notebooks/" in ex.hints[1], f"hint 2 of {ex.id} must point to a notebook section"


def test_every_concept_hint_points_to_a_section_that_exists() -> None:
    import nbformat

    for ex in labs.EXERCISES:
        found = re.search(r"notebooks/(\S+\.ipynb), section \u201c(.+?)\u201d", ex.hints[1])
        assert found, ex.hints[1]
        nb = nbformat.read(LABS.parent / "notebooks" / found[1], as_version=4)
        headings = [
            line.lstrip("#").strip()
            for c in nb.cells
            if c.cell_type == "markdown"
            for line in c.source.splitlines()
            if line.startswith("#")
        ]
        assert found[2] in headings, f"lab {ex.id}: no section {found[2]!r} in {found[1]}"


def test_every_stage_of_the_chain_has_an_exercise() -> None:
    stages = " ".join(ex.stage for ex in labs.EXERCISES)
    for stage in ("webhook", "trust policy", "OIDC provider", "IMDS"):
        assert stage in stages


def test_every_exercise_has_a_solution_file_and_a_notebook() -> None:
    assert labs_dir() == LABS
    for ex in labs.EXERCISES:
        assert "irsa_lab.lab()" in solution_source(ex)
        assert (LABS / f"{ex.name}.ipynb").is_file()


def test_an_exercise_is_found_by_id_number_name_or_slug() -> None:
    ex = labs.EXERCISES[0]
    assert labs.get(1) is ex and labs.get("01") is ex and labs.get(ex.name) is ex
    assert labs.get(ex.slug) is ex
    with pytest.raises(KeyError, match="the labs are"):
        labs.get("99")


def test_progress_lives_in_the_state_directory_not_the_stacks_temp_folder(tmp_path: Path) -> None:
    assert progress_path() == Path(os.environ["IRSA_LAB_STATE_DIR"]) / "progress.json"


def test_progress_survives_a_fresh_object_and_a_new_process() -> None:
    p = Progress.load()
    p.record_check("01", False, "pod-predates-annotation")
    p.record_check("01", True)
    p.record_solution("02", applied=True)
    again = Progress.load()
    assert again.entries["01"].solved and again.entries["01"].checks == 2
    assert again.entries["02"].solution_applied
    code = "from irsa_lab.labs import Progress; e = Progress.load().entries['01']; print(e.solved, e.checks)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "2"]


def test_a_later_failed_check_does_not_unsolve_an_exercise() -> None:
    p = Progress.load()
    p.record_check("03", True)
    p.record_check("03", False, "access-denied")
    assert Progress.load().entries["03"].solved


def test_an_unreadable_progress_file_is_a_fresh_start() -> None:
    path = progress_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json")
    assert Progress.load().entries == {}
    Progress.load().record_check("04", False, "access-denied")
    assert json.loads(path.read_text())["exercises"]["04"]["checks"] == 1


def test_the_progress_table_lists_every_lab_without_timestamps(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Progress.load().record_check("01", True)
    labs.progress()
    out = capsys.readouterr().out
    for ex in labs.EXERCISES:
        assert ex.title in out
    assert f"1 of {len(labs.EXERCISES)} solved" in out
    assert not re.search(r"\d{4}-\d{2}-\d{2}|\d{2}:\d{2}", out)


def test_hints_come_in_three_levels_and_stay_folded_in_plain_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ex = labs.EXERCISES[0]
    folded = labs.Hints(ex)
    assert ex.hints[0] not in repr(folded)
    html = folded._repr_html_()
    assert html.count("<details>") == 3
    labs.hint("01", 3)
    assert 'labs.show_solution("01")' in capsys.readouterr().out
    with pytest.raises(ValueError):
        labs.hint("01", 4)


def test_show_solution_prints_it_and_notes_it_in_progress(
    capsys: pytest.CaptureFixture[str],
) -> None:
    labs.show_solution("06")
    assert "create_open_id_connect_provider" in capsys.readouterr().out
    entry = Progress.load().entries["06"]
    assert entry.solution_viewed and not entry.solution_applied


def test_a_check_of_an_unknown_lab_reports_instead_of_raising(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = labs.check("99")
    assert result.error and not result.passed
    assert "could not check" in capsys.readouterr().out


def test_a_check_that_crashes_says_could_not_check_with_a_pointer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def boom(lab: object) -> str:
        raise RuntimeError("the API server went away")

    broken = replace(labs.EXERCISES[0], verify=boom)
    monkeypatch.setattr(runner, "get", lambda exercise: broken)
    result = labs.check("01", lab=object())  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert result.error and result.hint == "could-not-check"
    assert "could not check: RuntimeError: the API server went away" in out
    assert "labs.reset('01')" in out
    assert "01" not in Progress.load().entries  # a crash is not an attempt


def test_a_not_solved_check_names_its_hint_and_is_recorded(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def nope(lab: object) -> str:
        raise labs.NotSolved("access-denied", "STS said no")

    monkeypatch.setattr(runner, "get", lambda exercise: replace(labs.EXERCISES[3], verify=nope))
    result = labs.check("04", lab=object())  # type: ignore[arg-type]
    assert not result.passed and result.hint == "access-denied"
    assert "not solved yet [access-denied]: STS said no" in capsys.readouterr().out
    assert Progress.load().entries["04"].last_hint == "access-denied"


def test_the_hints_column_shows_the_highest_hint_level_opened_not_a_check_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    Progress.load().record_check("01", False, "node-role")
    labs.hint("01", 2)
    labs.hint("01", 1)  # going back to an easier hint does not lower the level
    capsys.readouterr()
    labs.progress()
    out = capsys.readouterr().out.partition("\nLabs\n")[2]
    header = next(line for line in out.splitlines() if line.startswith("lab "))
    assert header.split()[-4:] == ["checks", "hints", "last", "check"]
    row = next(line for line in out.splitlines() if line.startswith("01 "))
    assert re.search(r"in progress\s+1\s+2 of 3\s+node-role$", row), row
    untouched = next(line for line in out.splitlines() if line.startswith("02 "))
    assert re.search(r"not started\s+0\s+-\s+-$", untouched), untouched
    assert Progress.load().entries["01"].hint_level == 2


def test_opening_a_hint_alone_counts_as_in_progress_and_the_solution_is_noted() -> None:
    labs.hint("05", 3)
    labs.show_solution("05")
    entry = Progress.load().entries["05"]
    assert entry.status == "in progress"
    assert entry.hints_shown == "3 of 3, solution seen"


def test_the_overview_lists_the_guided_notebooks_as_they_record_themselves(
    capsys: pytest.CaptureFixture[str],
) -> None:
    labs.notebook_started("01")
    labs.notebook_finished("01-pod-mutation")
    labs.notebook_started(2)
    assert capsys.readouterr().out == (
        "Notebook 01 done: labs.progress() shows every notebook and lab.\n"
    )
    labs.progress()
    out = capsys.readouterr().out
    guided, _, lab_part = out.partition("\nLabs\n")
    assert guided.startswith("Guided notebooks\n")
    rows = {line.split()[0]: line for line in guided.splitlines()[3:] if line[:2].isdigit()}
    assert sorted(rows) == ["00", "01", "02", "03", "04", "05", "06"]
    assert rows["01"].endswith("finished") and rows["02"].endswith("started")
    assert rows["00"].endswith("not started")
    assert "1 of 7 finished" in guided
    assert f"0 of {len(labs.EXERCISES)} solved" in lab_part
    saved = json.loads(progress_path().read_text())
    assert saved["notebooks"]["01"] == {"started": True, "finished": True}
    with pytest.raises(KeyError, match="they are: 00, 01"):
        labs.notebook_finished("07")


def test_lab_05s_concept_hint_sends_the_learner_to_the_section_about_client_ids() -> None:
    import nbformat

    found = re.search(r"notebooks/(\S+\.ipynb), section \u201c(.+?)\u201d", labs.get("05").hints[1])
    assert found, labs.get("05").hints[1]
    nb = nbformat.read(LABS.parent / "notebooks" / found[1], as_version=4)
    section: list[str] = []
    inside = False
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## "):
            inside = cell.source.splitlines()[0][3:].strip() == found[2]
        if inside:
            section.append(cell.source)
    text = "\n".join(section)
    assert "client ID" in text and "InvalidIdentityToken" in text, found[2]
