"""Shared text helpers: masking, tables, and Go's tabwriter alignment."""

from __future__ import annotations

import pytest
from widget_fit import assert_tables_fit

from irsa_lab.ui.text import (
    go_tabwriter,
    html_table,
    human_duration,
    mask_secret,
    relative_time,
    side_by_side,
    text_table,
)


def test_mask_secret_shows_four_characters_and_the_length_only() -> None:
    masked = mask_secret("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert masked == "wJal…(40 chars)"
    assert "EXAMPLEKEY" not in masked


def test_go_tabwriter_aligns_each_block_of_tabbed_lines_separately() -> None:
    text = "Name:\tx\nImage pull secrets:\t<none>\nMetadata:\n  UID:\tu\nEvents:\t<none>"
    assert go_tabwriter(text).splitlines() == [
        "Name:                x",
        "Image pull secrets:  <none>",
        "Metadata:",
        "  UID:   u",
        "Events:  <none>",
    ]


def test_html_table_escapes_every_cell() -> None:
    html = html_table(("a",), [("<script>",)])
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_text_table_has_a_rule_under_the_header_and_no_trailing_spaces() -> None:
    lines = text_table(("k", "value"), [("a", None), ("bb", ["x", "y"])]).splitlines()
    assert lines[1] == "--  -----"
    assert lines[2] == "a   -"
    assert lines[3] == "bb  x, y"


def test_durations_read_as_hours_up_to_two_days() -> None:
    assert human_duration(86400) == "24 h"
    assert human_duration(69120) == "19 h 12 min"
    assert human_duration(3 * 86400 + 60) == "3 d 1 min"
    assert relative_time(100.0, 40.0) == "in 1 min"
    assert relative_time(40.0, 100.0) == "1 min ago"


def test_html_table_fits_its_cell_with_the_column_widths_given() -> None:
    arn = "arn:aws:iam::123456789012:oidc-provider/" + "x" * 200
    (table,) = assert_tables_fit(
        html_table(("k", "value"), [("Principal", arn)], widths=("25%", "75%"))
    )
    assert table.cols == ["25%", "75%"] and table.rows == 2
    (equal,) = assert_tables_fit(html_table(("a", "b", "c"), [(1, 2, 3)]))
    assert equal.cols == []  # a fixed layout shares the width equally
    with pytest.raises(ValueError, match="one width per column"):
        html_table(("a", "b"), [], widths=("100%",))


def test_html_table_keeps_a_line_break_in_a_cell() -> None:
    html = html_table(("check",), [("+ ok\nPrincipal",)])
    assert "+ ok\nPrincipal" in html
    assert "white-space:pre-wrap" in html


def test_side_by_side_makes_two_real_half_width_columns() -> None:
    left, right = html_table(("a",), [("1",)]), html_table(("b",), [("2",)])
    outer, first, second = assert_tables_fit(side_by_side(left, right, titles=("one", "<two>")))
    assert outer.cols == ["50%", "50%"] and outer.rows == 2
    assert (first.rows, second.rows) == (2, 2)
    assert "&lt;two&gt;" in side_by_side(left, right, titles=("one", "<two>"))
