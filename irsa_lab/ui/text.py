"""Shared text and HTML helpers for the teaching widgets.

Everything here is pure and deterministic: the same input gives the same string, so
notebook outputs built from these helpers survive nbval. HTML uses inline styles
only (JupyterLab may strip ``<style>`` blocks from untrusted outputs) with
semi-transparent colours that read on light and dark themes, and colour is never the
only signal: every highlighted cell also carries a textual marker.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from ..clock import utc

__all__ = [
    "FAIL",
    "OK",
    "SKIP",
    "escape",
    "go_tabwriter",
    "html_table",
    "human_duration",
    "mask_secret",
    "relative_time",
    "side_by_side",
    "status_word",
    "text_table",
    "utc_text",
    "as_list",
]

# Textual markers used next to colours: "+" passes, "-" fails, "~" changed/not reached.
OK = "+"
FAIL = "-"
SKIP = "~"

# Inline styles (rgba so they work on light and dark themes).
STYLE_OK = "background:rgba(46,160,67,0.18);"
STYLE_FAIL = "background:rgba(248,81,73,0.22);"
STYLE_CHANGED = "background:rgba(210,153,34,0.22);"
STYLE_MUTED = "opacity:0.7;"
STYLE_TABLE = (
    "border-collapse:collapse;font-family:var(--jp-code-font-family,monospace);font-size:12px;"
)
STYLE_CELL = (
    "border:1px solid rgba(128,128,128,0.35);padding:2px 6px;text-align:left;vertical-align:top;"
)
# A table that fits the output cell: as wide as the cell and never wider (fixed layout,
# so the column widths come from the table's own width, not from its longest cell).
STYLE_FIT = "width:100%;max-width:100%;table-layout:fixed;box-sizing:border-box;"
# Long tokens (ARNs, condition keys, JWTs) break anywhere rather than widen the cell.
STYLE_WRAP = "overflow-wrap:anywhere;word-break:break-word;white-space:pre-wrap;"


def escape(value: object) -> str:
    """HTML-escape ``str(value)``, quotes included."""
    return html.escape(str(value), quote=True)


def mask_secret(secret: str | None) -> str:
    """Show a secret without revealing it: first 4 characters, an ellipsis, the length.

    ``mask_secret("ASIAEXAMPLEKEY123456")`` gives ``'ASIA…(20 chars)'``.
    """
    if not secret:
        return "<empty>"
    return f"{secret[:4]}…({len(secret)} chars)"


def status_word(ok: bool | None) -> str:
    """``'+ ok'``, ``'- FAILED'`` or ``'~ not reached'``: the words beside the colours."""
    if ok is None:
        return f"{SKIP} not reached"
    return f"{OK} ok" if ok else f"{FAIL} FAILED"


def utc_text(ts: float) -> str:
    """``2024-03-27 14:00:00 UTC``."""
    return utc(ts).strftime("%Y-%m-%d %H:%M:%S UTC")


def human_duration(seconds: float) -> str:
    """A short, exact-enough duration: ``24 h``, ``19 h 12 min``, ``15 min``, ``42 s``."""
    s = int(round(abs(seconds)))
    # Whole days only from 48 h on: "24 h" reads better than "1 d" for a token lifetime.
    days, rest = divmod(s, 86400) if s >= 2 * 86400 else (0, s)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts: list[str] = []
    if days:
        parts.append(f"{days} d")
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if secs and not days:
        parts.append(f"{secs} s")
    text = " ".join(parts) if parts else "0 s"
    return f"-{text}" if seconds < 0 and s else text


def relative_time(ts: float, now: float) -> str:
    """``in 24 h``, ``5 min ago`` or ``now``, relative to ``now`` (the lab clock)."""
    delta = ts - now
    if abs(delta) < 0.5:
        return "now"
    return f"in {human_duration(delta)}" if delta > 0 else f"{human_duration(-delta)} ago"


def _cell_text(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) if value else "(none)"
    return str(value)


def text_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain-text table with left-aligned columns separated by two spaces.

    Lists in cells are joined with commas and ``None`` prints as ``-``. Trailing
    spaces are stripped so the output is stable under editors and nbval.
    """
    table = [[_cell_text(h) for h in headers]] + [[_cell_text(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(headers))]
    lines = []
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def html_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    caption: str | None = None,
    row_styles: Sequence[str] | None = None,
    widths: Sequence[str] | None = None,
) -> str:
    """An HTML table that fits its cell; every cell is escaped.

    ``row_styles`` gives an inline style per row, ``widths`` a CSS width per column
    (``"20%"``; without it the columns share the width equally). The table is as wide
    as its container with a fixed layout, and long words break inside their cell, so
    no column is pushed past the right edge of a notebook cell. A line break in a cell
    value is kept.
    """
    if widths is not None and len(widths) != len(headers):
        raise ValueError("widths must give one width per column")
    out = [f'<table style="{STYLE_TABLE}{STYLE_FIT}">']
    if caption:
        out.append(
            f'<caption style="text-align:left;font-weight:bold;">{escape(caption)}</caption>'
        )
    if widths is not None:
        out.append("<colgroup>")
        out.extend(f'<col style="width:{escape(w)};">' for w in widths)
        out.append("</colgroup>")
    out.append("<thead><tr>")
    out.extend(f'<th style="{STYLE_CELL}{STYLE_WRAP}">{escape(h)}</th>' for h in headers)
    out.append("</tr></thead><tbody>")
    for i, row in enumerate(rows):
        style = row_styles[i] if row_styles is not None and i < len(row_styles) else ""
        out.append(f'<tr style="{style}">' if style else "<tr>")
        out.extend(
            f'<td style="{STYLE_CELL}{STYLE_WRAP}">{escape(_cell_text(c))}</td>' for c in row
        )
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def side_by_side(left: str, right: str, *, titles: Sequence[str] | None = None) -> str:
    """Two HTML fragments in two real columns, each half the cell wide.

    A two-column table with a fixed layout: each half wraps its own content, so two
    verdict tables read side by side without pushing the cell wider.
    """
    head = ""
    if titles is not None:
        if len(titles) != 2:
            raise ValueError("side_by_side takes two titles")
        head = (
            "<thead><tr>"
            + "".join(f'<th style="text-align:left;{STYLE_WRAP}">{escape(t)}</th>' for t in titles)
            + "</tr></thead>"
        )
    cell = f"vertical-align:top;padding:0 4px;{STYLE_WRAP}white-space:normal;"
    return (
        f'<table style="border-collapse:collapse;{STYLE_FIT}">'
        '<colgroup><col style="width:50%;"><col style="width:50%;"></colgroup>'
        f"{head}<tbody><tr>"
        f'<td style="{cell}">{left}</td><td style="{cell}">{right}</td>'
        "</tr></tbody></table>"
    )


