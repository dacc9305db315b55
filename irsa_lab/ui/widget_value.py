"""A widget's value as a plain attribute of the view that owns the widget.

The notebooks and their tests read and set a view's state from Python
(``decoder.token = ...``, ``playground.policy_text = ...``); setting it goes through
the widget, so its observers run and the view redraws as if the learner had typed.
"""

from __future__ import annotations

from typing import Any, overload

__all__ = ["WidgetText"]


class WidgetText:
    """A ``str`` attribute stored in the ``value`` of the widget at attribute ``widget``."""

    def __init__(self, widget: str) -> None:
        self.widget = widget

    @overload
    def __get__(self, owner: None, owner_type: type | None = None) -> WidgetText: ...

    @overload
    def __get__(self, owner: object, owner_type: type | None = None) -> str: ...

    def __get__(self, owner: object | None, owner_type: type | None = None) -> Any:
        if owner is None:
            return self
        return str(getattr(owner, self.widget).value)

    def __set__(self, owner: object, value: str) -> None:
        getattr(owner, self.widget).value = value
