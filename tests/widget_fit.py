"""What the widget tests read to check that a widget fits a notebook cell.

The browser suite measures overflow in Chromium; these helpers check the CSS and
structure that measurement relies on, without a browser: every HTML table has a fixed
layout at 100 % width with cells that break long words, its column widths add up to
the whole, and no widget layout asks for more pixels than a cell at 1280 px offers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

import ipywidgets as widgets

# The output area of a notebook cell in JupyterLab at 1280 px, file browser open.
MAX_PX = 900
_PX = re.compile(r"(\d+(?:\.\d+)?)px")


@dataclass
class Table:
    style: str
    cols: list[str] = field(default_factory=list)
    cell_styles: list[str] = field(default_factory=list)
    rows: int = 0


def style_of(text: str) -> dict[str, str]:
    """An inline ``style`` attribute as a dict (later declarations win)."""
    out = {}
    for part in text.split(";"):
        if ":" in part:
            k, v = part.split(":", 1)
            out[k.strip()] = v.strip()
    return out


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: list[Table] = []
        self._open: list[Table] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        style = dict(attrs).get("style") or ""
        if tag == "table":
            t = Table(style)
            self.tables.append(t)
            self._open.append(t)
        elif not self._open:
            return
        elif tag == "col":
            self._open[-1].cols.append(style_of(style).get("width", ""))
        elif tag in ("td", "th"):
            self._open[-1].cell_styles.append(style)
        elif tag == "tr":
            self._open[-1].rows += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "table" and self._open:
            self._open.pop()


def tables(html: str) -> list[Table]:
    """Every ``<table>`` in ``html``, nested ones included, outermost first."""
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def assert_tables_fit(html: str) -> list[Table]:
    """Each table fits its container and breaks long words; returns them."""
    found = tables(html)
    assert found, "no table in the HTML"
    for t in found:
        style = style_of(t.style)
        assert style.get("table-layout") == "fixed", t.style
        assert style.get("width") == "100%", t.style
        assert not _PX.search(style.get("width", "")), t.style
        if t.cols:
            assert sum(float(w.rstrip("%")) for w in t.cols) == 100, t.cols
        for cell in t.cell_styles:
            assert style_of(cell).get("overflow-wrap") == "anywhere", cell
    return found


def walk(widget: Any) -> Iterator[Any]:
    """``widget`` and every widget inside it."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def assert_layouts_fit(widget: Any) -> None:
    """No layout inside ``widget`` fixes a width above :data:`MAX_PX`, and every row of
    widgets (an HBox) wraps instead of growing wider than the cell."""
    for w in walk(widget):
        layout = getattr(w, "layout", None)
        if layout is None:
            continue
        for name in ("width", "min_width", "max_width"):
            value = getattr(layout, name) or ""
            for px in _PX.findall(value):
                assert float(px) <= MAX_PX, f"{type(w).__name__}.layout.{name} = {value}"
        # Controls carry a 2 px margin each side: at width 100 % they end 2 px past the
        # cell (Chromium measured it); "auto" lets the column stretch them instead.
        if not isinstance(w, widgets.Box | widgets.HTML):
            assert layout.width != "100%", f"{type(w).__name__}.layout.width = 100%"
        if isinstance(w, widgets.HBox) and len(w.children) > 1:
            assert layout.flex_flow == "row wrap", f"an HBox of {len(w.children)} does not wrap"
