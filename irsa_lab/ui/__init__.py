"""Teaching widgets and visuals: pure functions that build text, HTML and figures, and
thin ipywidgets wrappers whose state a plain notebook cell can read.

Import the module you need (``from irsa_lab.ui.playground import Playground``); the
package itself imports nothing heavy: a module named here is imported the first time
it is read as an attribute (``irsa_lab.ui.sequence``).
"""

import importlib
from types import ModuleType

__all__ = [
    "decoder",
    "describe",
    "diff",
    "playground",
    "sequence",
    "static",
    "text",
    "timeline",
    "trust_presets",
    "trust_verdict",
    "widget_value",
]


def __getattr__(name: str) -> ModuleType:
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
