"""What a widget's stored output shows where no widget can be drawn.

A notebook opened before its cells run (JupyterLab on an untrusted notebook, GitHub,
nbviewer, a static export without widget state) cannot draw a widget view; it falls
back to the richest safe type of the same output. By default ipywidgets puts only the
Python repr there (``Playground(children=(Dropdown(…``). :class:`StaticFallback` puts a
short, readable summary of the widget's current state in ``text/plain`` and
``text/html`` instead, with a line that says to run the cell to use the widget.

The summary is part of the stored output that nbval compares, so it must depend only
on the lab's seed and clock, never on ports, paths or wall-clock time.
"""

from __future__ import annotations

from typing import Any

from .text import escape

__all__ = ["RUN_TO_USE", "StaticFallback"]

RUN_TO_USE = "Interactive widget: run this cell to use it."


class StaticFallback:
    """Mixin for an ipywidgets view: a readable ``text/plain`` and ``text/html`` fallback.

    Put it first in the bases (``class Playground(StaticFallback, widgets.VBox)``) and
    define :meth:`static_title` and :meth:`static_lines`.
    """

    def static_title(self) -> str:
        """The widget's name as the lesson calls it ("Trust-policy playground")."""
        return type(self).__name__

    def static_lines(self) -> list[str]:
        """A few lines of the widget's current state, as a learner would read them."""
        return []

    def static_text(self) -> str:
        lines = [f"{self.static_title()}. {RUN_TO_USE}", *self.static_lines()]
        return "\n".join(lines)

    def static_html(self) -> str:
        items = "".join(f"<li>{escape(line)}</li>" for line in self.static_lines())
        listing = f"<ul>{items}</ul>" if items else ""
        return (
            '<div class="irsa-lab-static">'
            f"<p><b>{escape(self.static_title())}</b>. <i>{escape(RUN_TO_USE)}</i></p>"
            f"{listing}</div>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data: dict[str, Any] = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        data["text/plain"] = self.static_text()
        data["text/html"] = self.static_html()
        return data