def go_tabwriter(text: str, *, minwidth: int = 0, padding: int = 2) -> str:
    """Align tab-separated cells as Go's ``text/tabwriter`` does for ``kubectl describe``.

    kubectl writes ``Key:\\tvalue`` lines through ``tabwriter.NewWriter(out, 0, 8, 2,
    ' ', 0)``. A column is aligned over a *block* of consecutive lines that all have a
    tab-terminated cell in that column; a line without one ends the block. That is
    why ``Events:`` lines up with the last indented fields above it in real output.
    The text after a line's last tab is not part of any column.
    """
    lines = [line.split("\t") for line in text.split("\n")]
    out: list[list[str]] = [[] for _ in lines]

    def fmt(line0: int, line1: int, column: int) -> None:
        this = line0
        while this < line1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            start = this
            width = minwidth
            while this < line1 and column < len(lines[this]) - 1:
                width = max(width, len(lines[this][column]) + padding)
                this += 1
            for i in range(start, this):
                out[i].append(lines[i][column].ljust(width))
            fmt(start, this, column + 1)

    fmt(0, len(lines), 0)
    return "\n".join("".join(out[i]) + lines[i][-1] for i in range(len(lines)))


def as_list(value: Any) -> list[str]:
    """A claim or policy value as a list of strings (``None`` gives ``[]``)."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return [str(value)]
